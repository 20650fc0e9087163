"""Root pytest configuration: settings for tests and shared fixtures live in tests/conftest.py."""

import os

os.environ.setdefault("DEBUG", "1")
