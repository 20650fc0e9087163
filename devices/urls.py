"""URL routes of the devices app, mounted at `/api/`.

`<device_id>` takes any path segment so that every id — malformed ones included — gets the same
JSON 404 `not_found`. `pair` and `pairing-code` are listed first, so those two literal ids cannot be
read through `GET /api/devices/<device_id>` (they remain valid robot ids everywhere else).
"""

from django.urls import path

from . import views

urlpatterns = [
    path("devices", views.DeviceListApi.as_view(), name="device-list"),
    path("devices/pair", views.DevicePairApi.as_view(), name="device-pair"),
    path("devices/pairing-code", views.RobotPairingCodeApi.as_view(), name="device-pairing-code"),
    path("devices/<str:device_id>", views.DeviceDetailApi.as_view(), name="device-detail"),
    path("devices/<str:device_id>/unpair", views.DeviceUnpairApi.as_view(), name="device-unpair"),
    # compat aliases (docs/protocol.md §17)
    path("user/devices", views.CompatDeviceListApi.as_view(), name="compat-user-devices"),
    path("user/pair-device", views.CompatPairApi.as_view(), name="compat-pair-device"),
    path("user/unpair-device", views.CompatUnpairApi.as_view(), name="compat-unpair-device"),
]
