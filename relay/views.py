"""Health and cluster-wide stats endpoints."""

from django.http import JsonResponse


def health(request):
    """Placeholder replaced by the relay core."""
    return JsonResponse({"status": "ok"})


def stats(request):
    """Placeholder replaced by the relay core."""
    return JsonResponse({})
