"""Helpers shared by the test suites (relay communicator tests, live tests, end-to-end tests)."""
