"""The e-resept rules as plain functions over a prescription (a FHIR MedicationRequest).

Sources (see ../shared/docs/domain.md section 3 and docs/eresept.md):
- roles and flow: domain 3.1/3.2 (Reseptformidleren, RF; M1, M5, M9.x, M10, M6, M8);
- status and the dispensing lock ("under ekspedering"), deletion: domain 3.3;
- validity and repeats: forskrift om rekvirering og utlevering av legemidler §4-4, domain 3.4;
- privacy lock ("låst resept") with a reference number: domain 3.3.
Nothing here does I/O; ``api.py`` reads and writes, these functions decide.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from enjournal.fhir.errors import Conflict, Forbidden, Unprocessable

# ---- systems and extensions --------------------------------------------------------------

RESEPT_ID = "https://enjournal.no/fhir/NamingSystem/resept-id"
EXT = "https://enjournal.no/fhir/StructureDefinition/"
STATUS_EXT = EXT + "resept-status"  # valueCoding: the RF status
REMAINING_EXT = EXT + "remaining-quantity"  # valueDecimal: what may still be dispensed
LOCK_EXT = EXT + "under-dispensing"  # who holds the dispensing lock, since when
REIMBURSEMENT_EXT = EXT + "reimbursement"  # valueCoding: refusjonshjemmel
GROUP_EXT = EXT + "reseptgruppe"  # valueCode A | B | C
PRIVACY_EXT = EXT + "privacy-lock"  # valueString: sha256 of the reference number
ORG_EXT = EXT + "requester-organization"  # valueReference: the institution (HER-id/orgnr)
ENDED_EXT = EXT + "ended"  # valueDateTime: when it was withdrawn or fully dispensed
# Volven 7408 "Status resept" holds E, U and T (a fragment); the statuses it lacks here
# (fully dispensed) are enjournal's own codes [unverified: the real Volven codes].
STATUS_7408 = "urn:oid:2.16.578.1.12.4.1.1.7408"
STATUS_LOCAL = "https://enjournal.no/fhir/CodeSystem/resept-status"
# Volven 7427 "Refusjonshjemmel" [unverified: the code list is not in the shipped data];
# any reimbursement basis under the national insurance makes the prescription "blue".
REIMBURSEMENT_7427 = "urn:oid:2.16.578.1.12.4.1.1.7427"
PRODUCT_KIND = "https://enjournal.no/fhir/CodeSystem/varetype"

EXPEDITABLE, UNDER_DISPENSING, WITHDRAWN, COMPLETED = "E", "U", "T", "A"
STATUS_DISPLAY = {
    EXPEDITABLE: (STATUS_7408, "E", "Ekspederbar", "active"),
    UNDER_DISPENSING: (STATUS_7408, "U", "Under ekspedering", "active"),
    WITHDRAWN: (STATUS_7408, "T", "Tilbakekalt", "stopped"),
    COMPLETED: (STATUS_LOCAL, "avsluttet", "Avsluttet (fullt utlevert)", "completed"),
}

# ---- configurable assumptions ------------------------------------------------------------

# Who may prescribe which reseptgruppe (Volven 9060 professions).  Doctors and dentists all
# groups; midwives group C only [unverified: their real list is narrower, by ATC].
PRESCRIBERS: dict[str, frozenset[str]] = {
    "LE": frozenset("ABC"),
    "TL": frozenset("ABC"),
    "JO": frozenset("C"),
}
# A lock by a pharmacy that never completes lapses after this [unverified: RF's real rule].
LOCK_TTL = timedelta(hours=8)
DEFAULT_VALIDITY_DAYS = 365
CONTRACEPTIVE_VALIDITY_DAYS = 3 * 365
ANTIBIOTIC_VALIDITY_DAYS = 10
HORMONAL_CONTRACEPTIVE_ATC = "G03A"  # hormonale antikonseptika til systemisk bruk
ANTIBIOTIC_ATC = "J01"  # antibakterielle midler til systemisk bruk


def months_later(day: date, months: int = 1) -> date:
    """The same day ``months`` later (clamped to the month's end)."""
    month = day.month - 1 + months
    year, month = day.year + month // 12, month % 12 + 1
    for d in (day.day, 30, 29, 28):
        try:
            return date(year, month, d)
        except ValueError:
            continue
    raise AssertionError("unreachable")


# ---- prescribing -------------------------------------------------------------------------


def check_prescriber(profession: str | None, hpr: str | None, group: str) -> None:
    """The prescriber needs an HPR number and a profession that may prescribe the group."""
    if not hpr:
        raise Forbidden("a prescription needs the prescriber's HPR number (from the token)")
    allowed = PRESCRIBERS.get(profession or "")
    if not allowed:
        raise Forbidden(f"profession {profession!r} may not prescribe medicines")
    if group not in allowed:
        raise Forbidden(f"profession {profession!r} may not prescribe reseptgruppe {group}")


def check_repeats(group: str, repeats: int, blue: bool) -> None:
    """Group A and B: one dispensing, no reiterasjon, except on blue prescription (domain
    3.4: 'exception: A/B on blå resept / folketrygd')."""
    if repeats < 0:
        raise Unprocessable(
            "numberOfRepeatsAllowed cannot be negative",
            expression="MedicationRequest.dispenseRequest.numberOfRepeatsAllowed",
        )
    if repeats and group in ("A", "B") and not blue:
        raise Unprocessable(
            f"a reseptgruppe {group} medicine may not be repeated (reit) on a white prescription",
            expression="MedicationRequest.dispenseRequest.numberOfRepeatsAllowed",
        )


def max_validity_days(atc: str | None, blue: bool) -> int:
    """§4-4: one year; hormonal contraceptives three years; antibiotics ten days except on
    blue prescription."""
    atc = atc or ""
    if atc.startswith(HORMONAL_CONTRACEPTIVE_ATC):
        return CONTRACEPTIVE_VALIDITY_DAYS
    if atc.startswith(ANTIBIOTIC_ATC) and not blue:
        return ANTIBIOTIC_VALIDITY_DAYS
    return DEFAULT_VALIDITY_DAYS


def validity(start: date, atc: str | None, blue: bool, requested_end: date | None) -> date:
    """The last day the prescription may be dispensed: the default unless a shorter one is
    stated; a longer one than the law allows is refused."""
    longest = start + timedelta(days=max_validity_days(atc, blue))
    if requested_end is None:
        return longest
    if requested_end < start:
        raise Unprocessable(
            "the validity period ends before it starts",
            expression="MedicationRequest.dispenseRequest.validityPeriod",
        )
    if requested_end > longest:
        raise Unprocessable(
            f"validity may be at most {(longest - start).days} days for this medicine "
            f"(forskrift om rekvirering og utlevering av legemidler §4-4)",
            expression="MedicationRequest.dispenseRequest.validityPeriod.end",
        )
    return requested_end


def check_named_dispenser(product_kind: str, dispenser_is_bandagist: bool) -> None:
    """RF refuses a bandagist named as dispenser of a medicine (M21, domain 3.2)."""
    if dispenser_is_bandagist and product_kind == "legemiddel":
        raise Unprocessable(
            "a bandagist may not be named as dispenser of a medicine",
            expression="MedicationRequest.dispenseRequest.performer",
        )


def reference_hash(reference_number: str) -> str:
    return "sha256:" + hashlib.sha256(reference_number.strip().encode()).hexdigest()


# ---- the prescription's state ------------------------------------------------------------


def _ext(resource: dict, url: str) -> dict | None:
    return next((e for e in resource.get("extension", []) if e.get("url") == url), None)


def _set_ext(resource: dict, url: str, value: dict | None) -> None:
    rest = [e for e in resource.get("extension", []) if e.get("url") != url]
    if value is not None:
        rest.append({"url": url, **value})
    if rest:
        resource["extension"] = rest
    else:
        resource.pop("extension", None)


@dataclass(frozen=True)
class Holder:
    """The organisation holding the dispensing lock."""

    org_nr: str
    name: str
    since: str  # FHIR dateTime


class Prescription:
    """A view over a stored MedicationRequest: its RF status, what remains, its lock."""

    def __init__(self, resource: dict):
        self.resource = resource

    @property
    def id(self) -> str:
        return self.resource.get("id", "")

    @property
    def issued_here(self) -> bool:
        """Sent to the intermediary ($prescribe gave it a reseptID): other MedicationRequests
        in the record (hospital medication orders, imported histories) are not in RF."""
        return any(i.get("system") == RESEPT_ID for i in self.resource.get("identifier", []))

    @property
    def status(self) -> str:
        coding = (_ext(self.resource, STATUS_EXT) or {}).get("valueCoding") or {}
        code = coding.get("code")
        return COMPLETED if code == "avsluttet" else code or EXPEDITABLE

    def set_status(self, status: str) -> None:
        system, code, display, fhir_status = STATUS_DISPLAY[status]
        _set_ext(
            self.resource,
            STATUS_EXT,
            {"valueCoding": {"system": system, "code": code, "display": display}},
        )
        self.resource["status"] = fhir_status

    @property
    def remaining(self) -> float:
        return float((_ext(self.resource, REMAINING_EXT) or {}).get("valueDecimal", 0))

    def set_remaining(self, value: float) -> None:
        value = int(value) if float(value).is_integer() else value
        _set_ext(self.resource, REMAINING_EXT, {"valueDecimal": value})

    @property
    def quantity(self) -> float:
        quantity = (self.resource.get("dispenseRequest") or {}).get("quantity") or {}
        return float(quantity.get("value", 0))

    @property
    def patient_id(self) -> str:
        return (self.resource.get("subject") or {}).get("reference", "").removeprefix("Patient/")

    @property
    def valid_until(self) -> date | None:
        period = (self.resource.get("dispenseRequest") or {}).get("validityPeriod") or {}
        end = period.get("end")
        return date.fromisoformat(end[:10]) if end else None

    def expired(self, today: date) -> bool:
        end = self.valid_until
        return end is not None and today > end

    @property
    def named_dispenser(self) -> str | None:
        performer = (self.resource.get("dispenseRequest") or {}).get("performer") or {}
        return (performer.get("identifier") or {}).get("value")

    @property
    def holder(self) -> Holder | None:
        lock = _ext(self.resource, LOCK_EXT)
        if lock is None:
            return None
        parts = {e["url"]: e for e in lock.get("extension", [])}
        org = (parts.get("holder") or {}).get("valueReference") or {}
        return Holder(
            (org.get("identifier") or {}).get("value", ""),
            org.get("display", ""),
            (parts.get("since") or {}).get("valueDateTime", ""),
        )

    def set_holder(self, holder: Holder | None) -> None:
        value = None
        if holder is not None:
            from enjournal.fhir.norwegian_ids import OID_ORGNR

            org: dict[str, object] = {"identifier": {"system": OID_ORGNR, "value": holder.org_nr}}
            if holder.name:
                org["display"] = holder.name
            value = {
                "extension": [
                    {"url": "holder", "valueReference": org},
                    {"url": "since", "valueDateTime": holder.since},
                ]
            }
        _set_ext(self.resource, LOCK_EXT, value)

    @property
    def privacy_hash(self) -> str | None:
        return (_ext(self.resource, PRIVACY_EXT) or {}).get("valueString")

    def set_privacy_hash(self, value: str) -> None:
        _set_ext(self.resource, PRIVACY_EXT, {"valueString": value})

    @property
    def ended(self) -> datetime | None:
        value = (_ext(self.resource, ENDED_EXT) or {}).get("valueDateTime")
        return datetime.fromisoformat(value.replace("Z", "+00:00")) if value else None

    def set_ended(self, when: datetime) -> None:
        _set_ext(self.resource, ENDED_EXT, {"valueDateTime": _instant(when)})

    @property
    def product_kind(self) -> str:
        for category in self.resource.get("category", []):
            for coding in category.get("coding", []):
                if coding.get("system") == PRODUCT_KIND:
                    return coding.get("code", "legemiddel")
        return "legemiddel"

    @property
    def withdrawal_reason(self) -> str | None:
        reason = self.resource.get("statusReason")
        return (reason or {}).get("text") if self.status == WITHDRAWN else None


def _instant(when: datetime) -> str:
    return when.isoformat(timespec="seconds").replace("+00:00", "Z")


def lock_lapsed(holder: Holder, now: datetime) -> bool:
    since = datetime.fromisoformat(holder.since.replace("Z", "+00:00"))
    return now - since > LOCK_TTL


# ---- the pharmacy's steps ----------------------------------------------------------------


def dispensable(p: Prescription, today: date, *, reference_hash_: str | None = None) -> bool:
    """In a pharmacy's list: expeditable or under dispensing and not expired; a withdrawn
    one only while still locked (so the holder sees the withdrawal); a privacy-locked one
    only with its reference number."""
    if not p.issued_here:
        return False
    if p.privacy_hash and p.privacy_hash != reference_hash_:
        return False
    if p.status == WITHDRAWN:
        return p.holder is not None
    return p.status in (EXPEDITABLE, UNDER_DISPENSING) and not p.expired(today)


def take(p: Prescription, org_nr: str, name: str, now: datetime, *, bandagist: bool) -> None:
    """Take the prescription under dispensing (the lock).  Exactly one holder at a time: the
    caller runs this on a row locked for update."""
    _check_dispenser(p, org_nr, now.date(), bandagist=bandagist)
    holder = p.holder
    if holder is not None and holder.org_nr != org_nr and not lock_lapsed(holder, now):
        raise Conflict(
            f"the prescription is under dispensing at {holder.name or holder.org_nr} "
            f"since {holder.since}"
        )
    p.set_holder(Holder(org_nr, name, _instant(now)))
    p.set_status(UNDER_DISPENSING)


def release(p: Prescription, org_nr: str) -> None:
    holder = p.holder
    if holder is None or holder.org_nr != org_nr:
        raise Conflict("the prescription is not under dispensing by your organisation")
    p.set_holder(None)
    if p.status == UNDER_DISPENSING:
        p.set_status(EXPEDITABLE)


def dispense(p: Prescription, org_nr: str, quantity: float, now: datetime) -> bool:
    """Record a dispensing of ``quantity``: partial (less than remains) or the rest.  Returns
    whether it closed the prescription.  Never more than remains, so under any interleaving
    the sum dispensed stays within what was prescribed."""
    holder = p.holder
    if p.status == WITHDRAWN:
        raise Conflict(f"the prescription was withdrawn: {p.withdrawal_reason or 'no reason'}")
    if holder is None or holder.org_nr != org_nr:
        raise Conflict("take the prescription under dispensing ($take) before dispensing it")
    if p.status != UNDER_DISPENSING:
        raise Conflict(f"the prescription is not dispensable (status {p.status})")
    if p.expired(now.date()):
        raise Conflict(f"the prescription expired on {p.valid_until}")
    if quantity <= 0:
        raise Unprocessable("the quantity dispensed must be positive")
    if quantity > p.remaining + 1e-9:
        raise Conflict(f"only {p.remaining:g} remains to be dispensed, not {quantity:g}")
    p.set_remaining(round(p.remaining - quantity, 6))
    p.set_holder(None)
    if p.remaining <= 1e-9:
        p.set_status(COMPLETED)
        p.set_ended(now)
        return True
    p.set_status(EXPEDITABLE)
    return False


def withdraw(p: Prescription, reason: str, now: datetime) -> None:
    """The prescriber withdraws (tilbakekaller, M5).  The lock, if any, stays so the holding
    pharmacy sees the withdrawal in its list and its dispensing is refused."""
    if not reason.strip():
        raise Unprocessable("a withdrawal needs a reason")
    if p.status in (WITHDRAWN, COMPLETED):
        raise Conflict(f"the prescription is already {STATUS_DISPLAY[p.status][2].lower()}")
    p.set_status(WITHDRAWN)
    p.resource["statusReason"] = {"text": reason.strip()[:500]}
    p.set_ended(now)


def _check_dispenser(p: Prescription, org_nr: str, today: date, *, bandagist: bool) -> None:
    if p.status == WITHDRAWN:
        raise Conflict(f"the prescription was withdrawn: {p.withdrawal_reason or 'no reason'}")
    if p.status == COMPLETED:
        raise Conflict("the prescription is fully dispensed")
    if p.expired(today):
        raise Conflict(f"the prescription expired on {p.valid_until}")
    if bandagist and p.product_kind == "legemiddel":
        raise Forbidden("a bandagist may not dispense a medicine")
    named = p.named_dispenser
    first = p.remaining >= p.quantity * (1 + _repeats(p)) - 1e-9
    if named and first and named != org_nr:
        # An ekspederingsanmodning ties the first dispensing to the named dispenser.
        raise Forbidden("the prescription's first dispensing is reserved for a named dispenser")


def _repeats(p: Prescription) -> int:
    return int((p.resource.get("dispenseRequest") or {}).get("numberOfRepeatsAllowed") or 0)


# ---- deletion (domain 3.3, reseptformidlerforskriften kap. 6) ----------------------------


def due_for_deletion(p: Prescription, now: datetime) -> bool:
    """Expired: at once.  Fully dispensed (and withdrawn [unverified]): one month after."""
    if p.status in (COMPLETED, WITHDRAWN):
        ended = p.ended
        return ended is not None and now.date() >= months_later(ended.date())
    return p.expired(now.date())
