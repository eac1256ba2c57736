"""What integrators' tools read: Prometheus ``/metrics`` and the JSON API's OpenAPI schema
(docs/integrations.md).

``/metrics`` is for the site's monitoring server only (:class:`~gateway.web.metrics.
MetricsAccess`): the same port serves the drivers' pay page. The OpenAPI schema lists the
JSON routes only (``/api/…``, the payment providers' callback excepted), never the HTML
pages, and is served to logged-in staff at ``/api/openapi.json``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, FastAPI, HTTPException, Request
from fastapi.responses import PlainTextResponse, Response
from fastapi.routing import APIRoute
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from gateway.web.deps import Staff
from gateway.web.metrics import MetricsAccess
from gateway.web.security import client_of

router = APIRouter()

OPENAPI_PATH = "/api/openapi.json"
#: JSON routes that are not the staff API: the providers' signed payment notices answer in
#: each provider's own format (gateway/web/routers/notify.py).
NOT_IN_SCHEMA = frozenset({"/api/payments/callback", OPENAPI_PATH})

#: A refusal says why: ``error`` (our handlers) or ``detail`` (FastAPI's HTTPException).
_ERROR = {"content": {"application/json": {"schema": {
    "type": "object", "minProperties": 1,
    "properties": {"error": {"type": "string"}, "detail": {}}}}}}
#: What any JSON route may answer besides its own result: the app-wide handlers of
#: gateway/web/app.py (login, role, a record the domain refuses) and FastAPI's own 422.
COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "a query or body the route cannot take (it says why) / 请求有误",
          **_ERROR},
    401: {"description": "not logged in / 请先登录", **_ERROR},
    403: {"description": "forbidden for your role, or CSRF token missing / 无权访问", **_ERROR},
    404: {"description": "no such record, or the feature is not configured at this site "
                         "(e.g. no safety or patrol file)", **_ERROR},
    409: {"description": "the domain refuses this record (e.g. no tariff prices the stay)",
          **_ERROR},
}


@dataclass(frozen=True, slots=True)
class MetricsEndpoint:
    """The app's own registry and who may read it (kept in ``app.state.metrics``)."""

    registry: CollectorRegistry
    access: MetricsAccess


@router.get("/metrics", include_in_schema=False)
def metrics(request: Request) -> Response:
    endpoint: MetricsEndpoint = request.app.state.metrics
    if not endpoint.access.enabled:
        raise HTTPException(404)  # not configured: as if there were no such page
    if not endpoint.access.permits(client_of(request), request.headers.get("authorization")):
        return PlainTextResponse("forbidden / 无权访问", status_code=403)
    return Response(generate_latest(endpoint.registry), media_type=CONTENT_TYPE_LATEST)


@router.get(OPENAPI_PATH, include_in_schema=False)
def openapi(request: Request, _user: Staff) -> dict[str, Any]:
    app: FastAPI = request.app
    return app.openapi()


def in_schema(route: APIRoute) -> bool:
    """Only the staff JSON API is described: the HTML pages, the pages' own JSON helpers
    (``/lanes/live``) and the providers' callback are not."""
    return route.path.startswith("/api/") and route.path not in NOT_IN_SCHEMA


def describe_api(routers: Iterable[APIRouter]) -> None:
    """Put the JSON routes in the schema with the answers every one of them may give, and
    leave everything else out. Call before the routers are included (FastAPI takes each
    route's schema settings when it is included); doing it again changes nothing."""
    for route in (route for router in routers for route in router.routes):
        if not isinstance(route, APIRoute):
            continue
        route.include_in_schema = in_schema(route)
        if not route.include_in_schema:
            continue
        route.responses = {**COMMON_RESPONSES, **route.responses}
