"""Who is calling an e-resept operation, in the chain's roles (domain 3.1): prescriber
(rekvirent), dispenser (apotek or bandasjist), GP, citizen.

With security on, everything comes from the verified token (``request.guard.principal``)
and the caller's Organization in the store; nothing from the request body.  Without security
(core tests, benchmarks) the caller is trusted and names itself with the operation's
``organization`` (organisation number), ``practitioner`` (HPR) and ``profession`` parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

from enjournal.security.policy import PHARMACY_PROFESSIONS
from enjournal.security.scopes import allows
from enjournal.services.eresept import queries
from enjournal.services.inputs import refused

# The type of a dispensing organisation (Organization.type).  No national code system was
# found for "apotek" versus "bandasjist" [unverified]: enjournal's own codes.
DISPENSER_TYPE = "https://enjournal.no/fhir/CodeSystem/utleverer-type"
PHARMACY, BANDAGIST = "apotek", "bandasjist"


@dataclass(frozen=True)
class Actor:
    kind: str  # personnel | citizen | system | trusted (security off)
    hpr: str | None = None
    profession: str | None = None
    name: str | None = None
    org_nr: str | None = None
    her_id: str | None = None
    org_name: str = ""
    org_type: str | None = None  # apotek | bandasjist | None
    pid: str | None = None

    @property
    def bandagist(self) -> bool:
        return self.org_type == BANDAGIST

    @property
    def pharmacist(self) -> bool:
        return self.profession in PHARMACY_PROFESSIONS and not self.bandagist

    @property
    def dispenser(self) -> bool:
        return self.pharmacist or self.bandagist


def org_type(org: dict | None) -> str | None:
    for concept in (org or {}).get("type", []):
        for coding in concept.get("coding", []):
            if coding.get("system") == DISPENSER_TYPE:
                return coding.get("code")
        if (concept.get("text") or "").strip().lower() == "apotek":
            return PHARMACY  # the demo population types pharmacies by text
    return None


async def caller(request, tx, params: dict, scope: tuple[str, str]) -> Actor:
    """The caller; Forbidden unless its token's SMART scopes allow ``scope`` (a resource
    type and one of c r u d s), as for any FHIR interaction."""
    guard = request.guard
    if guard is not None and not allows(guard.principal.scopes, *scope):
        message = f"the token's scopes do not allow {scope[1]} on {scope[0]}"
        raise refused(request, scope[1], request.path[-1], message)
    if guard is None:
        org_nr = _text(params.get("organization"))
        org = await queries.organization(tx, org_nr)
        return Actor(
            "trusted",
            hpr=_text(params.get("practitioner")),
            profession=_text(params.get("profession")) or ("FA" if org_nr else "LE"),
            org_nr=org_nr,
            org_name=(org or {}).get("name", ""),
            org_type=org_type(org),
        )
    p = guard.principal
    org = await queries.organization(tx, p.org_nr)
    return Actor(
        p.kind,
        hpr=p.hpr,
        profession=p.profession,
        name=p.name,
        org_nr=p.org_nr,
        her_id=p.her_id,
        org_name=(org or {}).get("name", ""),
        org_type=org_type(org),
        pid=p.pid,
    )


def _text(value) -> str | None:
    if isinstance(value, list):
        value = value[0] if value else None
    if isinstance(value, dict):
        value = value.get("value")
    return str(value).strip() if value not in (None, "") else None


def audit(
    request,
    action: str,
    operation: str,
    patient_id: str | None,
    refs: list[str],
    *,
    outcome: str = "0",
    description: str | None = None,
) -> None:
    """One AuditEvent for an e-resept step (the router commits it with the write, or
    through the audit writer for reads), so the citizen's $access-log shows it."""
    context = request.context
    if context is None:
        return
    purpose = {"citizen": "PATRQT", "system": "HOPERAT"}.get(context.principal.kind, "TREAT")
    context.record(
        action=action,
        subtype=operation,
        outcome=outcome,
        patient_id=patient_id,
        entities=refs,
        purpose=purpose,
        outcome_desc=description,
    )
