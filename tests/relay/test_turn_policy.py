"""Who gets TURN credentials (docs/protocol.md §14, "Who gets TURN"): owners of a device only, a short
default lifetime, at most WIMZ_TURN_ISSUE_LIMIT per user and window."""

import time

import pytest
from rest_framework.test import APIClient

from relay import ice
from tests.relay import flows
from tests.support import asgi as ws

TURN_URL = "/api/turn/credentials"
STUN = [{"urls": ["stun:stun.cloudflare.com:3478"]}]


@pytest.fixture
def coturn(settings):
    settings.WIMZ_ICE_PROVIDER = "coturn"
    settings.WIMZ_COTURN_SECRET = "policy-test-secret"
    settings.WIMZ_COTURN_URLS = ["turn:turn.example.com:3478"]
    settings.WIMZ_STUN_URLS = ["stun:stun.cloudflare.com:3478"]
    settings.WIMZ_TURN_ISSUE_LIMIT, settings.WIMZ_TURN_ISSUE_WINDOW = 30, 600
    return settings


def post(user, access_token, body=None):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {access_token(user)}")
    response = client.post(TURN_URL, body or {}, format="json")
    assert response.status_code == 200
    return response.json()


def has_turn(answer: dict) -> bool:
    return any("credential" in server for server in answer["iceServers"])


@pytest.mark.django_db
def test_an_account_without_a_device_gets_stun_only(coturn, make_user, make_device, access_token):
    """A fresh account with no robot: 200 with STUN-only iceServers, 30 times out of 30; its owner of an
    inactive device likewise. Pairing a device gives TURN."""
    fresh = make_user("fresh@example.com")
    answers = [post(fresh, access_token) for _ in range(30)]
    assert all(a["iceServers"] == STUN for a in answers)
    make_device("wimz_robot_09", owner=fresh, is_active=False)
    assert not has_turn(post(fresh, access_token))
    make_device("wimz_robot_01", owner=fresh)
    assert has_turn(post(fresh, access_token))


@pytest.mark.django_db
def test_default_ttl_is_ten_minutes(coturn, make_user, make_device, access_token):
    """Without a `ttl` the credential lives 600 s: its username's expiry is now + 600."""
    del coturn.WIMZ_ICE_TTL  # the setting's own default
    owner = make_user("owner@example.com")
    make_device("wimz_robot_01", owner=owner)
    answer = post(owner, access_token)
    assert answer["ttl"] == 600
    [turn] = [s for s in answer["iceServers"] if "credential" in s]
    assert abs(int(turn["username"].split(":")[0]) - (time.time() + 600)) < 5


@pytest.mark.django_db
def test_issuance_is_capped_per_user(coturn, make_user, make_device, access_token):
    """With WIMZ_TURN_ISSUE_LIMIT=3, an owner's 4th request in the window gets STUN only; another owner
    is not affected."""
    coturn.WIMZ_TURN_ISSUE_LIMIT = 3
    u1, u2 = make_user("a@example.com"), make_user("b@example.com")
    make_device("wimz_robot_01", owner=u1)
    make_device("wimz_robot_02", owner=u2)
    assert [has_turn(post(u1, access_token)) for _ in range(5)] == [True, True, True, False, False]
    assert has_turn(post(u2, access_token))


@pytest.mark.django_db(transaction=True)
async def test_a_session_gives_both_parties_turn_and_counts_against_the_cap(coturn, world):
    """The app's `webrtc_credentials` and the robot's `webrtc_request` carry the same TURN entry; once
    the owner's cap is spent, both get STUN only."""
    coturn.WIMZ_TURN_ISSUE_LIMIT = 1
    robot, app = await flows.robot_app(world)
    _, creds, req = await flows.open_session(app, robot)
    assert creds["ice_servers"] == req["ice_servers"] and any("credential" in s for s in creds["ice_servers"])
    _, creds, req = await flows.open_session(app, robot)
    assert creds["ice_servers"] == req["ice_servers"] == STUN
    await ws.close(robot, app)


async def test_the_stun_provider_reads_nothing(settings, monkeypatch):
    """With the default `stun` provider there is no TURN to guard: no device lookup, no counting."""
    settings.WIMZ_ICE_PROVIDER = "stun"

    async def boom(user_id):
        raise AssertionError("counted")

    monkeypatch.setattr(ice, "_take_issuance", boom)
    servers = await ice.issue_ice_servers(user_id=12345)
    assert servers.ice_servers == ice.stun_servers()
