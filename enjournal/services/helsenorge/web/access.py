"""The access log on the portal ("hvem har sett min journal", ``Patient/$access-log``): who,
which organisation, when, on what basis, emergency accesses marked; filtered by period and
organisation.  Only coded bases are shown: never a health worker's free-text reason."""

from __future__ import annotations

import re
from datetime import date

from enjournal.security.audit import requestor_and_organisation
from enjournal.security.audit.codes import BLOCK_LIFTED
from enjournal.services.helsenorge.web.portal import View
from enjournal.web import Site, entries

HPR = "urn:oid:2.16.578.1.12.4.1.4.4"
ACCESS_BASIS = "https://enjournal.no/fhir/CodeSystem/access-basis"
EMERGENCY = "ETREAT"
# The one fixed text a citizen's copy of an event keeps; the portal says it in its language.
LIFTED = re.compile(re.escape(BLOCK_LIFTED).replace(r"\{hpr\}", r"(\d{1,9})"))


def routes(site: Site) -> list:
    return [("/innsynslogg", site.page(access_log), ["GET"])]


async def access_log(view: View) -> str:
    query = view.request.query_params
    start, end = _day(query.get("from")), _day(query.get("to"))
    org = query.get("organisation", "").strip()
    params = [("_count", "100")]
    params += [("date", f"ge{start}")] if start else []
    params += [("date", f"le{end}")] if end else []
    params += [("organization", org)] if org.isdigit() and len(org) == 9 else []
    bundle = await view.fhir.get(f"Patient/{view.patient}/$access-log", params)
    view.data["rows"] = [row(e) for e in entries(bundle, "AuditEvent")]
    view.data["filters"] = {"from": start or "", "to": end or "", "organisation": org}
    return "access_log.html"


def row(event: dict) -> dict:
    person, org = requestor_and_organisation(event)
    codes = [c for p in event.get("purposeOfEvent") or () for c in p.get("coding") or ()]
    basis: dict = next((c for c in codes if c.get("system") == ACCESS_BASIS), {})
    who = person.get("who") or {}
    identifier = who.get("identifier") or {}
    role = ((person.get("role") or [{}])[0].get("coding") or [{}])[0]
    return {
        "when": event.get("recorded"),
        "who": person.get("name") or who.get("display") or "",
        "hpr": identifier.get("value") if identifier.get("system") == HPR else None,
        "role": role.get("display") or role.get("code") or "",
        "organisation": org.get("name") or (org.get("who") or {}).get("display") or "",
        "organisation_number": ((org.get("who") or {}).get("identifier") or {}).get("value"),
        "basis": basis.get("display") or basis.get("code") or "",
        "emergency": any(c.get("code") == EMERGENCY for c in codes),
        "changed": event.get("action") not in ("R", "E"),
        "refused": event.get("outcome") not in (None, "0"),
        "lifted": _lifted_hpr(event.get("outcomeDesc")),
    }


def _lifted_hpr(text: str | None) -> str | None:
    """The HPR number whose block this event lifted, if it is a ``$kj-lift-block``."""
    found = LIFTED.fullmatch(text or "")
    return found.group(1) if found else None


def _day(value: str | None) -> str | None:
    try:
        return date.fromisoformat(value).isoformat() if value else None
    except ValueError:
        return None
