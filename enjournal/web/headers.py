"""The security headers every answer of a web site carries, on pages and static files."""

from __future__ import annotations

from collections.abc import Mapping

# No script, no framing, nothing from elsewhere: the pages are plain HTML and forms.
SECURITY_HEADERS: Mapping[str, str] = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
        "frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
}


def with_headers(app, headers: Mapping[str, str] = SECURITY_HEADERS):
    """``app`` (ASGI, e.g. StaticFiles) answering with ``headers`` too; static files keep
    their own caching (no ``Cache-Control`` added)."""
    extra = [(k.lower().encode(), v.encode()) for k, v in headers.items() if k != "Cache-Control"]

    async def wrapped(scope, receive, send):
        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await app(scope, receive, send_with_headers)

    return wrapped
