#!/usr/bin/env python
"""Django's command-line utility for the WIM-Z relay."""

import os
import sys


def main():
    """Run a Django management command with the relay's settings."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "wimz.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)


if __name__ == "__main__":
    main()
