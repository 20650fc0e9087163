"""factory-boy factories for the models the tests build: users, devices (with their secret), sessions
and connection rows. `make_user` / `make_device` in tests/conftest.py are thin wrappers over these.

    user = UserFactory()                      # u<n>@example.com, password PASSWORD
    device = DeviceFactory(owner=user)        # device.plain_secret holds the secret it was given
    session = SessionFactory(device=device)   # requested, owned by the device's owner
"""

import uuid

import factory
from django.utils import timezone

from accounts.models import User
from devices.models import Device
from devices.signing import generate_secret
from relay.models import Connection, Session

PASSWORD = "correct-horse-battery-9"


class UserFactory(factory.django.DjangoModelFactory):
    """A user with a unique email and `PASSWORD` (hashed by `create_user`)."""

    class Meta:
        model = User

    email = factory.Sequence(lambda n: f"user{n}@example.com")
    password = PASSWORD

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        return model_class.objects.create_user(*args, **kwargs)


class DeviceFactory(factory.django.DjangoModelFactory):
    """A robot stored as every real path stores it: its secret encrypted (`Device.set_secret`).

    `secret` (default: a fresh one) is not a model field; the plain value is left on the instance as
    `plain_secret` for signing in the test.
    """

    class Meta:
        model = Device

    device_id = factory.Sequence(lambda n: f"wimz_robot_{n:03d}")
    owner = None
    secret = factory.LazyFunction(generate_secret)

    @classmethod
    def _create(cls, model_class, *args, **kwargs):
        secret = kwargs.pop("secret")  # not a field: stored through set_secret
        device = model_class(*args, **kwargs)
        device.set_secret(secret)
        device.save()
        device.plain_secret = secret
        return device


class SessionFactory(factory.django.DjangoModelFactory):
    """A signaling session row (`requested`) between the device's owner and the device."""

    class Meta:
        model = Session

    device = factory.SubFactory(DeviceFactory, owner=factory.SubFactory(UserFactory))
    user = factory.LazyAttribute(lambda session: session.device.owner)
    app_channel = factory.LazyFunction(lambda: f"test.app!{uuid.uuid4().hex}")
    robot_channel = factory.LazyFunction(lambda: f"test.robot!{uuid.uuid4().hex}")


class ConnectionFactory(factory.django.DjangoModelFactory):
    """A live robot connection row (presence), as the relay's consumer records it."""

    class Meta:
        model = Connection

    role = Connection.Role.ROBOT
    device = factory.SubFactory(DeviceFactory)
    channel_name = factory.LazyFunction(lambda: f"test.{uuid.uuid4().hex}")
    heartbeat_at = factory.LazyFunction(timezone.now)
