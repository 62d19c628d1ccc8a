"""The one HTTP route of bulk export: ``GET /fhir/$export-file`` streams an export's NDJSON
file from disk (a file may be hundreds of megabytes; a ``FhirResponse`` holds its body in
memory).  It sits before the FHIR catch-all route, under ``/fhir``, so the authentication
middleware has verified the token; the ``$export-file`` operation, reached through
``Platform.handle`` like any FHIR request, decides and audits, and the route only sends.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import Route

from enjournal.rest.errors import wire_headers
from enjournal.rest.message import FhirRequest


def routes(platform) -> list:
    from enjournal.services.registers.bulk import FILE, FileReply

    async def send_file(request: Request) -> Response:
        fhir_request = FhirRequest(
            "GET",
            [f"${FILE}"],
            list(request.query_params.multi_items()),
            {k.lower(): v for k, v in request.headers.items()},
            b"",
            platform.settings.fhir_base,
        )
        fhir_request.stream_file = True  # type: ignore[attr-defined]  # the route sends it
        principal = request.scope.get("state", {}).get("principal")
        answer = await platform.handle(fhir_request, principal)
        if isinstance(answer, FileReply) and answer.path is not None and answer.status == 200:
            return FileResponse(answer.path, headers=wire_headers(answer))
        return Response(answer.body, answer.status, wire_headers(answer))

    return [Route(f"/fhir/${FILE}", send_file, methods=["GET"])]
