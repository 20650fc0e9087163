"""URL map: health/stats, the REST API (`/api/...`), its OpenAPI schema, and Django admin."""

from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from relay import views as relay_views

urlpatterns = [
    path("health", relay_views.health, name="health"),
    path("stats", relay_views.stats, name="stats"),
    path("api/auth/", include("accounts.urls")),
    path("api/", include("devices.urls")),
    path("api/", include("relay.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path(settings.WIMZ_ADMIN_PATH, admin.site.urls),  # WIMZ_ADMIN_PATH, default "admin/"
]

handler404 = "core.api.not_found"
handler400 = "core.api.bad_request"
