"""End-to-end tests: the demo call through a real relay process."""
