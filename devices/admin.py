"""Django admin for robots and their pairing codes.

The device secret (stored encrypted, devices/encryption.py) is never displayed: it is excluded from every
form and column. It is shown once,
in a message (kept in the server-side session, never in a cookie: wimz/settings.py MESSAGE_STORAGE), when
the admin creates a device or runs the "rotate secret" action. Online state comes
from `relay.presence` with one query per changelist page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.views.main import ChangeList
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from . import pairing, services
from .models import Device, PairingCode
from .signals import online_device_ids
from .signing import generate_secret

# ModelAdmin and ModelForm are generic in django-stubs only (they cannot be subscripted at run time).
if TYPE_CHECKING:
    _DeviceAdmin = admin.ModelAdmin[Device]
    _PairingCodeAdmin = admin.ModelAdmin[PairingCode]
    _DeviceForm = forms.ModelForm[Device]
else:
    _DeviceAdmin = _PairingCodeAdmin = admin.ModelAdmin


class OwnerSetFilter(admin.SimpleListFilter):
    """Filter devices by whether they are paired to an owner."""

    title = "owner set"
    parameter_name = "has_owner"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]) -> tuple[tuple[str, str], ...]:
        return (("yes", "paired"), ("no", "unpaired"))

    # QuerySet[Any]: the signature of django-stubs' ListFilter.queryset, which any model admin may use.
    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "yes":
            return queryset.filter(owner__isnull=False)
        if self.value() == "no":
            return queryset.filter(owner__isnull=True)
        return queryset


class OnlineFilter(admin.SimpleListFilter):
    """Filter devices by whether their robot is connected now (live presence, one query)."""

    title = "online"
    parameter_name = "online"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]) -> tuple[tuple[str, str], ...]:
        return (("yes", "online"), ("no", "offline"))

    # QuerySet[Any]: the signature of django-stubs' ListFilter.queryset, which any model admin may use.
    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() not in ("yes", "no"):
            return queryset
        online = online_device_ids(queryset.values_list("device_id", flat=True))
        if self.value() == "yes":
            return queryset.filter(device_id__in=online)
        return queryset.exclude(device_id__in=online)


class DeviceChangeList(ChangeList):
    """ChangeList that fetches presence for the whole page in one query after the page is loaded."""

    def get_results(self, request: HttpRequest) -> None:
        super().get_results(request)
        page: list[Device] = list(self.result_list)
        online = online_device_ids([d.device_id for d in page])
        for device in page:
            device.is_online = device.device_id in online


@admin.register(Device)
class DeviceAdmin(_DeviceAdmin):
    """Robots: owner, presence, firmware; actions to rotate the secret (shown once), unpair, deactivate and
    reactivate, each recorded in Django's admin log (who, when, what)."""

    list_display = ("device_id", "name", "owner", "online", "last_seen", "firmware_version", "is_active", "paired_at")
    list_filter = ("is_active", OnlineFilter, OwnerSetFilter, "firmware_version")
    search_fields = ("device_id", "name", "owner__email")
    list_select_related = ("owner",)
    autocomplete_fields = ("owner",)
    exclude = ("secret_encrypted",)
    readonly_fields = ("last_seen", "paired_at", "created_at", "firmware_version", "capabilities")
    actions = ("rotate_secret", "unpair", "deactivate", "reactivate")

    def get_changelist(self, request: HttpRequest, **kwargs: Any) -> type[ChangeList]:
        return DeviceChangeList

    def get_readonly_fields(self, request: HttpRequest, obj: Device | None = None) -> tuple[str, ...]:
        # The id is the robot's identity (its signatures cover it): fixed once created. The owner
        # changes only through pairing or the "unpair" action, which tell the relay (sessions end,
        # apps get device_status) — a plain field edit would not.
        return (("device_id", "owner") if obj else ()) + tuple(self.readonly_fields)

    @admin.display(boolean=True, description="online")
    def online(self, obj: Device) -> bool:
        if not hasattr(obj, "is_online"):
            obj.is_online = obj.device_id in online_device_ids([obj.device_id])
        return obj.is_online

    def save_model(self, request: HttpRequest, obj: Device, form: _DeviceForm, change: bool) -> None:
        """On creation, give the device a secret and a provisioning code and show both once. Unticking
        or ticking "active" in the form goes through the service, as the actions do (socket closed and
        codes expired; or the owner's apps told the device is back).
        """
        if change:
            toggled = "is_active" in form.changed_data
            wanted = obj.is_active
            if toggled:
                obj.is_active = not wanted  # the service below makes the change, with its side effects
            super().save_model(request, obj, form, change)
            if toggled:
                (services.device_reactivate if wanted else services.device_deactivate)(device=obj)
            return
        secret = generate_secret()
        obj.set_secret(secret)
        if obj.owner_id:
            obj.paired_at = timezone.now()
        super().save_model(request, obj, form, change)
        code = pairing.pairing_code_issue(device=obj, kind=PairingCode.Kind.PROVISIONING)
        messages.warning(
            request,
            f"Device {obj.device_id} created. Secret (shown only now): {secret} — provisioning pairing code: "
            f"{code.code}",
        )

    @admin.action(description="Rotate secret (the new secret is shown once)")
    def rotate_secret(self, request: HttpRequest, queryset: QuerySet[Device]) -> None:
        for device in queryset:
            secret = services.device_rotate_secret(device=device)
            self.log_change(request, device, "Rotated the secret (admin action).")
            messages.warning(request, f"New secret for {device.device_id} (shown only now): {secret}")

    @admin.action(description="Unpair from its owner (ends its sessions)")
    def unpair(self, request: HttpRequest, queryset: QuerySet[Device]) -> None:
        count = 0
        for device in queryset.filter(owner__isnull=False).select_related("owner"):
            owner = device.owner
            if owner is None:  # excluded by the filter above; narrows the type
                continue
            services.device_unpair(user=owner, device=device)
            self.log_change(request, device, f"Unpaired from {owner.email} (admin action).")
            count += 1
        messages.success(request, f"{count} device(s) unpaired.")

    @admin.action(description="Deactivate (refuse its signatures, hide it from its owner)")
    def deactivate(self, request: HttpRequest, queryset: QuerySet[Device]) -> None:
        count = 0
        for device in queryset.filter(is_active=True):
            services.device_deactivate(device=device)
            self.log_change(request, device, "Deactivated (admin action).")
            count += 1
        messages.success(request, f"{count} device(s) deactivated.")

    @admin.action(description="Reactivate (accept its signatures again, show it to its owner)")
    def reactivate(self, request: HttpRequest, queryset: QuerySet[Device]) -> None:
        count = 0
        for device in queryset.filter(is_active=False):
            services.device_reactivate(device=device)
            self.log_change(request, device, "Reactivated (admin action).")
            count += 1
        messages.success(request, f"{count} device(s) reactivated.")


@admin.register(PairingCode)
class PairingCodeAdmin(_PairingCodeAdmin):
    """Pairing codes, read-only: who issued what, when it expires, whether it was used."""

    list_display = ("code", "device", "kind", "created_at", "expires_at", "used_at", "state")
    list_filter = ("kind", ("used_at", admin.EmptyFieldListFilter))
    search_fields = ("code", "device__device_id")
    list_select_related = ("device",)
    readonly_fields = ("code", "device", "kind", "created_at", "expires_at", "used_at")

    @admin.display(description="state")
    def state(self, obj: PairingCode) -> str:
        if obj.used_at:
            return "used"
        return "expired" if obj.expires_at <= timezone.now() else "live"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: PairingCode | None = None) -> bool:
        return False
