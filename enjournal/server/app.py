"""The ASGI application: HTTP in, ``FhirRequest`` to the router, ``FhirResponse`` out.

Routes: ``/fhir/...`` (the FHIR API), ``/health`` (liveness and database check),
``/metrics`` (Prometheus) and the services' routes (``platform.routes``; those under
``platform.bearer_paths`` need a bearer token as ``/fhir`` does).  The store opens in the
lifespan and closes on shutdown, after uvicorn has let running requests finish.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from contextlib import asynccontextmanager

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from enjournal.fhir.errors import Invalid, TooLarge
from enjournal.rest.errors import (
    error_response,
    internal_error,
    send_response,
    status_error,
    wire_headers,
)
from enjournal.rest.message import FhirRequest, FhirResponse
from enjournal.server.observability import Metrics, request_id
from enjournal.settings import Settings
from enjournal.storage import Store

log = logging.getLogger("enjournal.server")


def create_app(
    settings: Settings, store: Store | None = None, security=None, *, platform=None
) -> RequestContext:
    """Build the app on ``platform`` (``enjournal.bootstrap``), else on one composed here
    from the settings; pass ``store`` to share one already open (tests), else the platform
    opens its own in the lifespan.

    With ``settings.auth`` on, ``security`` (an ``enjournal.security.setup.Security``) is
    built from the settings unless given."""
    from enjournal.bootstrap import adopt_store, close_platform, compose, open_platform
    from enjournal.services.jobs import JobRunner

    metrics = Metrics()
    if platform is None:
        platform = compose(settings, security=security, serving=True)
        if store is not None:
            adopt_store(platform, store)
    security = platform.security

    @asynccontextmanager
    async def lifespan(app: Starlette):
        opened = platform.store is None  # else its owner (a test, a caller) closes it
        if opened:
            await open_platform(platform)
        app.state.store = platform.store
        log.info("store open", extra={"fields": {"dialect": app.state.store.dialect}})
        if security is not None:
            await security.start(app.state.store)
        runner = JobRunner(app.state.store, platform.jobs if settings.jobs else [])
        runner.start()
        yield
        await runner.stop()
        if security is not None:
            await security.stop()
        if opened:
            await close_platform(platform)
        log.info("store closed")

    async def fhir(request: Request) -> Response:
        refused = _refused_url(request)
        if refused is not None:
            return _to_http(error_response(refused))
        body = await _read_body(request, settings.max_body_bytes)
        if isinstance(body, FhirResponse):
            return _to_http(body)
        base = settings.fhir_base
        path = [p for p in request.path_params["path"].split("/") if p]
        fhir_request = FhirRequest(
            request.method,
            path,
            list(request.query_params.multi_items()),
            {k.lower(): v for k, v in request.headers.items()},
            body,
            base,
        )
        principal = request.scope.get("state", {}).get("principal")
        response = await _unless_disconnected(request, platform.handle(fhir_request, principal))
        if response is None:
            return Response(status_code=499)  # nobody is listening: nginx's "client closed"
        if request.method == "HEAD":
            response.body = None
        return _to_http(response)

    async def health(request: Request) -> Response:
        try:
            async with request.app.state.store.transaction(write=False) as tx:
                await tx.ping()
        except Exception:  # the health check reports, it does not crash
            log.exception("health check failed")
            return JSONResponse({"status": "fail", "database": "unreachable"}, 503)
        return JSONResponse({"status": "pass", "database": request.app.state.store.dialect})

    async def metrics_endpoint(request: Request) -> Response:
        stats = request.app.state.store.backend.pool_stats()
        metrics.pool_size.set(stats["size"])
        metrics.pool_idle.set(stats["idle"])
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    methods = ["GET", "HEAD", "POST", "PUT", "DELETE", "PATCH"]
    routes = [
        Route("/health", health),
        Route("/metrics", metrics_endpoint),
        *_security_routes(settings, security),
        *platform.routes,
        Route("/fhir{path:path}", fhir, methods=methods),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={
            Exception: _internal_error_response,
            HTTPException: _http_error_response,  # type: ignore[dict-item]  # Starlette calls it only with an HTTPException
        },
    )
    if platform.store is not None:
        app.state.store = platform.store  # usable without running the lifespan (tests)
    app.state.security = security
    app.state.platform = platform
    outer: object = app
    if security is not None:
        from enjournal.server.auth import AuthMiddleware
        from enjournal.server.ratelimit import RateLimitMiddleware

        protected = bearer_paths(platform)
        inner = RateLimitMiddleware(
            app,
            security.limiter,
            per_user=settings.rate_limit("user"),
            per_client=settings.rate_limit("client"),
            per_ip=None,
            paths=(*protected, "/oidc"),
        )
        authenticated = AuthMiddleware(inner, security.verifier, protected)
        # Per IP before authentication, so guessing tokens is throttled too.
        outer = RateLimitMiddleware(
            authenticated,
            security.limiter,
            per_user=None,
            per_client=None,
            per_ip=settings.rate_limit("ip"),
            paths=(*protected, "/oidc", "/helsenorge"),
        )
    return RequestContext(outer, metrics)


def bearer_paths(platform) -> tuple[str, ...]:
    """The path prefixes that need a bearer token: ``/fhir`` and those the services' APIs
    add (``platform.bearer_paths``, e.g. messaging's ``/edi``)."""
    added = tuple(platform.bearer_paths)
    return ("/fhir", *(p for p in added if p != "/fhir"))


def _security_routes(settings: Settings, security) -> list:
    if security is None or security.provider is None:
        return []
    from starlette.routing import Mount

    from enjournal.security.smart import smart_configuration_route

    issuer = security.provider.issuer
    return [
        Mount("/oidc", app=security.provider.router),
        smart_configuration_route(issuer, path="/fhir/.well-known/smart-configuration"),
        smart_configuration_route(issuer),
    ]


async def _read_body(request: Request, limit: int) -> bytes | FhirResponse:
    declared = request.headers.get("content-length")
    if declared and declared.isascii() and declared.isdigit() and int(declared) > limit:
        return _too_large(limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return _too_large(limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def _unless_disconnected(request: Request, work) -> FhirResponse | None:
    """Run ``work`` (the request's handling) unless the client goes away first: then cancel
    it, which rolls its transaction back and frees its connection, and return None.  A
    search a client gave up on should not keep a database busy.  The work runs in this
    task; only the watcher is a task of its own (one task per request, not two)."""
    this = asyncio.current_task()
    gone = False

    async def watch() -> None:
        nonlocal gone
        await _disconnected(request)
        gone = True
        this.cancel()

    watcher = asyncio.create_task(watch())
    try:
        response = await work
    except asyncio.CancelledError:
        if not gone or this.uncancel() > 0:
            raise  # the server is stopping this request
        response = None
    finally:
        watcher.cancel()
    if not gone:
        return response
    if response is not None:  # the work swallowed the cancellation
        this.uncancel()
    log.info("client went away; request cancelled")
    return None


async def _disconnected(request: Request) -> None:
    """Returns when the client disconnects (after the body, ``receive`` waits for that)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _refused_url(request: Request) -> Invalid | None:
    """Invalid when the path or a query parameter holds a control character or a lone
    surrogate: no FHIR id or search value has one, and PostgreSQL cannot even compare a
    NUL.  One rule for both backends (docs/architecture.md, Limits)."""
    params = request.query_params.multi_items()
    texts = [request.scope["path"], *(text for pair in params for text in pair)]
    for text in texts:
        found = _URL_FORBIDDEN.search(text)
        if found is not None:
            return Invalid(f"the URL holds the forbidden character U+{ord(found.group()):04X}")
    return None


# Every C0 control (a URL has no business with tab or line breaks either), DEL, surrogates.
_URL_FORBIDDEN = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")


async def _http_error_response(request: Request, error: HTTPException) -> Response:
    """Starlette's own refusals (no route matched: its path pattern stops at a line break;
    method not allowed) as an OperationOutcome under /fhir, its plain text elsewhere."""
    if not request.scope["path"].startswith("/fhir"):
        return PlainTextResponse(error.detail, error.status_code, error.headers)
    refused = _refused_url(request)
    if refused is not None:
        return _to_http(error_response(refused))
    path = request.scope["path"]
    allow = tuple(m.strip() for m in (error.headers or {}).get("Allow", "").split(",") if m.strip())
    refusal = status_error(error.status_code, f"no FHIR interaction at {path!r}", allow)
    return _to_http(error_response(refusal))


def _too_large(limit: int) -> FhirResponse:
    return error_response(TooLarge(f"the request body is larger than {limit} bytes"))


def _to_http(response: FhirResponse) -> Response:
    """A FhirResponse as a Starlette Response, with the headers ``rest.errors`` gives
    every FHIR response (the middleware around the app sends the same)."""
    return Response(response.body, response.status, wire_headers(response))


class RequestContext:
    """ASGI middleware: request id, access log line and metrics for every HTTP request."""

    def __init__(self, app, metrics: Metrics):
        self.app = app
        self.metrics = metrics
        self.state = app.state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        incoming = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        rid = incoming[:64] if incoming and incoming.isprintable() else uuid.uuid4().hex
        token = request_id.set(rid)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", rid.encode())]
            await send(message)

        started_response = False

        async def tracking_send(message):
            nonlocal started_response
            started_response = started_response or message["type"] == "http.response.start"
            await send_with_id(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            # Never a stack trace to the client: log it, answer with a plain OperationOutcome.
            log.exception("unhandled error")
            if not started_response:
                await _internal_error(send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = _route_label(scope["path"])
            self.metrics.requests.labels(scope["method"], route, str(status)).inc()
            self.metrics.latency.labels(scope["method"], route).observe(elapsed)
            log.info(
                "request",
                extra={
                    "fields": {
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "ms": round(elapsed * 1000, 2),
                    }
                },
            )
            request_id.reset(token)


async def _internal_error_response(request: Request, error: Exception) -> Response:
    return _to_http(internal_error())


async def _internal_error(send) -> None:
    await send_response(send, internal_error())


def _route_label(path: str) -> str:
    """A low-cardinality label: /fhir/Patient/123 -> /fhir/{type}/{id}."""
    parts = [p for p in path.split("/") if p]
    if not parts or parts[0] != "fhir":
        return path
    shape = ["fhir"]
    for n, part in enumerate(parts[1:]):
        if part.startswith(("$", "_")) or part == "metadata":
            shape.append(part)
        else:
            shape.append("{type}" if n == 0 else "{id}")
    return "/" + "/".join(shape)
