"""Prescriptions on the portal (e-resept): valid and earlier prescriptions, dispensings,
the privacy lock (låst resept) with its reference number, reserving against reports to the
GP, and asking the GP for a renewal."""

from __future__ import annotations

from enjournal.services.helsenorge.web import describe
from enjournal.services.helsenorge.web.portal import View
from enjournal.web import FhirError, Site, entries

VALID = ("active",)  # ekspederbar (and under dispensing, marked by an extension)
# The prescriptions in the intermediary (Reseptformidleren) carry its reseptID; other
# MedicationRequests in the record (hospital orders, imported histories) are not
# prescriptions a pharmacy can dispense, and are shown in the kjernejournal instead.
RESEPT_ID = "https://enjournal.no/fhir/NamingSystem/resept-id"


def routes(site: Site) -> list:
    return [
        ("/resepter", site.page(prescriptions), ["GET"]),
        ("/resepter/las", site.page(lock), ["POST"]),
        ("/resepter/reservasjon", site.page(reserve_reports), ["POST"]),
        ("/resepter/fornying", site.page(renewal), ["POST"]),
    ]


async def prescriptions(view: View) -> str:
    params = [
        ("subject", f"Patient/{view.patient}"),
        ("identifier", f"{RESEPT_ID}|"),
        ("_count", "200"),
        ("_sort", "-authoredon"),
    ]
    found = entries(await view.fhir.get("MedicationRequest", params), "MedicationRequest")
    dispensed = entries(
        await view.fhir.get(
            "MedicationDispense", [("subject", f"Patient/{view.patient}"), ("_count", "200")]
        ),
        "MedicationDispense",
    )
    refs = [_ref(r.get("requester")) for r in found] + [_performer(d) for d in dispensed]
    known = await describe.names(view.fhir, refs)
    rows = [_prescription(r, known) for r in found]
    view.data["valid"] = [r for r in rows if r["status"] in VALID]
    view.data["earlier"] = [r for r in rows if r["status"] not in VALID]
    view.data["dispensings"] = [_dispensing(d, known) for d in dispensed]
    view.data["reserved"] = await _reserved(view)
    return "prescriptions.html"


def _ref(value: dict | None) -> str:
    return (value or {}).get("reference", "")


def _performer(dispense: dict) -> str:
    performers = dispense.get("performer") or [{}]
    return _ref(performers[0].get("actor"))


def _prescription(resource: dict, known: dict[str, str]) -> dict:
    urls = [e.get("url", "") for e in resource.get("extension") or ()]
    validity = ((resource.get("dispenseRequest") or {}).get("validityPeriod") or {}).get("end")
    return {
        "id": resource.get("id"),
        "medicine": describe.medication(resource),
        "dosage": "; ".join(d.get("text", "") for d in resource.get("dosageInstruction") or ()),
        "written": resource.get("authoredOn"),
        "valid_to": validity,
        "prescriber": describe.named(resource.get("requester"), known),
        "status": resource.get("status"),
        "locked": any(u.endswith("privacy-lock") for u in urls),
        "under_dispensing": any(u.endswith("under-dispensing") for u in urls),
    }


def _dispensing(resource: dict, known: dict[str, str]) -> dict:
    quantity = resource.get("quantity") or {}
    return {
        "medicine": describe.medication(resource),
        "when": resource.get("whenHandedOver") or resource.get("whenPrepared"),
        "pharmacy": describe.named((resource.get("performer") or [{}])[0].get("actor"), known),
        "quantity": quantity.get("value"),
        "unit": quantity.get("unit") or "",
    }


async def _reserved(view: View) -> bool:
    try:
        consent = await view.fhir.get(f"Consent/m8-reservation-{view.patient}")
    except FhirError:
        return False
    return consent.get("status") == "active"


async def lock(view: View):
    prescription = view.field("prescription")
    answer = await view.fhir.operation(f"MedicationRequest/{prescription}/$privacy-lock")
    number = next(
        (
            p.get("valueString")
            for p in answer.get("parameter") or ()
            if p.get("name") == "reference-number"
        ),
        "",
    )
    message = view.t(
        "The prescription is locked. Its reference number is %(number)s: write it down, "
        "it is shown only now. The pharmacy needs it to find the prescription.",
        number=number,
    )
    return view.back("/resepter", message)


async def reserve_reports(view: View):
    reserve = view.field("reserve") == "true"
    await view.fhir.operation(f"Patient/{view.patient}/$reserve-gp-reports", reserve=reserve)
    return view.back("/resepter", view.t("Your choice is saved."))


async def renewal(view: View):
    prescription = view.field("prescription")
    await view.fhir.operation(
        f"Patient/{view.patient}/$message-gp",
        topic="fornyelse",
        text=view.field("text") or view.t("Please renew this prescription."),
        about={"reference": f"MedicationRequest/{prescription}"},
    )
    return view.back("/resepter", view.t("Your request for a renewal is sent to your GP."))
