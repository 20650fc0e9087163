"""ICE server providers (relay/ice.py): STUN default, Cloudflare Realtime TURN, coturn TURN REST (F11)."""

import base64
import hashlib
import hmac
import json
import logging
import time
from datetime import UTC, datetime

import httpx
import pytest

from relay import ice

KEY_ID = "test-key-id-0123"
API_TOKEN = "cf-api-token-SHOULD-NEVER-BE-LOGGED"
CF_URL = f"https://rtc.live.cloudflare.com/v1/turn/keys/{KEY_ID}/credentials/generate-ice-servers"
COTURN_SECRET = "wimz-test-secret"
NOW = 1767225600  # 2026-01-01T00:00:00Z

CF_ANSWER = {
    "iceServers": [
        {"urls": ["stun:stun.cloudflare.com:3478", "stun:stun.cloudflare.com:53"]},
        {
            "urls": [
                "turn:turn.cloudflare.com:3478?transport=udp",
                "turn:turn.cloudflare.com:3478?transport=tcp",
                "turns:turn.cloudflare.com:5349?transport=tcp",
            ],
            "username": "cf-user-abc",
            "credential": "cf-cred-xyz",
        },
    ]
}


@pytest.fixture
def cloudflare(settings):
    """Settings for the Cloudflare provider with a short timeout."""
    settings.WIMZ_ICE_PROVIDER = "cloudflare"
    settings.WIMZ_CLOUDFLARE_TURN_KEY_ID = KEY_ID
    settings.WIMZ_CLOUDFLARE_TURN_API_TOKEN = API_TOKEN
    settings.WIMZ_CLOUDFLARE_TIMEOUT = 0.5
    settings.WIMZ_STUN_URLS = ["stun:stun.cloudflare.com:3478"]
    return settings


@pytest.fixture
def coturn(settings):
    """Settings for the coturn provider (turn: and turns: URLs, one shared secret)."""
    settings.WIMZ_ICE_PROVIDER = "coturn"
    settings.WIMZ_COTURN_SECRET = COTURN_SECRET
    settings.WIMZ_COTURN_URLS = ["turn:turn.example.com:3478?transport=udp", "turns:turn.example.com:5349"]
    settings.WIMZ_STUN_URLS = ["stun:stun.example.com:3478"]
    return settings


def has_turn(result) -> bool:
    """True when at least one of the result's ICE servers carries TURN credentials."""
    return any("credential" in server for server in result.ice_servers)


def assert_stun_fallback(result, failure):
    """The result is the STUN-only fallback with the given failure kind."""
    assert result.fallback is True
    assert result.failure == failure
    assert result.provider == "stun"
    assert result.ice_servers == [{"urls": ["stun:stun.cloudflare.com:3478"]}]
    assert not has_turn(result)


def assert_no_secret_logged(caplog, *secrets):
    """No captured record (message or arguments) contains any of `secrets`."""
    for record in caplog.records:
        text = record.getMessage() + repr(record.args) + (record.exc_text or "")
        for secret in secrets:
            assert secret not in text


# --- STUN (default) ---------------------------------------------------------------------------


async def test_stun_is_the_default_provider(settings):
    """With WIMZ_ICE_PROVIDER unset/"stun" the servers are the STUN URLs, without any credential."""
    settings.WIMZ_ICE_PROVIDER = "stun"
    settings.WIMZ_STUN_URLS = ["stun:stun.cloudflare.com:3478", "stun:stun.l.google.com:19302"]
    result = await ice.get_ice_servers(user_id=1, clock=lambda: NOW)
    assert result.ice_servers == [{"urls": ["stun:stun.cloudflare.com:3478", "stun:stun.l.google.com:19302"]}]
    assert result.provider == "stun"
    assert result.fallback is False and result.failure is None
    assert result.ttl == settings.WIMZ_ICE_TTL
    assert result.expires_at == datetime.fromtimestamp(NOW + settings.WIMZ_ICE_TTL, tz=UTC)


async def test_stun_without_urls_is_an_empty_list(settings):
    """No STUN URL configured gives an empty ice_servers list (host candidates only), not an error."""
    settings.WIMZ_ICE_PROVIDER = "stun"
    settings.WIMZ_STUN_URLS = []
    result = await ice.get_ice_servers(user_id=1)
    assert result.ice_servers == []
    assert result.fallback is False


async def test_missing_provider_setting_means_stun(settings):
    """Without any WIMZ_ICE_PROVIDER setting the STUN provider is used, and it is not a fallback."""
    del settings.WIMZ_ICE_PROVIDER
    settings.WIMZ_STUN_URLS = ["stun:stun.cloudflare.com:3478"]
    result = await ice.get_ice_servers(user_id=1)
    assert result.provider == "stun" and result.fallback is False
    assert result.ice_servers == [{"urls": ["stun:stun.cloudflare.com:3478"]}]


@pytest.mark.parametrize(
    ("given", "expected"),
    [(None, 3600), (3600, 3600), (1, ice.TTL_MIN), (-5, ice.TTL_MIN), (10**9, ice.TTL_MAX), (True, 3600), ("x", 3600)],
)
def test_ttl_is_clamped(settings, given, expected):
    """TTL defaults to WIMZ_ICE_TTL and is clamped to [60, 86400] s; bools/non-ints take the default."""
    settings.WIMZ_ICE_TTL = 3600
    assert ice.clamp_ttl(given) == expected


async def test_unknown_provider_falls_back(settings, caplog):
    """An unknown WIMZ_ICE_PROVIDER yields STUN-only servers and a warning naming the provider."""
    settings.WIMZ_ICE_PROVIDER = "twilio"
    settings.WIMZ_STUN_URLS = ["stun:stun.cloudflare.com:3478"]
    with caplog.at_level(logging.WARNING, logger="relay.ice"):
        result = await ice.get_ice_servers(user_id=1)
    assert_stun_fallback(result, "unknown_provider")
    assert "twilio" in caplog.text


# --- Cloudflare -------------------------------------------------------------------------------


async def test_cloudflare_success(respx_mock, cloudflare, caplog):
    """Cloudflare is called with the key id in the URL, the bearer token and {"ttl": ttl}; its
    iceServers are returned as RTCIceServer dicts and no log line holds the token or a credential."""
    route = respx_mock.post(CF_URL).mock(return_value=httpx.Response(201, json=CF_ANSWER))
    with caplog.at_level(logging.DEBUG):
        result = await ice.get_ice_servers(user_id=7, ttl=1800, clock=lambda: NOW)

    request = route.calls.last.request
    assert str(request.url) == CF_URL
    assert request.method == "POST"
    assert request.headers["Authorization"] == f"Bearer {API_TOKEN}"
    assert request.headers["Content-Type"] == "application/json"
    assert json.loads(request.content) == {"ttl": 1800}

    assert result.fallback is False
    assert result.provider == "cloudflare"
    assert result.ice_servers == CF_ANSWER["iceServers"]
    assert has_turn(result)
    assert result.ttl == 1800
    assert result.expires_at == datetime.fromtimestamp(NOW + 1800, tz=UTC)
    assert_no_secret_logged(caplog, API_TOKEN, "cf-cred-xyz")


async def test_cloudflare_single_object_answer_is_normalised(respx_mock, cloudflare):
    """An iceServers answer that is one object (older Cloudflare docs) becomes a one-element list,
    and a string `urls` becomes a list."""
    answer = {"iceServers": {"urls": "turn:turn.cloudflare.com:3478", "username": "u", "credential": "c"}}
    respx_mock.post(CF_URL).mock(return_value=httpx.Response(200, json=answer))
    result = await ice.get_ice_servers(user_id=7)
    assert result.fallback is False
    assert result.ice_servers == [{"urls": ["turn:turn.cloudflare.com:3478"], "username": "u", "credential": "c"}]


async def test_cloudflare_http_500_falls_back_without_leaking_the_token(respx_mock, cloudflare, caplog):
    """An HTTP 500 from Cloudflare gives STUN-only servers and one WARNING that names the provider and
    the failure kind but never the API token."""
    respx_mock.post(CF_URL).mock(return_value=httpx.Response(500, text=f"oops {API_TOKEN}"))
    with caplog.at_level(logging.DEBUG):
        result = await ice.get_ice_servers(user_id=7)
    assert_stun_fallback(result, "http_status")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and r.name == "relay.ice"]
    assert len(warnings) == 1
    assert "cloudflare" in warnings[0].getMessage()
    assert "http_status" in warnings[0].getMessage() and "500" in warnings[0].getMessage()
    assert_no_secret_logged(caplog, API_TOKEN)


async def test_cloudflare_401_falls_back(respx_mock, cloudflare):
    """A refused token (HTTP 401) is a fallback, not an exception."""
    respx_mock.post(CF_URL).mock(return_value=httpx.Response(401, json={"error": "unauthorized"}))
    assert_stun_fallback(await ice.get_ice_servers(user_id=7), "http_status")


async def test_cloudflare_timeout_falls_back_quickly(respx_mock, cloudflare, caplog):
    """An httpx timeout gives the STUN fallback at once, with a warning of kind `timeout`."""
    respx_mock.post(CF_URL).mock(side_effect=httpx.TimeoutException("timed out"))
    started = time.monotonic()
    with caplog.at_level(logging.DEBUG):
        result = await ice.get_ice_servers(user_id=7)
    assert time.monotonic() - started < cloudflare.WIMZ_CLOUDFLARE_TIMEOUT
    assert_stun_fallback(result, "timeout")
    assert "timeout" in caplog.text
    assert_no_secret_logged(caplog, API_TOKEN)


async def test_cloudflare_stall_is_cut_at_the_timeout(respx_mock, cloudflare):
    """A Cloudflare answer that never comes is abandoned after WIMZ_CLOUDFLARE_TIMEOUT (0.5 s here),
    not after httpx's per-phase timeouts add up."""
    import asyncio

    async def stall(request):
        await asyncio.sleep(30)
        return httpx.Response(201, json=CF_ANSWER)

    respx_mock.post(CF_URL).mock(side_effect=stall)
    started = time.monotonic()
    result = await ice.get_ice_servers(user_id=7)
    elapsed = time.monotonic() - started
    assert_stun_fallback(result, "timeout")
    assert 0.4 <= elapsed < 1.5


async def test_cloudflare_network_error_falls_back(respx_mock, cloudflare, caplog):
    """A connection error gives the STUN fallback with kind `network`; the exception text (which can
    quote the URL) is not logged."""
    respx_mock.post(CF_URL).mock(side_effect=httpx.ConnectError(f"cannot reach {CF_URL}"))
    with caplog.at_level(logging.DEBUG):
        result = await ice.get_ice_servers(user_id=7)
    assert_stun_fallback(result, "network")
    assert "ConnectError" in caplog.text
    assert_no_secret_logged(caplog, API_TOKEN, KEY_ID)


@pytest.mark.parametrize(
    "response",
    [
        httpx.Response(201, text="<html>not json</html>"),
        httpx.Response(201, json=["not", "an", "object"]),
        httpx.Response(201, json={"servers": []}),
        httpx.Response(201, json={"iceServers": []}),
        httpx.Response(201, json={"iceServers": [{"username": "u"}]}),
        httpx.Response(201, json={"iceServers": [{"urls": ["http://example.com"]}]}),
        httpx.Response(201, json={"iceServers": [{"urls": "turn:x", "credential": 5}]}),
        httpx.Response(201, json={"iceServers": ["turn:x"]}),
    ],
    ids=["html", "list", "no-iceServers", "empty", "no-urls", "bad-scheme", "non-string-credential", "string-entry"],
)
async def test_cloudflare_malformed_answer_falls_back(respx_mock, cloudflare, caplog, response):
    """An answer that is not JSON or not `{"iceServers": [RTCIceServer, ...]}` gives the STUN fallback."""
    respx_mock.post(CF_URL).mock(return_value=response)
    with caplog.at_level(logging.WARNING):
        result = await ice.get_ice_servers(user_id=7)
    assert_stun_fallback(result, "malformed")
    assert "cloudflare" in caplog.text


@pytest.mark.respx(assert_all_called=False)
async def test_cloudflare_missing_config_falls_back_without_a_request(respx_mock, cloudflare):
    """Without a key id or API token no request is sent and STUN-only servers are served."""
    cloudflare.WIMZ_CLOUDFLARE_TURN_API_TOKEN = ""
    route = respx_mock.post(CF_URL).mock(return_value=httpx.Response(201, json=CF_ANSWER))
    result = await ice.get_ice_servers(user_id=7)
    assert_stun_fallback(result, "config")
    assert not route.called


# --- coturn (TURN REST, field report F11) ------------------------------------------------------


def test_turn_rest_credentials_known_vector():
    """Fixed vector: secret "wimz-test-secret", user 42, expiry 1767229200 → username
    "1767229200:42", credential "3NtDF193X8nBwsoImNER8+0/+QQ=" (checked with
    `openssl dgst -sha1 -hmac wimz-test-secret -binary | base64` and with hmac/hashlib below)."""
    username, credential = ice.turn_rest_credentials(secret=COTURN_SECRET, user_id=42, expiry=1767229200)
    assert username == "1767229200:42"
    assert credential == "3NtDF193X8nBwsoImNER8+0/+QQ="
    independent = base64.b64encode(hmac.new(COTURN_SECRET.encode(), b"1767229200:42", hashlib.sha1).digest()).decode()
    assert credential == independent


async def test_coturn_servers_with_a_fixed_clock(coturn):
    """With clock = 1767225600 and ttl 3600 the coturn entry is exactly the known vector, after a
    STUN entry; expires_at is the expiry in the username."""
    result = await ice.get_ice_servers(user_id=42, ttl=3600, clock=lambda: NOW)
    assert result.fallback is False and result.provider == "coturn"
    assert result.ice_servers == [
        {"urls": ["stun:stun.example.com:3478"]},
        {
            "urls": ["turn:turn.example.com:3478?transport=udp", "turns:turn.example.com:5349"],
            "username": "1767229200:42",
            "credential": "3NtDF193X8nBwsoImNER8+0/+QQ=",
        },
    ]
    assert result.expires_at == datetime(2026, 1, 1, 1, 0, tzinfo=UTC)
    assert result.ttl == 3600


def turn_entries(result):
    """The entries of `result` that carry TURN credentials."""
    return [server for server in result.ice_servers if "credential" in server]


async def test_f11_turn_entries_have_turn_urls(coturn):
    """F11: every entry with credentials lists only turn:/turns: URLs (a stun: URL configured in
    WIMZ_COTURN_URLS goes to the STUN entry)."""
    coturn.WIMZ_COTURN_URLS = [*coturn.WIMZ_COTURN_URLS, "stun:turn.example.com:3478"]
    result = await ice.get_ice_servers(user_id=5)
    entries = turn_entries(result)
    assert entries
    for entry in entries:
        assert entry["urls"]
        assert all(url.startswith(("turn:", "turns:")) for url in entry["urls"])
    assert result.ice_servers[0] == {"urls": ["stun:stun.example.com:3478", "stun:turn.example.com:3478"]}


async def test_f11_expiry_is_now_plus_ttl(coturn):
    """F11: the username is "<unix expiry>:<user id>" with expiry − now within TTL ± 5 s, and the
    credential is base64(HMAC-SHA1(secret, username))."""
    ttl = 1234
    before = time.time()
    result = await ice.get_ice_servers(user_id=99, ttl=ttl)
    (entry,) = turn_entries(result)
    expiry, user = entry["username"].split(":", 1)
    assert user == "99"
    assert abs(int(expiry) - before - ttl) <= 5
    expected = base64.b64encode(hmac.new(COTURN_SECRET.encode(), entry["username"].encode(), hashlib.sha1).digest())
    assert entry["credential"] == expected.decode()
    assert result.expires_at == datetime.fromtimestamp(int(expiry), tz=UTC)


async def test_f11_two_users_get_different_usernames(coturn):
    """F11: two users asking at the same instant get different usernames (and credentials)."""
    first = turn_entries(await ice.get_ice_servers(user_id=1, clock=lambda: NOW))[0]
    second = turn_entries(await ice.get_ice_servers(user_id=2, clock=lambda: NOW))[0]
    assert first["username"] != second["username"]
    assert first["credential"] != second["credential"]


async def test_f11_later_request_gets_fresh_expiry(coturn):
    """F11: a request made later gets a later expiry, not a cached credential."""
    first = await ice.get_ice_servers(user_id=1, clock=lambda: NOW)
    later = await ice.get_ice_servers(user_id=1, clock=lambda: NOW + 600)
    first_expiry = int(turn_entries(first)[0]["username"].split(":")[0])
    later_expiry = int(turn_entries(later)[0]["username"].split(":")[0])
    assert later_expiry == first_expiry + 600
    assert later.expires_at > first.expires_at


async def test_f11_secret_never_in_output_or_logs(coturn, caplog):
    """F11: the shared secret appears neither in the servers nor in any log record at DEBUG."""
    with caplog.at_level(logging.DEBUG):
        result = await ice.get_ice_servers(user_id=3)
        coturn.WIMZ_COTURN_URLS = ["http://wrong.example.com"]
        broken = await ice.get_ice_servers(user_id=3)
    assert COTURN_SECRET not in json.dumps(result.ice_servers)
    assert COTURN_SECRET not in repr(result)
    assert COTURN_SECRET not in json.dumps(broken.ice_servers)
    assert_no_secret_logged(caplog, COTURN_SECRET)
    assert broken.fallback is True


@pytest.mark.parametrize(
    ("secret", "urls"),
    [("", ["turn:turn.example.com:3478"]), ("s3cret", []), ("s3cret", ["stun:only.example.com"])],
    ids=["no-secret", "no-urls", "no-turn-url"],
)
async def test_coturn_missing_config_falls_back(coturn, caplog, secret, urls):
    """coturn without a secret or without any turn:/turns: URL serves STUN-only with kind `config`."""
    coturn.WIMZ_COTURN_SECRET = secret
    coturn.WIMZ_COTURN_URLS = urls
    coturn.WIMZ_STUN_URLS = ["stun:stun.cloudflare.com:3478"]
    with caplog.at_level(logging.WARNING):
        result = await ice.get_ice_servers(user_id=3)
    assert_stun_fallback(result, "config")
    assert "coturn" in caplog.text
