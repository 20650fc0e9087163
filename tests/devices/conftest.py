"""Devices test fixtures: API clients, presence rows, signed robot headers, hook recorders."""

import pytest
from rest_framework.test import APIClient

from tests.support.factories import ConnectionFactory
from tests.support.signing import signed


@pytest.fixture
def client_for(access_token):
    """`client_for(user) -> APIClient` authenticated with a Bearer access token of `user`."""

    def _client(user):
        client = APIClient()
        client.default_format = "json"
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {access_token(user)}")
        return client

    return _client


@pytest.fixture
def set_online(db):
    """`set_online(device)`: a live robot connection row, as the relay's consumer records it."""

    def _online(device):
        return ConnectionFactory(device=device)

    return _online


@pytest.fixture
def robot_headers():
    """`robot_headers(device_id, secret, ts=None) -> dict` of signed `X-Device-ID/X-Timestamp/X-Signature` headers."""

    def _headers(device_id, secret, ts=None):
        return signed(device_id, secret, ts).meta()

    return _headers


@pytest.fixture
def signal_calls():
    """Record `devices.signals.device_paired/device_unpaired` as `(name, kwargs)` tuples (without
    `device_pk`), with the relay's receivers disconnected so that only the signal itself is tested."""
    from devices import signals
    from relay import ownership

    calls = []

    def recorder(name):
        def _record(sender, signal, **kwargs):
            kwargs.pop("device_pk")
            calls.append((name, kwargs))

        return _record

    paired, unpaired = recorder("paired"), recorder("unpaired")
    signals.device_paired.disconnect(dispatch_uid="relay.ownership.paired")
    signals.device_unpaired.disconnect(dispatch_uid="relay.ownership.unpaired")
    signals.device_paired.connect(paired, weak=False)
    signals.device_unpaired.connect(unpaired, weak=False)
    yield calls
    signals.device_paired.disconnect(paired)
    signals.device_unpaired.disconnect(unpaired)
    signals.device_paired.connect(ownership.on_device_paired, dispatch_uid="relay.ownership.paired")
    signals.device_unpaired.connect(ownership.on_device_unpaired, dispatch_uid="relay.ownership.unpaired")
