"""Device secrets encrypted at rest (devices/encryption.py, docs/operations.md "Secrets at rest"): what the
database holds, signature checks across a key rotation, a dropped key, the data migration, and the
commands without keys. The serve refusal without keys is in tests/test_project.py."""

import importlib
import io
import json
import logging

import pytest
from cryptography.fernet import Fernet
from django.apps import apps as django_apps
from django.core.management import CommandError, call_command
from django.db import connection

from devices import encryption, services
from devices.models import Device
from devices.signing import verify_device_signature
from tests.support import signing as support_signing

pytestmark = pytest.mark.django_db

migration = importlib.import_module("devices.migrations.0003_encrypt_device_secrets")


@pytest.fixture
def keys(settings):
    """Two fresh Fernet keys; the relay starts with the first only."""
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.WIMZ_SECRET_KEYS = [old]
    return old, new


def stored(device_id: str) -> str:
    """The raw column value, read with SQL (no model code in between)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT secret_encrypted FROM devices_device WHERE device_id = %s", [device_id])
        return cursor.fetchone()[0]


def store_plain(device_id: str, secret: str) -> None:
    """Write a plain secret the way rows looked before encryption (raw SQL)."""
    with connection.cursor() as cursor:
        cursor.execute("UPDATE devices_device SET secret_encrypted = %s WHERE device_id = %s", [secret, device_id])


def signed(device_id: str, secret: str) -> tuple[str, int, str]:
    """`(device_id, ts, signature)` at a timestamp this test has not used for `device_id` (a triple is
    accepted once: `int(time.time()) - 1` could repeat the previous call's second when the clock ticked)."""
    handshake = support_signing.signed(device_id, secret, support_signing.fresh_ts(device_id))
    return handshake.device_id, handshake.ts, handshake.sig


def run(*args):
    out, err = io.StringIO(), io.StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def assert_encrypted(device_id: str, secret: str) -> None:
    value = stored(device_id)
    assert value != secret and secret not in value and secret.upper() not in value
    assert encryption.is_encrypted(value) and encryption.decrypt(value) == secret


def test_every_path_that_issues_a_secret_stores_only_its_ciphertext(keys, admin_client):
    """Provisioning (service, command, bulk), rotation (service, command) and the admin's "add" write a Fernet
    token to the column: never the secret, nor anything containing it."""
    _, secret = services.device_provision(device_id="r_service")[:2]
    assert_encrypted("r_service", secret)
    data = json.loads(run("provision_device", "r_command", "--json")[0])
    assert_encrypted("r_command", data["secret"])
    for line in run("provision_device", "--count", "3", "--prefix", "r_bulk")[0].splitlines():
        row = json.loads(line)
        assert_encrypted(row["device_id"], row["secret"])
    assert_encrypted("r_service", services.device_rotate_secret(device=Device.objects.get(device_id="r_service")))
    assert_encrypted("r_command", json.loads(run("rotate_device_secret", "r_command", "--json")[0])["secret"])
    admin_client.post("/admin/devices/device/add/", {"device_id": "r_admin", "name": "", "is_active": "on"})
    assert_encrypted("r_admin", Device.objects.get(device_id="r_admin").reveal_secret())
    tokens = {stored(d) for d in ("r_service", "r_command", "r_admin")}
    assert len(tokens) == 3


def test_the_model_has_no_plain_secret_attribute(keys, make_device):
    """No code can read the ciphertext as if it were the secret: the old `secret` attribute is gone, and
    the secret comes only from `reveal_secret()`."""
    device, secret = make_device("r1")
    assert not hasattr(device, "secret")
    assert Device.objects.get(pk=device.pk).reveal_secret() == secret


def test_signatures_verify_after_encryption_and_across_a_key_rotation(keys, settings, make_device):
    """Signatures verify against the encrypted secret; after the new key is added in front they still verify
    (old key decrypts), `rotate_secret_keys` moves every row to the new key, and with the old key dropped
    they verify still, without the robot's secret changing."""
    old, new = keys
    device, secret = make_device("r1")
    make_device("r2")
    assert verify_device_signature(*signed("r1", secret)) == device
    before = stored("r1")
    settings.WIMZ_SECRET_KEYS = [new, old]
    assert verify_device_signature(*signed("r1", secret)) == device
    out, _ = run("rotate_secret_keys", "--batch-size", "1")
    assert out.strip() == "rotated 2, encrypted 0 (were plain), changed meanwhile 0, failed 0 (of 2 devices)"
    after = stored("r1")
    assert after != before and secret not in after
    assert Fernet(new.encode()).decrypt(after.encode()).decode() == secret
    settings.WIMZ_SECRET_KEYS = [new]
    assert verify_device_signature(*signed("r1", secret)) == device
    assert verify_device_signature(*signed("r1", "0" * 64)) is None


def test_a_row_under_a_dropped_key_is_refused_with_a_clear_error(
    keys, settings, make_device, api, robot_headers, caplog
):
    """Dropping a key before rotating leaves rows no key opens: their signatures are refused (None, the
    REST call a 403 like any failed signature, not a 500), the log names the device and the cause (never the
    secret or the token), `reveal_secret` raises `SecretUndecryptable`, and `rotate_secret_keys` lists them
    and exits non-zero."""
    old, new = keys
    device, secret = make_device("r1")
    token = stored("r1")
    settings.WIMZ_SECRET_KEYS = [new]
    with caplog.at_level(logging.ERROR, logger="devices.signing"):
        assert verify_device_signature(*signed("r1", secret)) is None
    assert "r1" in caplog.text and "WIMZ_SECRET_KEYS" in caplog.text
    assert secret not in caplog.text and token not in caplog.text
    r = api.post("/api/devices/pairing-code", **robot_headers("r1", secret))
    assert r.status_code == 403 and r.json()["code"] == "device_auth_failed"
    with pytest.raises(encryption.SecretUndecryptable):
        Device.objects.get(pk=device.pk).reveal_secret()
    with pytest.raises(CommandError, match=r"1 device secret\(s\) open with none of WIMZ_SECRET_KEYS .*: r1\."):
        run("rotate_secret_keys")
    assert stored("r1") == token  # left as it was: the old key can still be put back
    settings.WIMZ_SECRET_KEYS = [new, old]
    assert verify_device_signature(*signed("r1", secret)) == device


def test_rotation_never_overwrites_a_secret_rotated_meanwhile(keys, settings, make_device, monkeypatch):
    """`rotate_secret_keys` writes a row only if it still holds the token it read: a device whose secret was
    rotated between the read and the write keeps its new secret."""
    old, new = keys
    device, _ = make_device("r1")
    settings.WIMZ_SECRET_KEYS = [new, old]
    real_rotate, fresh = encryption.rotate, {}

    def rotate_while_an_operator_rotates_the_secret(token):
        fresh["secret"] = services.device_rotate_secret(device=Device.objects.get(pk=device.pk))
        return real_rotate(token)

    monkeypatch.setattr(encryption, "rotate", rotate_while_an_operator_rotates_the_secret)
    out, _ = run("rotate_secret_keys")
    assert "rotated 0, encrypted 0 (were plain), changed meanwhile 1, failed 0 (of 1 devices)" in out
    assert Device.objects.get(pk=device.pk).reveal_secret() == fresh["secret"]


def test_data_migration_encrypts_plain_rows_once_and_reverses(keys, make_device):
    """The migration's function encrypts plain rows in place and leaves encrypted ones alone (a second run
    changes nothing); signatures verify afterwards; the reverse function gives the plain secrets back."""
    first, secret1 = make_device("r1")
    _, secret2 = make_device("r2")
    kept = stored("r2")  # already encrypted
    store_plain("r1", secret1)
    assert migration.encrypt_plain_secrets(django_apps, None) == 1
    assert_encrypted("r1", secret1)
    assert stored("r2") == kept
    after = stored("r1")
    assert migration.encrypt_plain_secrets(django_apps, None) == 0
    assert stored("r1") == after
    assert verify_device_signature(*signed("r1", secret1)) == first
    assert migration.decrypt_secrets(django_apps, None) == 2
    assert (stored("r1"), stored("r2")) == (secret1, secret2)


def test_data_migration_without_keys_fails_clearly_only_when_it_has_rows_to_encrypt(keys, settings, make_device):
    """No keys and nothing plain (a fresh database): the migration passes. No keys and a plain row: it stops
    with `SecretKeysUnavailable`, which names the setting, and the plain row is left as it was."""
    settings.WIMZ_SECRET_KEYS = []
    assert migration.encrypt_plain_secrets(django_apps, None) == 0
    settings.WIMZ_SECRET_KEYS = keys[:1]
    make_device("r1")
    store_plain("r1", "ab" * 32)
    settings.WIMZ_SECRET_KEYS = []
    with pytest.raises(encryption.SecretKeysUnavailable, match="WIMZ_SECRET_KEYS"):
        migration.encrypt_plain_secrets(django_apps, None)
    assert stored("r1") == "ab" * 32


def test_rotate_secret_keys_encrypts_a_plain_row(keys, make_device):
    """A plain row found by `rotate_secret_keys` (written before the migration) is encrypted, not refused."""
    _, secret = make_device("r1")
    store_plain("r1", secret)
    out, _ = run("rotate_secret_keys")
    assert "rotated 0, encrypted 1 (were plain)" in out
    assert_encrypted("r1", secret)


@pytest.mark.parametrize("keys_value", [[], ["not-a-fernet-key"]])
def test_commands_that_need_secrets_fail_clearly_without_keys(keys, settings, make_device, keys_value):
    """Without usable keys, provisioning (one or bulk), `rotate_device_secret` and `rotate_secret_keys` stop with
    a CommandError naming WIMZ_SECRET_KEYS and change nothing; commands that need no secret still run."""
    make_device("r1")
    token = stored("r1")
    settings.WIMZ_SECRET_KEYS = keys_value
    for args in (
        ("provision_device", "r2"),
        ("provision_device", "--count", "2", "--prefix", "b"),
        ("rotate_device_secret", "r1"),
        ("rotate_secret_keys",),
    ):
        with pytest.raises(CommandError, match="WIMZ_SECRET_KEYS") as raised:
            run(*args)
        assert "not-a-fernet-key" not in str(raised.value)
    assert list(Device.objects.values_list("device_id", flat=True)) == ["r1"]
    assert stored("r1") == token
    assert "r1" in run("list_devices")[0]
    run("deactivate_device", "r1")


def test_is_encrypted_tells_tokens_from_plain_secrets(keys):
    """Plain 64-hex secrets (and junk) are never mistaken for tokens; tokens under any key are recognised."""
    assert encryption.is_encrypted(encryption.encrypt("ab" * 32))
    assert encryption.is_encrypted(Fernet(Fernet.generate_key()).encrypt(b"x" * 64).decode())
    for value in ("ab" * 32, "", "gAAAAA", "x" * 184, "é" * 10, None):
        assert not encryption.is_encrypted(value)
