"""devices/signing.py: the robot's HMAC signature, skew window, replay and malformed input."""

import hmac
import logging
import re

import pytest

from devices import signing
from devices.models import UsedSignature

SECRET = "0123456789abcdef0123456789abcdef"
DEVICE = "wimz_robot_01"
TS = 1767225600  # 2026-01-01T00:00:00Z
# HMAC-SHA256(key=SECRET, msg="wimz_robot_01:1767225600"), computed independently with
# `printf 'wimz_robot_01:1767225600' | openssl dgst -sha256 -hmac '0123456789abcdef0123456789abcdef'`.
VECTOR = "85e26a752d1170cc471d928d210d131ecb16209b1216e30118205c9517da0720"


def clock(value):
    return lambda: value


@pytest.fixture
def device(make_device):
    """R1 with the known secret."""
    dev, _ = make_device(DEVICE)
    dev.set_secret(SECRET)
    dev.save(update_fields=["secret_encrypted"])
    return dev


def test_sign_matches_the_reference_vector():
    """`sign` is hex HMAC-SHA256 keyed by the secret over `"<device_id>:<timestamp>"` (protocol.md)."""
    assert signing.sign(SECRET, DEVICE, TS) == VECTOR
    assert signing.sign(SECRET, DEVICE, str(TS)) == VECTOR


def test_generate_secret_is_64_hex_and_unique():
    """Secrets are 32 random bytes as hex; two are never equal."""
    a, b = signing.generate_secret(), signing.generate_secret()
    assert re.fullmatch(r"[0-9a-f]{64}", a) and re.fullmatch(r"[0-9a-f]{64}", b)
    assert len(bytes.fromhex(a)) == 32 and a != b


def test_valid_signature_returns_the_device(device):
    """The reference signature at the server's time authenticates the device."""
    assert signing.verify_device_signature(DEVICE, TS, VECTOR, now=clock(TS)) == device


def test_timestamp_as_digit_string_and_upper_case_hex_are_accepted(device):
    """Headers carry strings: a decimal timestamp string works, and hex case does not matter."""
    assert signing.verify_device_signature(DEVICE, str(TS), VECTOR.upper(), now=clock(TS)) == device


@pytest.mark.parametrize("offset", [-300, -299, 0, 299, 300])
def test_timestamp_inside_the_skew_window_is_accepted_both_ways(device, offset, settings):
    """Robot clocks ahead of or behind the server by up to the skew (default ±300 s) are accepted."""
    settings.WIMZ_DEVICE_AUTH_SKEW = 300
    assert signing.verify_device_signature(DEVICE, TS, VECTOR, now=clock(TS - offset)) == device


@pytest.mark.parametrize("offset", [-301, 301, -86400, 86400])
def test_timestamp_outside_the_skew_window_is_refused_both_ways(device, offset, settings):
    """A robot timestamp more than the skew ahead of or behind the server clock is refused."""
    settings.WIMZ_DEVICE_AUTH_SKEW = 300
    assert signing.verify_device_signature(DEVICE, TS, VECTOR, now=clock(TS - offset)) is None


def test_skew_window_follows_the_setting(device, settings):
    """`WIMZ_DEVICE_AUTH_SKEW` sets the window: 10 s refuses a timestamp 11 s old."""
    settings.WIMZ_DEVICE_AUTH_SKEW = 10
    assert signing.verify_device_signature(DEVICE, TS, VECTOR, now=clock(TS + 11)) is None
    assert signing.verify_device_signature(DEVICE, TS, VECTOR, now=clock(TS + 10)) == device


def test_replay_of_the_same_triple_is_refused(device):
    """A (device_id, timestamp, signature) triple is accepted once; a replay in the window is refused."""
    assert signing.verify_device_signature(DEVICE, TS, VECTOR, now=clock(TS)) == device
    assert signing.verify_device_signature(DEVICE, TS, VECTOR, now=clock(TS + 1)) is None
    assert signing.verify_device_signature(DEVICE, str(TS), VECTOR.upper(), now=clock(TS + 1)) is None
    # A fresh timestamp is a new triple.
    ts2 = TS + 5
    assert signing.verify_device_signature(DEVICE, ts2, signing.sign(SECRET, DEVICE, ts2), now=clock(ts2)) == device


def test_verify_without_consume_records_nothing(device):
    """`consume=False` checks without spending the triple."""
    assert signing.verify_device_signature(DEVICE, TS, VECTOR, now=clock(TS), consume=False) == device
    assert not UsedSignature.objects.exists()
    assert signing.verify_device_signature(DEVICE, TS, VECTOR, now=clock(TS)) == device


def test_failed_verification_does_not_spend_the_triple(device):
    """A refused attempt (wrong signature) leaves nothing behind for a replay check."""
    bad = "0" * 64
    assert signing.verify_device_signature(DEVICE, TS, bad, now=clock(TS)) is None
    assert not UsedSignature.objects.exists()


def test_wrong_secret_other_device_and_unknown_device_are_refused(device, make_device):
    """A signature by another key, or for another id, or for an unknown id, returns None."""
    make_device("wimz_robot_02")
    assert signing.verify_device_signature(DEVICE, TS, signing.sign("other", DEVICE, TS), now=clock(TS)) is None
    assert signing.verify_device_signature("wimz_robot_02", TS, VECTOR, now=clock(TS)) is None
    unknown = signing.sign(SECRET, "wimz_robot_99", TS)
    assert signing.verify_device_signature("wimz_robot_99", TS, unknown, now=clock(TS)) is None


def test_inactive_device_is_refused(device):
    """A deactivated device cannot authenticate even with a correct signature."""
    device.is_active = False
    device.save(update_fields=["is_active"])
    assert signing.verify_device_signature(DEVICE, TS, VECTOR, now=clock(TS)) is None


@pytest.mark.parametrize(
    "device_id, timestamp, signature",
    [
        (None, TS, VECTOR),
        ("", TS, VECTOR),
        ("робот-1", TS, VECTOR),
        ("x" * 65, TS, VECTOR),
        (123, TS, VECTOR),
        (["wimz_robot_01"], TS, VECTOR),
        (b"wimz_robot_01", TS, VECTOR),
        (DEVICE, None, VECTOR),
        (DEVICE, "", VECTOR),
        (DEVICE, "1767225600.0", VECTOR),
        (DEVICE, " 1767225600", VECTOR),
        (DEVICE, "-1767225600", VECTOR),
        (DEVICE, "１７６７２２５６００", VECTOR),
        (DEVICE, "9" * 40, VECTOR),
        (DEVICE, True, VECTOR),
        (DEVICE, 1767225600.5, VECTOR),
        (DEVICE, float("nan"), VECTOR),
        (DEVICE, float("inf"), VECTOR),
        (DEVICE, [TS], VECTOR),
        (DEVICE, {"ts": TS}, VECTOR),
        (DEVICE, TS, None),
        (DEVICE, TS, ""),
        (DEVICE, TS, VECTOR[:-1]),
        (DEVICE, TS, VECTOR + "0"),
        (DEVICE, TS, "z" * 64),
        (DEVICE, TS, 12345),
        (DEVICE, TS, VECTOR.encode()),
        (DEVICE, TS, [VECTOR]),
    ],
)
def test_malformed_input_returns_none_never_raises(device, device_id, timestamp, signature):
    """Whatever arrives in headers, query or an `auth` frame, verification returns None, never raises."""
    assert signing.verify_device_signature(device_id, timestamp, signature, now=clock(TS)) is None


@pytest.mark.parametrize("signature", ["ж" * 64, "é" * 64, VECTOR[:-1] + "é"])
def test_non_ascii_signature_returns_none_never_raises(device, signature):
    """A 64-character signature with non-ASCII characters (latin-1 header bytes) returns None."""
    assert signing.verify_device_signature(DEVICE, TS, signature, now=clock(TS)) is None


def test_signatures_are_compared_in_constant_time(device, monkeypatch):
    """Every signature check goes through `hmac.compare_digest`, for known and unknown devices alike."""
    calls = []
    real = hmac.compare_digest

    def recording(a, b):
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(signing.hmac, "compare_digest", recording)
    assert signing.verify_device_signature(DEVICE, TS, VECTOR, now=clock(TS)) == device
    assert calls and calls[-1] == (VECTOR, VECTOR)
    calls.clear()
    assert signing.verify_device_signature(DEVICE, TS + 1, "0" * 64, now=clock(TS)) is None
    assert len(calls) == 1
    calls.clear()
    assert signing.verify_device_signature("wimz_robot_99", TS, "0" * 64, now=clock(TS)) is None
    assert len(calls) == 1, "an unknown device must cost a comparison too (no timing oracle)"


def test_the_secret_is_never_logged(device, caplog):
    """Neither successful nor failed verifications write the secret (or a signature) to a log line."""
    caplog.set_level(logging.DEBUG)
    signing.verify_device_signature(DEVICE, TS, VECTOR, now=clock(TS))
    signing.verify_device_signature(DEVICE, TS, VECTOR, now=clock(TS))
    signing.verify_device_signature(DEVICE, TS, "1" * 64, now=clock(TS))
    for record in caplog.records:
        text = record.getMessage()
        assert SECRET not in text and VECTOR not in text
