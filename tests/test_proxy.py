"""The client address behind trusted proxies (wimz/proxy.py, docs/operations.md "Trusted proxies")."""

import pytest

from wimz.proxy import TrustedProxyMiddleware, client_address, parse_address, parse_networks, resolve_scope
from wimz.serve import daphne_argv

NETS = parse_networks(["10.0.0.0/8", "192.0.2.1", "2001:db8::/32"])


def scope(peer="203.0.113.9", xff=None, proto=None, kind="http", scheme=None):
    headers = [(b"host", b"relay.example.com")]
    if xff is not None:
        headers.append((b"x-forwarded-for", xff.encode()))
    if proto is not None:
        headers.append((b"x-forwarded-proto", proto.encode()))
    return {
        "type": kind,
        "client": [peer, 5555],
        "headers": headers,
        "scheme": scheme or ("ws" if kind == "websocket" else "http"),
    }


def test_forwarded_headers_from_an_untrusted_peer_are_ignored_and_removed():
    """A client that writes X-Forwarded-For itself stays its own TCP address, and the header is gone."""
    out = resolve_scope(scope(xff="1.1.1.1", proto="https"), NETS)
    assert out["client"] == ["203.0.113.9", 5555]
    assert out["scheme"] == "http"
    assert all(name not in (b"x-forwarded-for", b"x-forwarded-proto") for name, _ in out["headers"])


def test_no_proxy_is_trusted_by_default(settings):
    assert settings.WIMZ_TRUSTED_PROXIES == ()
    assert resolve_scope(scope(peer="10.1.2.3", xff="1.1.1.1"))["client"] == ["10.1.2.3", 5555]


def test_behind_a_trusted_proxy_the_rightmost_untrusted_entry_is_the_client():
    """nginx appends what it saw ($proxy_add_x_forwarded_for): the client's own entries on the left lose."""
    out = resolve_scope(scope(peer="10.0.0.2", xff="6.6.6.6, 7.7.7.7, 198.51.100.4"), NETS)
    assert out["client"] == ["198.51.100.4", 0]


def test_a_chain_of_trusted_proxies_is_skipped():
    assert client_address("10.0.0.2", ["6.6.6.6", "198.51.100.4", "10.9.9.9", "192.0.2.1"], NETS) == "198.51.100.4"
    # every hop trusted: the leftmost is the client
    assert client_address("10.0.0.2", ["10.0.0.7", "10.0.0.8"], NETS) == "10.0.0.7"
    # nothing forwarded: the proxy itself
    assert client_address("10.0.0.2", [], NETS) == "10.0.0.2"


def test_an_unparseable_entry_never_becomes_the_client():
    """Garbage where an address should be stops the walk at the nearest trusted hop (no forged bucket)."""
    assert client_address("10.0.0.2", ["1.1.1.1", "not-an-ip"], NETS) == "10.0.0.2"
    assert client_address("10.0.0.2", ["1.1.1.1", "garbage", "10.0.0.5"], NETS) == "10.0.0.5"


def test_entry_forms():
    assert str(parse_address("198.51.100.4:443")) == "198.51.100.4"
    assert str(parse_address("[2001:db8::1]:443")) == "2001:db8::1"
    assert str(parse_address("2001:db8::1")) == "2001:db8::1"
    assert str(parse_address("::ffff:10.0.0.2")) == "10.0.0.2"
    assert parse_address("unknown") is None


def test_several_header_lines_are_read_in_order():
    s = scope(peer="10.0.0.2", xff="6.6.6.6")
    s["headers"].append((b"X-Forwarded-For", b"198.51.100.4"))
    assert resolve_scope(s, NETS)["client"] == ["198.51.100.4", 0]


def test_forwarded_proto_from_a_trusted_proxy_sets_the_scheme_for_http_and_websocket():
    assert resolve_scope(scope(peer="10.0.0.2", xff="198.51.100.4", proto="https"), NETS)["scheme"] == "https"
    ws = resolve_scope(scope(peer="10.0.0.2", xff="198.51.100.4", proto="https", kind="websocket"), NETS)
    assert ws["scheme"] == "wss" and ws["client"] == ["198.51.100.4", 0]


def test_bad_trusted_proxy_setting_is_refused():
    with pytest.raises(ValueError, match="not-a-net"):
        parse_networks(["10.0.0.0/8", "not-a-net"])


async def test_middleware_rewrites_the_scope_the_application_sees(settings):
    settings.WIMZ_TRUSTED_PROXIES = NETS
    seen = []

    async def inner(scope, receive, send):
        seen.append(scope)

    await TrustedProxyMiddleware(inner)(
        scope(peer="10.0.0.2", xff="6.6.6.6, 198.51.100.4", kind="websocket"), None, None
    )
    assert seen[0]["client"] == ["198.51.100.4", 0]


def test_daphne_is_not_told_to_trust_proxy_headers():
    """daphne's --proxy-headers takes the leftmost X-Forwarded-For entry from any peer."""
    assert "--proxy-headers" not in daphne_argv("127.0.0.1", 8000)


def test_nginx_example_replaces_forwarded_for_and_sends_the_scheme():
    """docs/nginx.conf is the edge: every proxied location overwrites X-Forwarded-For with the address nginx
    saw and sends X-Forwarded-Proto."""
    from pathlib import Path

    conf = (Path(__file__).resolve().parents[1] / "docs/nginx.conf").read_text()
    locations = conf.split("location ")[1:]
    assert locations
    for block in locations:
        assert "proxy_set_header X-Forwarded-For $remote_addr;" in block
        assert "proxy_set_header X-Forwarded-Proto $scheme;" in block
