"""Sentry: with SENTRY_DSN set, errors are reported; nothing secret leaves the process (wimz/sentry.py).

A capturing transport stands in for Sentry's servers: the test fails a request that carries a JWT in
`Authorization`, a device signature in `X-Signature`, a `?token=` and a password in the body, and an
exception message quoting them, logs an ERROR with a pairing code and a refresh token, then checks
that the events were sent and that no secret appears anywhere in what would have left the process.
"""

import json
import logging

import pytest
import sentry_sdk
from sentry_sdk.transport import Transport

from wimz import sentry

JWT = "eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyX2lkIjo0Mn0.c2lnbmF0dXJlLXZhbHVlLTEyMzQ1Ng"
SIGNATURE = "9f2c" * 16
DEVICE_SECRET = "ab01" * 16
REFRESH = "eyJyZWZyZXNoIjp0cnVlfQ.eyJqdGkiOiJ4eXoifQ.cmVmcmVzaC1zaWctNzg5"
PAIRING_CODE = "K7Q2-9XZP"
PASSWORD = "correct horse battery staple 42"


class Capture(Transport):
    """Keeps every envelope instead of sending it."""

    def __init__(self, options=None):
        super().__init__(options)
        self.envelopes = []

    def capture_envelope(self, envelope):
        self.envelopes.append(envelope)

    def payload(self) -> str:
        return "\n".join(
            item.payload.get_bytes().decode(errors="replace") for envelope in self.envelopes for item in envelope.items
        )


@pytest.fixture
def captured(settings):
    transport = Capture()
    sentry.init("https://public@sentry.example/1", transport=transport)
    settings.ROOT_URLCONF = "tests.ops.sentry_urls"
    settings.DEBUG_PROPAGATE_EXCEPTIONS = False
    yield transport
    sentry_sdk.get_client().close()
    sentry_sdk.init(dsn=None)  # a disabled client for the rest of the run


async def test_nothing_secret_leaves_the_process(captured):
    """Through the relay's real ASGI application (as daphne calls it)."""
    from channels.testing import HttpCommunicator

    from wimz.asgi import application

    body = json.dumps({"password": PASSWORD, "secret": DEVICE_SECRET, "note": f"secret={DEVICE_SECRET}"})
    communicator = HttpCommunicator(
        application,
        "POST",
        f"/boom/?token={JWT}&device_id=wimz_robot_01",
        body=body.encode(),
        headers=[
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            (b"authorization", f"Bearer {JWT}".encode()),
            (b"x-signature", SIGNATURE.encode()),
            (b"x-device-id", b"wimz_robot_01"),
        ],
    )
    response = await communicator.get_response(timeout=10)
    assert response["status"] == 500
    logging.getLogger("relay.test").error(
        "pairing failed; token=%s sig=%s", REFRESH, SIGNATURE, extra={"pairing_code": PAIRING_CODE, "refresh": REFRESH}
    )
    sentry_sdk.flush()
    sent = captured.payload()
    assert "RuntimeError" in sent and "pairing failed" in sent  # both events were reported
    assert "wimz_robot_01" in sent  # ids are not secrets and stay useful
    for secret in (JWT, SIGNATURE, DEVICE_SECRET, REFRESH, PAIRING_CODE, PASSWORD):
        assert secret not in sent, f"{secret[:12]}… left the process"
    # The JWT's parts must not leak either (a header or signature fragment identifies the token).
    assert JWT.split(".")[2] not in sent


def test_without_a_dsn_nothing_starts():
    """`init("")` leaves Sentry off."""
    sentry_sdk.init(dsn=None)
    sentry.init("")
    assert not sentry_sdk.get_client().dsn


def test_scrub_value_reaches_nested_strings():
    """Keys and values at any depth go through the log scrubber."""
    event = {"a": [{"b": f"Bearer {JWT}"}, (f"token={JWT}",)], f"url?token={JWT}": 1}
    assert JWT not in json.dumps(sentry.scrub_value(event), default=list)
