"""Relay tests use the `world` fixture from tests/conftest.py (U1 owns R1, U2 owns R2)."""
