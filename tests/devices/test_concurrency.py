"""Concurrent pairing with one code: exactly one request wins (PostgreSQL row locks)."""

import threading

import pytest
from django.db import connection, connections

from devices import pairing, services
from devices.errors import DeviceOwned, InvalidPairingCode
from devices.models import Device


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_pairs_with_one_code_cannot_both_succeed(make_device, make_user):
    """Eight users race to pair with the same code: one succeeds, the rest get invalid_pairing_code/device_owned."""
    if connection.vendor != "postgresql":
        pytest.skip("row-level locking race needs PostgreSQL (SQLite serializes writers anyway)")
    device, _ = make_device()
    code = pairing.pairing_code_issue(device=device).code
    users = [make_user(f"racer{i}@example.com") for i in range(8)]
    barrier = threading.Barrier(len(users))
    results = []

    def attempt(user):
        try:
            barrier.wait()
            services.device_pair(user=user, code=code)
            results.append(("ok", user.pk))
        except (InvalidPairingCode, DeviceOwned) as e:
            results.append((e.code, user.pk))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=attempt, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [pk for outcome, pk in results if outcome == "ok"]
    assert len(winners) == 1
    assert Device.objects.get(pk=device.pk).owner_id == winners[0]
