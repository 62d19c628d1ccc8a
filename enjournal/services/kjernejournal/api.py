"""Kjernejournal's FHIR operations (docs/kjernejournal.md has examples).

- ``GET Patient/[id]/$summary``: the signed IPS document (``summary.py``, ``signing.py``).
- ``POST /$kj-status``: NHN's status call: does the patient have critical information, when
  did it change, restricted, reserved, is the caller blocked; no content, not audit-logged.
- ``POST Patient/[id]/$kj-critical-info``: register, update or remove (entered-in-error) one
  entry of critical information, by a physician; the recorder comes from the token.
- ``GET|POST Patient/[id]/$kj-privacy``: the citizen's restriction, blocking and reservation.
- ``POST Patient/[id]/$kj-own-registration``: the patient's own registrations (contacts,
  communication needs, diseases from a fixed list), by the patient or a parent of a child
  under 12 (``own.py``); ``GET /$kj-own-condition-codes``: that list as a CodeSystem.
- ``GET /$document-signing-key``: the public key (JWKS) that verifies ``$summary``.

Every read of the kjernejournal states its basis in ``nhn-access-basis`` (domain.md 2.3) and
is audited with it; emergency and restricted-part accesses are flagged for follow-up.

One module per group of operations under ``operations/`` (``base`` holds the access check
and audit every one uses); ``Service`` joins them and ``register_operations`` adds them.
"""

from __future__ import annotations

from enjournal.rest.operations import Operation
from enjournal.services.kjernejournal.operations.critical_info import CriticalInfoOperation
from enjournal.services.kjernejournal.operations.document import DocumentOperations
from enjournal.services.kjernejournal.operations.own_registration import (
    OwnRegistrationOperations,
)
from enjournal.services.kjernejournal.operations.privacy import PrivacyOperations
from enjournal.services.kjernejournal.operations.status import StatusOperation


class Service(
    DocumentOperations,
    StatusOperation,
    CriticalInfoOperation,
    PrivacyOperations,
    OwnRegistrationOperations,
):
    """The operations, bound to the server's settings, key and clock."""


def register_operations(context) -> Service:
    """Add the operations to the platform's table (``context`` is the Platform)."""
    service = Service(context)
    register = context.operations.add
    base = "http://enjournal.no/fhir/OperationDefinition/"
    register(
        Operation(
            "summary",
            "Patient",
            True,
            service.summary,
            ("GET", "POST"),
            definition="http://hl7.org/fhir/uv/ips/OperationDefinition/summary",
        )
    )
    register(
        Operation(
            "kj-status", None, False, service.status, ("POST",), definition=base + "kj-status"
        )
    )
    register(
        Operation(
            "kj-critical-info",
            "Patient",
            True,
            service.critical_info,
            ("POST",),
            writes=True,
            definition=base + "kj-critical-info",
        )
    )
    register(
        Operation(
            "kj-privacy",
            "Patient",
            True,
            service.privacy,
            ("GET", "POST"),
            writes=True,
            definition=base + "kj-privacy",
        )
    )
    register(
        Operation(
            "kj-lift-block",
            "Patient",
            True,
            service.lift_block,
            ("POST",),
            writes=True,
            definition=base + "kj-lift-block",
        )
    )
    register(
        Operation(
            "kj-own-registration",
            "Patient",
            True,
            service.own_registration,
            ("POST",),
            writes=True,
            definition=base + "kj-own-registration",
        )
    )
    register(
        Operation(
            "kj-own-condition-codes",
            None,
            False,
            service.own_condition_codes,
            ("GET",),
            definition=base + "kj-own-condition-codes",
        )
    )
    register(
        Operation(
            "document-signing-key",
            None,
            False,
            service.signing_key,
            ("GET",),
            definition=base + "document-signing-key",
        )
    )
    return service
