"""Messaging's FHIR operations (and, when serving, the EDI facade's routes)."""

from __future__ import annotations

from enjournal.rest.operations import Operation
from enjournal.services.messaging.boxes import Boxes
from enjournal.services.messaging.sending import DEFINITION, Sending


def register(platform) -> None:
    sending, boxes = Sending(platform), Boxes(platform)
    for name, handler, methods, writes in (
        ("process-message", sending.process_message, ("POST",), True),
        ("messages", boxes.messages, ("GET",), False),
        ("message", boxes.message, ("GET",), False),
        ("message-status", boxes.status, ("GET",), False),
        ("message-read", boxes.read, ("POST",), True),
        ("message-receipt", boxes.receipt, ("POST",), True),
    ):
        platform.operations.add(
            Operation(
                name, None, False, handler, methods, writes=writes, definition=DEFINITION + name
            )
        )
    if platform.serving:
        from enjournal.services.messaging.edi import mount

        mount(platform)
