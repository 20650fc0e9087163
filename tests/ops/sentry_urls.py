"""A URL map for the Sentry test: the project's URLs plus one view that fails with secrets in hand."""

from django.urls import path
from django.views.decorators.csrf import csrf_exempt

from wimz.urls import urlpatterns as project_urls


@csrf_exempt
def explode(request):
    """Raise an error whose message carries the request's bearer token (a careless log or exception)."""
    raise RuntimeError(f"boom with {request.headers.get('Authorization')} and {request.GET.get('token')}")


urlpatterns = [*project_urls, path("boom/", explode)]
