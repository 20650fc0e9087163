"""URL map: health/stats, the REST API (`/api/...`), its OpenAPI schema, and Django admin."""

from typing import Any

from django.conf import settings
from django.contrib import admin
from django.http import HttpRequest, HttpResponse
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from core.throttling import login_wait
from relay import views as relay_views


def admin_login(request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
    """Django admin's login, behind the API login's throttles (per account and per address): a POST past
    either answers 429 with `Retry-After` and is not checked at all."""
    if request.method == "POST":
        wait = login_wait(request, (request.POST.get("username") or "").strip().lower())
        if wait is not None:
            response = HttpResponse(
                f"Too many login attempts; try again in {int(wait) + 1} s.", status=429, content_type="text/plain"
            )
            response["Retry-After"] = str(int(wait) + 1)
            return response
    return admin.site.login(request, extra_context)


urlpatterns = [
    path("health", relay_views.health, name="health"),
    path("stats", relay_views.stats, name="stats"),
    path("api/auth/", include("accounts.urls")),
    path("api/", include("devices.urls")),
    path("api/", include("relay.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path(settings.WIMZ_ADMIN_PATH + "login/", admin_login, name="admin-login"),
    path(settings.WIMZ_ADMIN_PATH, admin.site.urls),  # WIMZ_ADMIN_PATH, default "admin/"
]

handler404 = "core.api.not_found"
handler400 = "core.api.bad_request"
