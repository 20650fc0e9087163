"""Health probes and the metrics scrape, answered whatever their Host header says.

Kubernetes and load balancers probe an instance by its own address (`Host: 10.1.2.3:8000`), which is
not, and should not be, in `ALLOWED_HOSTS`. Django validates the host lazily, in
`request.get_host()`, which `CommonMiddleware`, `CsrfViewMiddleware` and the HTTPS redirect call, so a
probe through the normal chain gets 400 (or a 301 to https). This middleware sits first in
`MIDDLEWARE` and hands `/health` straight to its view, which never reads the host. Every other path
keeps the full chain, host check included. `/metrics` (`wimz.metrics`) is handed over the same way:
Prometheus scrapes each instance by its pod IP too; it has its own access rule instead.
"""

from asgiref.sync import markcoroutinefunction

HEALTH_PATH = "/health"
METRICS_PATH = "/metrics"


class HealthProbeMiddleware:
    """Answer `GET|HEAD /health` (docs/protocol.md §17.2) and `/metrics` before host validation; pass
    everything else on.

    Async only: the relay is served over ASGI and the health view is a coroutine.
    """

    sync_capable = False
    async_capable = True

    def __init__(self, get_response):
        self.get_response = get_response
        markcoroutinefunction(self)

    async def __call__(self, request):
        if request.path_info == HEALTH_PATH:
            from relay.views import health

            return await health(request)
        if request.path_info == METRICS_PATH:
            from wimz.metrics import metrics

            return await metrics(request)
        return await self.get_response(request)
