"""The one error seam (enjournal.rest.errors): each kind of error -> status, issue code,
headers; and the same headers on every path a response leaves by (the app, the middleware)."""

from __future__ import annotations

import httpx
import orjson
import pytest

from enjournal.fhir import errors
from enjournal.rest.errors import (
    FHIR_JSON,
    SECURITY_HEADERS,
    error_response,
    internal_error,
    send_response,
    status_error,
    wire_headers,
)
from enjournal.security.ratelimit import MemoryLimiter
from enjournal.server.auth import AuthMiddleware
from enjournal.server.ratelimit import RateLimitMiddleware
from enjournal.storage.base import unavailable


def _busy_for(seconds: float) -> errors.Busy:
    error = errors.Busy("try again")
    error.retry_after = seconds
    return error


def _throttled_for(seconds: float) -> errors.TooManyRequests:
    error = errors.TooManyRequests("too many requests, retry later")
    error.retry_after = seconds
    return error


def _refused_token() -> errors.Unauthorized:
    error = errors.Unauthorized("access token expired")
    error.bearer_error = "invalid_token"
    return error


CHALLENGE = 'Bearer realm="enjournal"'
TABLE = [
    # error, status, issue code, headers the kind adds
    (errors.FhirError("boom"), 500, "exception", {}),
    (errors.Invalid("bad"), 400, "invalid", {}),
    (errors.Unprocessable("rule"), 422, "processing", {}),
    (errors.TooLarge("big"), 413, "invalid", {}),
    (errors.Unauthorized("no token"), 401, "login", {"WWW-Authenticate": CHALLENGE}),
    (
        _refused_token(),
        401,
        "login",
        {"WWW-Authenticate": CHALLENGE + ', error="invalid_token"'},
    ),
    (errors.Forbidden("no"), 403, "forbidden", {}),
    (errors.NotFound("none"), 404, "not-found", {}),
    (errors.NotSupported("nope"), 400, "not-supported", {}),
    (errors.MethodNotAllowed("not here"), 405, "not-supported", {}),
    (
        errors.MethodNotAllowed("not here", allow=("GET", "HEAD")),
        405,
        "not-supported",
        {"Allow": "GET, HEAD"},
    ),
    (errors.Conflict("taken"), 409, "conflict", {}),
    (errors.Gone("deleted"), 410, "deleted", {}),
    (errors.PreconditionFailed("stale"), 412, "conflict", {}),
    (errors.TooManyRequests("slow down"), 429, "throttled", {"Retry-After": "1"}),
    (_throttled_for(1.2), 429, "throttled", {"Retry-After": "2"}),
    (_throttled_for(0.01), 429, "throttled", {"Retry-After": "1"}),
    (errors.Busy("busy"), 503, "transient", {"Retry-After": "1"}),
    (_busy_for(60), 503, "transient", {"Retry-After": "60"}),
    (unavailable("the database is full", 60), 503, "transient", {"Retry-After": "60"}),
]


@pytest.mark.parametrize(
    ("error", "status", "code", "headers"), TABLE, ids=lambda v: type(v).__name__
)
def test_each_error_kind_has_its_status_code_and_headers(error, status, code, headers):
    response = error_response(error)
    assert response.status == status
    assert response.headers == headers
    body = orjson.loads(response.body)
    assert body["resourceType"] == "OperationOutcome"
    assert [i["code"] for i in body["issue"]] == [code]
    assert body["issue"][0]["diagnostics"] == error.message
    sent = wire_headers(response)
    assert sent["Content-Type"] == FHIR_JSON
    assert all(sent[name] == value for name, value in SECURITY_HEADERS.items())


def test_the_outcome_holds_only_the_errors_own_issues():
    """No exception text, cause or stack trace reaches the caller."""
    try:
        try:
            raise ValueError("secret row of Patient/42")
        except ValueError as cause:
            raise errors.NotFound("Patient/1 is not known") from cause
    except errors.NotFound as error:
        body = error_response(error).body
    assert b"secret" not in body and b"Patient/42" not in body and b"Traceback" not in body
    internal = internal_error()
    assert internal.status == 500
    assert orjson.loads(internal.body) == {
        "resourceType": "OperationOutcome",
        "issue": [
            {"severity": "fatal", "code": "exception", "diagnostics": "internal server error"}
        ],
    }


def test_expression_details_and_contained_are_rendered():
    error = errors.Conflict("refused", expression="Bundle.entry[0]")
    error.issues.append(errors.Issue("error", "business-rule", "high: A + B", details="X1"))
    error.contained = [{"resourceType": "DetectedIssue", "id": "issue0"}]
    body = orjson.loads(error_response(error).body)
    assert body["issue"][0]["expression"] == ["Bundle.entry[0]"]
    assert body["issue"][1]["details"] == {"text": "X1"}
    assert body["contained"][0]["id"] == "issue0"


@pytest.mark.parametrize(
    ("status", "kind", "code"),
    [
        (404, errors.NotFound, "not-found"),
        (405, errors.MethodNotAllowed, "not-supported"),
        (413, errors.TooLarge, "invalid"),
        (400, errors.Invalid, "invalid"),
        (414, errors.Invalid, "invalid"),
    ],
)
def test_framework_statuses_become_fhir_errors(status, kind, code):
    error = status_error(status, "no FHIR interaction at '/fhir/x'", ("GET",))
    assert isinstance(error, kind)
    response = error_response(error)
    assert response.status == status
    assert orjson.loads(response.body)["issue"][0]["code"] == code


def test_a_response_without_body_has_no_content_type_and_keeps_its_own():
    from enjournal.rest.message import FhirResponse

    assert "Content-Type" not in wire_headers(FhirResponse(304, None, {"ETag": 'W/"1"'}))
    own = wire_headers(FhirResponse(200, b"{}", {"Content-Type": "application/jwk-set+json"}))
    assert own["Content-Type"] == "application/jwk-set+json"


async def test_send_response_sends_what_the_app_sends():
    messages: list[dict] = []

    async def send(message):
        messages.append(message)

    await send_response(send, error_response(_busy_for(3)))
    start, body = messages
    headers = dict(start["headers"])
    assert start["status"] == 503
    assert headers[b"retry-after"] == b"3"
    assert headers[b"content-type"] == FHIR_JSON.encode()
    assert headers[b"x-frame-options"] == b"DENY"
    assert headers[b"content-length"] == str(len(body["body"])).encode()


# ---- the middleware uses the seam ------------------------------------------------------


async def _ok(scope, receive, send):
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b""})


class _Verifier:
    async def verify(self, token: str):
        raise errors.Unauthorized("token signature invalid")


def _client(app) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.mark.parametrize(
    ("authorization", "challenge"),
    [
        (None, CHALLENGE),
        ("Basic dXNlcjpwdw==", CHALLENGE),  # another scheme: no bearer token, no error code
        ("Bearer ", CHALLENGE),
        ("Bearer abc.def.ghi", CHALLENGE + ', error="invalid_token"'),
    ],
)
async def test_auth_refusals_carry_the_rfc6750_challenge(authorization, challenge):
    headers = {"Authorization": authorization} if authorization else {}
    async with _client(AuthMiddleware(_ok, _Verifier())) as client:
        refused = await client.get("/fhir/Patient", headers=headers)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == challenge
    assert refused.headers["content-type"] == FHIR_JSON
    assert refused.headers["cache-control"] == "no-store"
    assert refused.headers["x-content-type-options"] == "nosniff"
    assert refused.json()["issue"][0]["code"] == "login"
    assert "abc.def.ghi" not in refused.text


async def test_rate_limit_refusal_has_the_same_headers_as_the_app():
    limited = RateLimitMiddleware(_ok, MemoryLimiter(), per_ip=(0.5, 1))
    async with _client(limited) as client:
        assert (await client.get("/fhir/Patient")).status_code == 200
        refused = await client.get("/fhir/Patient")
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "2"
    assert refused.headers["content-type"] == FHIR_JSON
    for name, value in SECURITY_HEADERS.items():
        assert refused.headers[name] == value
    assert refused.json()["issue"][0]["code"] == "throttled"


def test_the_router_names_the_allowed_methods_of_a_path():
    from enjournal.rest.message import FhirRequest
    from enjournal.rest.router import route

    with pytest.raises(errors.MethodNotAllowed) as refused:
        route(FhirRequest("POST", ["metadata"]))
    assert error_response(refused.value).headers == {"Allow": "GET"}
