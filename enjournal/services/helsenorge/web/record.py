"""Kjernejournal on the portal: the summary care record (``Patient/$summary``), the
citizen's privacy settings (``$kj-privacy``) and own registrations
(``$kj-own-registration``)."""

from __future__ import annotations

from enjournal.services.helsenorge.web import describe
from enjournal.services.helsenorge.web.portal import View
from enjournal.web import Site, entries
from enjournal.web.i18n import N_

# The summary's sections (LOINC, or kjernejournal's own code) and their titles here.
SECTIONS = {
    "104605-1": N_("Critical information"),
    "48765-2": N_("Allergies and adverse reactions"),
    "11450-4": N_("Critical conditions, anaesthesia complications and infections"),
    "10160-0": N_("Medicines (dispensed and valid prescriptions, last three years)"),
    "11369-6": N_("Vaccines"),
    "47519-4": N_("Ongoing treatments"),
    "46264-8": N_("Implants"),
    "46240-8": N_("Visit history"),
    "egne-registreringer": N_("Your own registrations"),
}
# The part of the record a section belongs to, as the citizen restricts it.
SECTION_PART = {
    "10160-0": "legemidler",
    "11369-6": "vaksiner",
    "46240-8": "besokshistorikk",
    "egne-registreringer": "egne-registreringer",
}
PARTS = ("kritisk-info", "legemidler", "vaksiner", "besokshistorikk", "egne-registreringer")


def routes(site: Site) -> list:
    return [
        ("/kjernejournal", site.page(summary), ["GET"]),
        ("/kjernejournal/personvern", site.page(privacy), ["GET", "POST"]),
        ("/kjernejournal/egne", site.page(own_registration), ["POST"]),
    ]


async def summary(view: View) -> str:
    document = await view.fhir.get(f"Patient/{view.patient}/$summary")
    view.data["sections"] = sections(document)
    view.data["privacy"] = await _privacy_if_own(view)
    codes = await view.fhir.get("$kj-own-condition-codes")
    view.data["own_codes"] = [(c.get("code"), c.get("display")) for c in codes.get("concept", [])]
    return "kjernejournal.html"


def sections(document: dict) -> list[dict]:
    """The document's sections, each with its entries described (IPS: the Composition first,
    entries by fullUrl)."""
    resources = {e.get("fullUrl"): e.get("resource") or {} for e in document.get("entry") or ()}
    composition = next(iter(entries(document, "Composition")), {})
    out = []
    for section in composition.get("section") or ():
        code = ((section.get("code") or {}).get("coding") or [{}])[0].get("code", "")
        items = [resources.get(e.get("reference"), {}) for e in section.get("entry") or ()]
        rows = [_row(r, resources) for r in items if r]
        part = SECTION_PART.get(code, "kritisk-info")
        out.append({"code": code, "title": SECTIONS.get(code), "rows": rows, "part": part})
    return [s for s in out if s["title"]]


def _row(resource: dict, resources: dict) -> dict:
    tags = {t.get("code") for t in (resource.get("meta") or {}).get("tag") or ()}
    return {
        "text": describe.text(resource),
        "when": describe.when(resource),
        "where": _resolved(describe.where(resource), resources),
        "ref": f"{resource.get('resourceType')}/{resource.get('id')}",
        "own": "egen-registrering" in tags,
    }


def _resolved(where: str, resources: dict) -> str:
    """A reference inside the document (``urn:uuid:``) as the name of what it points to."""
    if where in resources:
        return describe.name(resources[where]) or ""
    looks_like_reference = where.startswith("urn:") or (where.count("/") == 1 and " " not in where)
    return "" if looks_like_reference else where  # a display, never a bare reference


async def _privacy_if_own(view: View) -> dict:
    """The privacy settings, which are the person's own: a representative sees the record
    without them."""
    if view.acting_for:
        return {"restrict": [], "block": [], "reserved": False}
    return await _privacy(view)


async def _privacy(view: View) -> dict:
    answer = await view.fhir.get(f"Patient/{view.patient}/$kj-privacy")
    found: dict = {"restrict": [], "block": [], "reserved": False}
    for part in answer.get("parameter") or ():
        name = part.get("name")
        value = next((v for k, v in part.items() if k.startswith("value")), None)
        if name in ("restrict", "block"):
            found[name].append(value)
        else:
            found[name] = value
    if found.get("deletionAt"):
        found["deletion_day"] = found["deletionAt"][:10]
    return found


async def privacy(view: View):
    if view.acting_for:
        return "privacy_own_only.html"
    if view.request.method == "GET":
        view.data["privacy"] = await _privacy(view)
        view.data["parts"] = PARTS
        return "privacy.html"
    current = await _privacy(view)
    change = view.field("change")
    if change == "lift-request":
        return await _ask_gp_to_lift(view, view.field("hpr"), current["block"])
    params: dict = {}
    if change == "restrict":
        params["restrict"] = [p for p in view.values("part") if p in (*PARTS, "hele")] or [""]
    elif change == "block":
        hpr = view.field("hpr")
        params["block"] = [*current["block"], hpr]
    elif change == "reserve":
        params["reserve"] = view.field("reserve") == "true"
    await view.fhir.operation(f"Patient/{view.patient}/$kj-privacy", **_clean(params))
    return view.back("/kjernejournal/personvern", view.t("Your choice is saved."))


async def _ask_gp_to_lift(view: View, hpr: str, blocked: list[str]):
    """The citizen cannot lift a block; they ask their GP, who is not blocked, to do it
    (``$kj-lift-block``) with a message the GP's office sees among the others."""
    if hpr not in blocked:
        return view.back("/kjernejournal/personvern", view.t("You have not blocked that number."))
    text = view.t(
        "Please lift my block of the health worker with HPR number %(hpr)s in the summary care "
        "record.",
        hpr=hpr,
    )
    await view.fhir.operation(
        f"Patient/{view.patient}/$message-gp", text=text, topic="oppheve-blokkering"
    )
    return view.back("/kjernejournal/personvern", view.t("Your GP's office is asked to lift it."))


def _clean(params: dict) -> dict:
    if params.get("restrict") == [""]:
        params["restrict"] = []
    return params


async def own_registration(view: View):
    patient = f"Patient/{view.patient}/$kj-own-registration"
    remove = view.field("remove")
    if remove:
        await view.fhir.operation(patient, remove=remove)
        return view.back("/kjernejournal", view.t("The registration is removed."))
    await view.fhir.operation(patient, resource=_own_resource(view))
    return view.back("/kjernejournal", view.t("The registration is saved."))


def _own_resource(view: View) -> dict:
    kind = view.field("kind")
    if kind == "contact":
        return {
            "resourceType": "RelatedPerson",
            "name": [{"text": view.field("name")}],
            "telecom": [{"system": "phone", "value": view.field("phone")}],
            "relationship": [{"text": view.field("relationship")}],
        }
    if kind == "need":
        return {"resourceType": "Flag", "code": {"text": view.field("need")}}
    system = "http://enjournal.no/fhir/CodeSystem/kj-egne-sykdommer"
    return {
        "resourceType": "Condition",
        "code": {"coding": [{"system": system, "code": view.field("condition")}]},
    }
