"""Pairing codes and the pairing services (docs/protocol.md §17 and "Precise rules")."""

import re
from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from devices import pairing, services
from devices.errors import DeviceNotFound, DeviceOwned, InvalidPairingCode
from devices.models import Device, PairingCode

pytestmark = pytest.mark.django_db


def issue(device, kind=PairingCode.Kind.ROBOT, **kw):
    return pairing.pairing_code_issue(device=device, kind=kind, **kw).code


def test_code_format_and_alphabet():
    """A code is 8 characters of the unambiguous alphabet (no 0, O, 1, I, L), drawn at random."""
    assert pairing.ALPHABET == "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
    assert not set("0O1IL") & set(pairing.ALPHABET)
    codes = {pairing.generate_code() for _ in range(2000)}
    assert len(codes) == 2000
    for code in codes:
        assert re.fullmatch(r"[23456789ABCDEFGHJKMNPQRSTUVWXYZ]{8}", code)
    # every character of the alphabet turns up (a crude check that the draw covers it)
    assert set("".join(codes)) == set(pairing.ALPHABET)


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("abcd-efgh", "ABCDEFGH"),
        (" ABCD EFGH ", "ABCDEFGH"),
        ("abcdefgh", "ABCDEFGH"),
        ("AB-CD-EF-GH", "ABCDEFGH"),
        ("ABCDEFG", None),  # too short
        ("ABCDEFGHJ", None),  # too long
        ("ABCDEFG0", None),  # 0 is not in the alphabet
        ("ABCDEFGI", None),
        ("", None),
        (None, None),
        (12345678, None),
        ("Ä" * 8, None),
        ("A" * 1000, None),
    ],
)
def test_normalize_code(raw, expected):
    """Input is case-insensitive with dashes and spaces ignored; anything else that is not a code gives None."""
    assert pairing.normalize_code(raw) == expected


def test_issued_code_is_stored_with_ttl_by_kind(make_device, settings):
    """Robot codes live WIMZ_PAIRING_CODE_TTL seconds, provisioning codes WIMZ_PROVISIONING_CODE_TTL."""
    device, _ = make_device()
    now = timezone.now()
    robot = pairing.pairing_code_issue(device=device, kind=PairingCode.Kind.ROBOT, now=now)
    prov = pairing.pairing_code_issue(device=device, kind=PairingCode.Kind.PROVISIONING, now=now)
    assert robot.expires_at == now + timedelta(seconds=settings.WIMZ_PAIRING_CODE_TTL)
    assert prov.expires_at == now + timedelta(seconds=settings.WIMZ_PROVISIONING_CODE_TTL)


def test_new_robot_code_expires_previous_robot_codes_only(make_device, make_user):
    """Issuing a robot code invalidates the device's earlier unused robot codes; provisioning codes stay valid."""
    device, _ = make_device()
    old = issue(device)
    prov = issue(device, kind=PairingCode.Kind.PROVISIONING)
    new = issue(device)
    user = make_user()
    with pytest.raises(InvalidPairingCode):
        services.device_pair(user=user, code=old)
    assert services.device_pair(user=user, code=new).owner == user
    # after a successful pair every other live code of the device is spent too
    with pytest.raises(InvalidPairingCode):
        services.device_pair(user=make_user("u2@example.com"), code=prov)


def test_pair_accepts_lower_case_with_dashes(make_device, make_user):
    """A user may type the code in lower case with a dash in the middle."""
    device, _ = make_device()
    code = issue(device)
    user = make_user()
    paired = services.device_pair(user=user, code=f"{code[:4].lower()}-{code[4:].lower()}", name="Rex")
    assert paired.owner == user
    assert paired.name == "Rex"
    assert paired.paired_at is not None


def test_code_expires(make_device, make_user, settings):
    """A code works until its TTL and is `invalid_pairing_code` one second after."""
    device, _ = make_device()
    user = make_user()
    with time_machine.travel("2026-01-01 12:00:00+00:00", tick=False) as traveller:
        code = issue(device)
        traveller.shift(settings.WIMZ_PAIRING_CODE_TTL + 1)
        with pytest.raises(InvalidPairingCode):
            services.device_pair(user=user, code=code)
    device.refresh_from_db()
    assert device.owner is None
    with time_machine.travel("2026-01-01 13:00:00+00:00", tick=False) as traveller:
        code = issue(device)
        traveller.shift(settings.WIMZ_PAIRING_CODE_TTL - 1)
        assert services.device_pair(user=user, code=code).owner == user


def test_code_is_single_use(make_device, make_user):
    """A spent code is refused for everyone, including the user who spent it, after an unpair."""
    device, _ = make_device()
    code = issue(device)
    u1, u2 = make_user("u1@example.com"), make_user("u2@example.com")
    services.device_pair(user=u1, code=code)
    assert PairingCode.objects.get(code=code).used_at is not None
    services.device_unpair(user=u1, device=device)
    for user in (u2, u1):
        with pytest.raises(InvalidPairingCode):
            services.device_pair(user=user, code=code)


def test_device_owned_by_another_user_is_409_and_changes_nothing(make_device, make_user):
    """A live code for another user's device raises `DeviceOwned`; owner, paired_at and the code are untouched."""
    owner, intruder = make_user("owner@example.com"), make_user("intruder@example.com")
    device, _ = make_device(owner=owner, name="Mine", paired_at=timezone.now())
    before = Device.objects.values().get(pk=device.pk)
    code = issue(device)
    with pytest.raises(DeviceOwned) as e:
        services.device_pair(user=intruder, code=code, name="Stolen")
    assert e.value.code == "device_owned"
    assert Device.objects.values().get(pk=device.pk) == before
    assert PairingCode.objects.get(code=code).used_at is None
    # still refused to every other user, still accepted (idempotently) for the owner
    with pytest.raises(DeviceOwned):
        services.device_pair(user=make_user("third@example.com"), code=code)
    assert services.device_pair(user=owner, code=code).owner == owner


def test_pair_own_device_is_idempotent(make_device, make_user, signal_calls, django_capture_on_commit_callbacks):
    """Pairing a device already owned by the same user succeeds, keeps paired_at and sends no new paired event."""
    user = make_user()
    paired_at = timezone.now() - timedelta(days=3)
    device, _ = make_device(owner=user, paired_at=paired_at)
    with django_capture_on_commit_callbacks(execute=True):
        result = services.device_pair(user=user, code=issue(device))
    assert result.owner == user
    device.refresh_from_db()
    assert device.paired_at == paired_at
    assert signal_calls == []


def test_inactive_device_code_is_invalid(make_device, make_user):
    """A live code of a deactivated device answers `invalid_pairing_code`."""
    device, _ = make_device()
    code = issue(device)
    Device.objects.filter(pk=device.pk).update(is_active=False)
    with pytest.raises(InvalidPairingCode):
        services.device_pair(user=make_user(), code=code)


def test_pair_and_unpair_call_relay_hooks_after_commit(
    make_device, make_user, signal_calls, django_capture_on_commit_callbacks
):
    """`on_device_paired` / `on_device_unpaired` run on commit with the documented keyword arguments."""
    user = make_user()
    device, _ = make_device()
    with django_capture_on_commit_callbacks() as callbacks:
        services.device_pair(user=user, code=issue(device))
        assert signal_calls == []  # nothing before commit
    for cb in callbacks:
        cb()
    assert signal_calls == [("paired", {"device_id": device.device_id, "owner_id": user.pk})]
    with django_capture_on_commit_callbacks(execute=True):
        services.device_unpair(user=user, device=device)
    assert signal_calls[-1] == ("unpaired", {"device_id": device.device_id, "former_owner_id": user.pk})


def test_failed_pair_calls_no_hook(make_device, make_user, signal_calls, django_capture_on_commit_callbacks):
    """A refused pair (409) schedules no relay notification."""
    device, _ = make_device(owner=make_user("owner@example.com"))
    with django_capture_on_commit_callbacks(execute=True), pytest.raises(DeviceOwned):
        services.device_pair(user=make_user("other@example.com"), code=issue(device))
    assert signal_calls == []


@pytest.mark.django_db(transaction=True)
def test_real_relay_hooks_run_without_error(make_device, make_user):
    """The relay's real hooks run after pair and unpair commits (no socket open) without raising.

    Transactional: the hooks reach the ORM through `database_sync_to_async`, which closes a connection
    that is inside a test transaction.
    """
    user = make_user()
    device, _ = make_device()
    services.device_pair(user=user, code=issue(device))
    services.device_unpair(user=user, device=device)
    device.refresh_from_db()
    assert device.owner is None and device.paired_at is None


def test_unpair_requires_ownership(make_device, make_user):
    """`device_unpair` by a user who does not own the device raises `DeviceNotFound` and changes nothing."""
    owner = make_user("owner@example.com")
    device, _ = make_device(owner=owner)
    with pytest.raises(DeviceNotFound):
        services.device_unpair(user=make_user("other@example.com"), device=device)
    device.refresh_from_db()
    assert device.owner == owner


def test_provision_validates_and_refuses_duplicates(make_user):
    """`device_provision` returns (device, secret, code), refuses a bad id and a duplicate id."""
    from devices.errors import DeviceAlreadyExists, InvalidDeviceId

    device, secret, code = services.device_provision(device_id="wimz_robot_09", name="Nine")
    assert device.reveal_secret() == secret and len(secret) == 64
    assert PairingCode.objects.get(code=code).kind == PairingCode.Kind.PROVISIONING
    with pytest.raises(DeviceAlreadyExists):
        services.device_provision(device_id="wimz_robot_09")
    for bad in ["", "a" * 65, "robot 1", "робот-1", "a/b"]:
        with pytest.raises(InvalidDeviceId):
            services.device_provision(device_id=bad)
    owned, _, _ = services.device_provision(device_id="wimz_robot_10", owner=make_user())
    assert owned.owner is not None and owned.paired_at is not None


def test_deactivate_expires_codes(make_device, make_user):
    """`device_deactivate` marks the device inactive and its live codes stop working."""
    device, _ = make_device()
    code = issue(device)
    services.device_deactivate(device=device)
    assert Device.objects.get(pk=device.pk).is_active is False
    with pytest.raises(InvalidPairingCode):
        services.device_pair(user=make_user(), code=code)
