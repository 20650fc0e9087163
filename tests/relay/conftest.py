"""Relay fixtures: the field-report world — U1 owns R1, U2 owns R2 (field-reports.md)."""

from dataclasses import dataclass

import pytest


@dataclass
class World:
    """Users, devices, secrets and tokens for relay tests."""

    u1: object
    u2: object
    r1: object
    r2: object
    r1_secret: str
    r2_secret: str
    t1: str
    t2: str


@pytest.fixture
def world(transactional_db, make_user, make_device, access_token) -> World:
    """U1 owns R1 (`wimz_robot_01`), U2 owns R2 (`wimz_robot_02`); `t1`/`t2` are their access tokens."""
    u1 = make_user("u1@example.com")
    u2 = make_user("u2@example.com")
    r1, s1 = make_device("wimz_robot_01", owner=u1)
    r2, s2 = make_device("wimz_robot_02", owner=u2)
    return World(u1, u2, r1, r2, s1, s2, access_token(u1), access_token(u2))
