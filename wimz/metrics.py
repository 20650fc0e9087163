"""`GET /metrics`: this process's Prometheus metrics, for the operator's scraper only.

The metrics themselves are defined in `relay.metrics` (and django-prometheus' HTTP and database
metrics); this module is the endpoint and its access rule. `wimz.probes.HealthProbeMiddleware` hands
`/metrics` here before host validation, since Prometheus scrapes every instance by its own address
(a pod IP), which is not in `ALLOWED_HOSTS`. docs/operations.md "Metrics".
"""

import hmac

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4

from wimz.proxy import parse_address

METRICS_PATH = "/metrics"


def access_ok(request) -> bool:
    """Whether `request` may read `/metrics`: every check that is configured must pass —
    `Authorization: Bearer <WIMZ_METRICS_TOKEN>` (compared in constant time) and a client address inside
    `WIMZ_METRICS_ALLOW` (the address `wimz.proxy` settled from the trusted proxies, never a header the
    client wrote). With neither setting, nobody may: the metrics tell the relay's load and error rates,
    which are not for the public, and an operator who scrapes sets one or both.
    """
    token, networks = settings.WIMZ_METRICS_TOKEN, settings.WIMZ_METRICS_ALLOW
    if not token and not networks:
        return False
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
            return False
    if networks:
        address = parse_address(request.META.get("REMOTE_ADDR") or "")
        if address is None or not any(address in network for network in networks):
            return False
    return True


@csrf_exempt
@require_safe
async def metrics(request):
    """`GET|HEAD /metrics` → 200, this process's metrics in the Prometheus text format (0.0.4).

    403 `{"code":"permission_denied",...}` unless `access_ok`. Async on purpose: the scrape-time gauges
    (`relay.metrics.LiveStateCollector`) read the open sockets on the event loop's thread, where they change.
    """
    if not access_ok(request):
        return JsonResponse(
            {"code": "permission_denied", "detail": "The metrics token or an allowed address only."}, status=403
        )
    # The classic text format, which every Prometheus 2.x and 3.x reads (the relay's names need nothing newer).
    return HttpResponse(generate_latest(REGISTRY), content_type=CONTENT_TYPE_PLAIN_0_0_4)
