"""Device readings for remote follow-up at home: the catalogue of reading types, a device's
reading turned into a FHIR R4 Observation, and the check of Observations that arrive ready-made.

Pure functions, no I/O. A reading that cannot be stored raises ``Refused`` with a short
machine ``code`` and a message that names the field and what was expected; messages repeat
no text the sender gave, and never the patient's number.

Device payload (our own JSON, one reading per MQTT message)::

    {"id": "r-1842",                        # the device's own reading id, same on every retry
     "type": "spo2",                        # a CATALOGUE key (see below)
     "value": 95,                           # blood-pressure: {"systolic": 130, "diastolic": 85}
     "unit": "%",                           # UCUM code, one the type accepts
     "measured": "2026-12-03T09:55:00+01:00",  # device time, ISO 8601 date-time with offset
     "sent": "2026-12-03T09:55:03+01:00"}      # gateway time, optional (a device that talks
                                               # to us directly has no gateway)

Other keys are ignored (a newer device may send more). The reading id is 1-64 characters
of ``A-Z a-z 0-9 . _ : -``, so it needs no escaping in a search (``identifier=system|value``).

The Observation made (``observation``):

* ``identifier``: system ``urn:enjournal:vkp:reading:<device id>``, value the reading id.
  Its only purpose is de-duplication: the store creates it conditionally
  (``ifNoneExist: identifier=system|value``), so a retried reading is stored once. This is the
  PHD IG's idea (HL7/PHD ``input/pagecontent/ObservationIdentifier.md``: "uniquely describes
  the measurement such that if the same measurement were resent at a later time, the
  identifier would be the same"; consumers ignore it). PHD devices have no reading id, so the
  PHD IG builds it from ``device-patient-type-value-units-PHD timestamp-supplemental types``
  (``NumericObservationProfile.md``), using the *device's* time, not one a gateway adjusted.
  Our devices send an id that is stable across retries; one system per device keeps the ids
  of two devices apart.
* ``status`` final, ``category`` vital-signs (also for glucose, as VKP's own glucose example
  does), ``code`` with the LOINC, SNOMED CT and MDC codings of the type.
* ``subject``: a logical identifier only, no literal reference (VKP: "VKP always references a
  Patient Resource using a norwegian national id number ... in a logical identifier",
  HL7Norway/VkpObservation ``input/fsh/profiles/VkpObservation.fsh``; allowed systems FNR
  ``urn:oid:2.16.578.1.12.4.1.4.1``, DNR ``...4.2``, FHN ``...4.3``, ``codesystems/
  VkpSubjectIdentifiersCodeSystem.fsh``). The system is told from the first digit
  (domain.md 1.2: D-nummer first digit + 4, felles hjelpenummer first digit 8 or 9); the
  control digits are not checked here (the patient is resolved by the caller).
  ``subject.display`` (VKP "should") is left out: a device does not know the name.
* ``performer`` is left out: nobody vouches for an automatic home reading (the PHD IG's
  examples have none either); VKP's performer slices are 0..*.
* ``effectiveDateTime`` the device's time, ``issued`` the time we received it (FHIR R4:
  "the date and time this version of the observation was made available to providers"),
  and the gateway's time in the extension ``SENT_EXTENSION`` (valueDateTime). FHIR R4 has no
  element for it; its ``observation-gatewayDevice`` extension names the gateway, not a time.
* ``valueQuantity`` in UCUM (``http://unitsofmeasure.org``); blood pressure as the panel with
  systolic and diastolic ``component``s and no value of its own (FHIR R4 ``bp`` profile).
* ``device``: ``{"reference": "Device/<device id>"}``.

Codes (verified; file paths in the repositories named):

* LOINC and SNOMED CT: HL7Norway/VkpObservation (IG ``hl7.fhir.no.vkp.observation`` 0.5.2,
  draft) ``input/pages/index.md`` and the profiles. Glucose's SNOMED CT code is 434912009
  "Blood glucose concentration" in the current IG (index and ``instances/
  vkp-glucose-create.fsh``); domain.md section 6 gives 405176005, which the current IG does
  not use. The IG's "29563-7" for body weight is a typo for 29463-7 (its own example uses
  29463-7, as does FHIR's bodyweight profile).
* MDC (system ``urn:iso:std:iso:11073:10101``, the 32-bit code ``partition * 2**16 + term``,
  HL7/PHD ``ObtainObservationCode.md``): 150456 SpO2, 149546 non-invasive pulse rate
  (149530 pulse oximeter pulse rate), 188736 body mass, 150020/150021/150022 non-invasive
  blood pressure/systolic/diastolic, 150364 body temperature are in the PHD IG's table of
  common codes (``ProfileConsumers.md``) and examples. Two codes are not in the PHD IG and
  rest on other public sources: 160184 MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD (gematik's HDDT IG
  example; term 29112 in partition SCADA 2 in open 11073-20601 stacks: 2 * 65536 + 29112)
  and 151562 MDC_RESP_RATE (a German ISiK-based vital-sign example and a Philips MDC table;
  term 20490 in SCADA: 2 * 65536 + 20490). The MDC displays are reference identifiers;
  MDC_PULS_RATE_NON_INV and MDC_MASS_BODY_ACTUAL are names from public code, not the PHD IG.
* Other codes recognised when reading an Observation: LOINC 59408-5 (SpO2 by pulse
  oximetry, FHIR R4's oxygen saturation example), LOINC 55284-4 (the PHD IG's blood-pressure
  example), NLK NPU02187 "B-Glucose" (VKP's glucose example), MDC 149530.

Units: UCUM codes as FHIR R4's vital-sign profiles bind them (``%``, ``/min``, ``mm[Hg]``,
``kg``/``g``/``[lb_av]``, ``Cel``); weight in g or [lb_av] is converted to kg. Glucose only in
mmol/L (``mmol/l`` too: UCUM has both ``l`` and ``L`` for the litre, and VKP's example uses
``mmol/l``); mg/dL is refused rather than converted. Rates also accept ``1/min`` and the
annotated ``{beat}/min`` (PHD IG example), ``{beats}/min``, ``{breaths}/min``.

Ranges (inclusive) only refuse *impossible* values, never flag abnormal ones. They are a
clinical judgement, **assumed** (not from a source): SpO2 50-100 %, pulse 20-300 /min,
systolic 40-300 and diastolic 20-200 mm[Hg] with systolic above diastolic, weight 0.5-500
kg, temperature 25-45 Cel, glucose 0.5-60 mmol/L, respiration 2-80 /min. A device time more
than ``CLOCK_SKEW`` (assumed 5 minutes) after receipt is refused as a clock error.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from enjournal.fhir.norwegian_ids import OID_DNR, OID_FH, OID_FNR

LOINC = "http://loinc.org"
SCT = "http://snomed.info/sct"
MDC = "urn:iso:std:iso:11073:10101"
NLK = "urn:oid:2.16.578.1.12.4.1.1.7280"  # Norsk laboratoriekodeverk (NPU codes)
UCUM = "http://unitsofmeasure.org"
CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
READING_SYSTEM = "urn:enjournal:vkp:reading:"  # + device id
SENT_EXTENSION = "https://enjournal.no/fhir/StructureDefinition/gateway-sent-time"
CLOCK_SKEW = timedelta(minutes=5)  # assumed: how far ahead a device clock may run

_READING_ID = re.compile(r"[A-Za-z0-9._:\-]{1,64}")
_FHIR_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")


class Refused(ValueError):
    """A reading we do not store: ``code`` for machines, the message for people."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


# --- the catalogue -------------------------------------------------------------------------


@dataclass(frozen=True)
class Code:
    system: str
    code: str
    display: str

    def coding(self) -> dict[str, str]:
        return {"system": self.system, "code": self.code, "display": self.display}


@dataclass(frozen=True)
class Concept:
    """What is measured, in LOINC, SNOMED CT and MDC; ``also`` are codes we only recognise."""

    loinc: Code
    snomed: Code
    mdc: Code
    also: tuple[Code, ...] = ()

    def codings(self) -> list[dict[str, str]]:
        return [self.loinc.coding(), self.snomed.coding(), self.mdc.coding()]

    def names(self, coding: object) -> bool:
        """True when ``coding`` (a FHIR Coding) is one of this concept's codes."""
        if not isinstance(coding, Mapping):
            return False
        known = (self.loinc, self.snomed, self.mdc, *self.also)
        return any(coding.get("system") == c.system and coding.get("code") == c.code for c in known)


@dataclass(frozen=True)
class Part:
    """One number of a reading with its possible range: the value, or a panel's component."""

    key: str
    concept: Concept
    low: float
    high: float


@dataclass(frozen=True)
class ReadingType:
    name: str
    concept: Concept
    unit: str  # the UCUM code we store
    units: Mapping[str, Decimal]  # UCUM code accepted -> factor to ``unit``
    parts: tuple[Part, ...]
    panel: bool = False  # the value is in components (blood pressure)


def _loinc(code: str, display: str) -> Code:
    return Code(LOINC, code, display)


def _sct(code: str, display: str) -> Code:
    return Code(SCT, code, display)


def _mdc(code: str, display: str) -> Code:
    return Code(MDC, code, display)


def _simple(
    name: str, concept: Concept, units: dict[str, str], low: float, high: float
) -> ReadingType:
    factors = {unit: Decimal(factor) for unit, factor in units.items()}
    unit = next(u for u, f in factors.items() if f == 1)
    return ReadingType(name, concept, unit, factors, (Part("value", concept, low, high),))


_PER_MIN = {"/min": "1", "1/min": "1"}
SPO2 = Concept(
    _loinc("2708-6", "Oxygen saturation in Arterial blood"),
    _sct("431314004", "Peripheral oxygen saturation (observable entity)"),
    _mdc("150456", "MDC_PULS_OXIM_SAT_O2"),
    (_loinc("59408-5", "Oxygen saturation in Arterial blood by Pulse oximetry"),),
)
PULSE = Concept(
    _loinc("8867-4", "Heart rate"),
    _sct("364075005", "Heart rate (observable entity)"),
    _mdc("149546", "MDC_PULS_RATE_NON_INV"),
    (_mdc("149530", "MDC_PULS_OXIM_PULS_RATE"),),
)
BLOOD_PRESSURE = Concept(
    _loinc("85354-9", "Blood pressure panel with all children optional"),
    _sct("75367002", "Blood pressure (observable entity)"),
    _mdc("150020", "MDC_PRESS_BLD_NONINV"),
    (_loinc("55284-4", "Blood pressure systolic and diastolic"),),
)
SYSTOLIC = Concept(
    _loinc("8480-6", "Systolic blood pressure"),
    _sct("271649006", "Systolic blood pressure (observable entity)"),
    _mdc("150021", "MDC_PRESS_BLD_NONINV_SYS"),
)
DIASTOLIC = Concept(
    _loinc("8462-4", "Diastolic blood pressure"),
    _sct("271650006", "Diastolic blood pressure (observable entity)"),
    _mdc("150022", "MDC_PRESS_BLD_NONINV_DIA"),
)
WEIGHT = Concept(
    _loinc("29463-7", "Body weight"),
    _sct("27113001", "Body weight (observable entity)"),
    _mdc("188736", "MDC_MASS_BODY_ACTUAL"),
)
GLUCOSE = Concept(
    _loinc("15074-8", "Glucose [Moles/volume] in Blood"),
    _sct("434912009", "Blood glucose concentration (observable entity)"),
    _mdc("160184", "MDC_CONC_GLU_CAPILLARY_WHOLEBLOOD"),
    (Code(NLK, "NPU02187", "B-Glucose; subst.c."),),
)
TEMPERATURE = Concept(
    _loinc("8310-5", "Body temperature"),
    _sct("276885007", "Core body temperature (observable entity)"),
    _mdc("150364", "MDC_TEMP_BODY"),
)
RESPIRATION = Concept(
    _loinc("9279-1", "Respiratory rate"),
    _sct("86290005", "Respiratory rate (observable entity)"),
    _mdc("151562", "MDC_RESP_RATE"),
)

CATALOGUE: dict[str, ReadingType] = {
    t.name: t
    for t in (
        _simple("spo2", SPO2, {"%": "1"}, 50, 100),
        _simple("pulse", PULSE, {**_PER_MIN, "{beat}/min": "1", "{beats}/min": "1"}, 20, 300),
        ReadingType(
            "blood-pressure",
            BLOOD_PRESSURE,
            "mm[Hg]",
            {"mm[Hg]": Decimal(1)},
            (Part("systolic", SYSTOLIC, 40, 300), Part("diastolic", DIASTOLIC, 20, 200)),
            panel=True,
        ),
        _simple("weight", WEIGHT, {"kg": "1", "g": "0.001", "[lb_av]": "0.45359237"}, 0.5, 500),
        _simple("glucose", GLUCOSE, {"mmol/L": "1", "mmol/l": "1"}, 0.5, 60),
        _simple("temperature", TEMPERATURE, {"Cel": "1"}, 25, 45),
        _simple("respiration-rate", RESPIRATION, {**_PER_MIN, "{breaths}/min": "1"}, 2, 80),
    )
}


# --- a device's reading -> Observation -----------------------------------------------------


def observation(reading: dict, device_id: str, patient_fnr: str, received: datetime) -> dict:
    """The FHIR R4 Observation of a device's ``reading`` (see the module docstring)."""
    if received.tzinfo is None:
        raise ValueError("received must be an aware datetime")  # our clock, not the device's
    kind = _reading_kind(reading)
    measured = _time(reading, "measured", received)
    sent = _time(reading, "sent", received) if reading.get("sent") is not None else None
    obs = {
        "resourceType": "Observation",
        "identifier": [_reading_identifier(device_id, reading)],
        "status": "final",
        "category": [_vital_signs()],
        "code": {"coding": kind.concept.codings(), "text": kind.concept.loinc.display},
        "subject": {"identifier": _patient_identifier(patient_fnr)},
        "effectiveDateTime": measured.isoformat(),
        "issued": received.isoformat(),
        "device": {"reference": f"Device/{device_id}"},
    }
    obs.update(_value_elements(kind, _device_values(kind, reading)))
    if sent is not None:
        obs["extension"] = [{"url": SENT_EXTENSION, "valueDateTime": sent.isoformat()}]
    return obs


def _field(reading: Mapping[str, Any], name: str) -> Any:
    value = reading.get(name)
    if value is None:
        raise Refused("missing-field", f"the reading has no {name!r}")
    return value


def _reading_kind(reading: object) -> ReadingType:
    if not isinstance(reading, Mapping):
        raise Refused("bad-reading", "the reading must be a JSON object")
    name = _field(reading, "type")
    kind = CATALOGUE.get(name) if isinstance(name, str) else None
    if kind is None:
        raise Refused("unknown-type", f"unknown reading type; known: {', '.join(CATALOGUE)}")
    return kind


def _reading_identifier(device_id: str, reading: Mapping[str, Any]) -> dict[str, str]:
    if not isinstance(device_id, str) or not _FHIR_ID.fullmatch(device_id):
        raise Refused("bad-device", "the device id must be 1-64 of A-Z a-z 0-9 - .")
    value = _field(reading, "id")
    if not isinstance(value, str) or not _READING_ID.fullmatch(value):
        raise Refused("bad-id", "'id' must be a string of 1-64 of A-Z a-z 0-9 . _ : -")
    return {"system": READING_SYSTEM + device_id, "value": value}


def _patient_identifier(number: str) -> dict[str, str]:
    """FNR, D-nummer (first digit + 4) or felles hjelpenummer (first digit 8 or 9)."""
    if not isinstance(number, str) or len(number) != 11 or not number.isdigit():
        raise Refused("bad-patient", "the patient's national id must be 11 digits")
    system = OID_FNR if number[0] < "4" else OID_DNR if number[0] < "8" else OID_FH
    return {"system": system, "value": number}


def _vital_signs() -> dict:
    coding = {"system": CATEGORY, "code": "vital-signs", "display": "Vital Signs"}
    return {"coding": [coding]}


def _time(reading: Mapping[str, Any], name: str, received: datetime) -> datetime:
    return device_time(_field(reading, name), name, received)


def device_time(text: object, name: str, received: datetime) -> datetime:
    """A device's or gateway's time, with its offset, not ahead of ours by more than the
    allowed clock skew; Refused (``bad-time``) otherwise."""
    when = parse_time(text) if isinstance(text, str) else None
    if when is None:
        raise Refused("bad-time", f"{name!r} must be an ISO 8601 date-time with its UTC offset")
    if when > received + CLOCK_SKEW:
        raise Refused("bad-time", f"{name!r} is in the future (is the device clock right?)")
    return when


def parse_time(text: str) -> datetime | None:
    """An ISO 8601 date-time with a UTC offset ("Z" or "+01:00"); None otherwise."""
    if "T" not in text:
        return None
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when if when.tzinfo is not None else None


def _device_values(kind: ReadingType, reading: Mapping[str, Any]) -> dict[str, float]:
    factor = _factor(kind, _field(reading, "unit"))
    raw = _field(reading, "value")
    if kind.panel and not isinstance(raw, Mapping):
        keys = " and ".join(p.key for p in kind.parts)
        raise Refused("bad-value", f"a {kind.name} value is an object with {keys}")
    numbers = {p.key: raw.get(p.key) if kind.panel else raw for p in kind.parts}
    return _checked(kind, {k: _convert(_number(k, v), factor) for k, v in numbers.items()})


def _factor(kind: ReadingType, unit: object) -> Decimal:
    factor = kind.units.get(unit) if isinstance(unit, str) else None
    if factor is None:
        accepted = ", ".join(kind.units)
        raise Refused("wrong-unit", f"a {kind.name} reading takes one of the UCUM units {accepted}")
    return factor


def _number(key: str, value: object) -> float:
    if value is None:
        raise Refused("missing-field", f"the reading has no {key!r}")
    # Decimal: an Observation parsed by the platform keeps FHIR decimals exactly (jsonio)
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal) or value != value:
        raise Refused("bad-value", f"{key!r} must be a number")
    return float(value)


def _convert(value: float, factor: Decimal) -> float:
    if factor == 1:
        return value
    return round(float(Decimal(str(value)) * factor), 3)


def _checked(kind: ReadingType, values: dict[str, float]) -> dict[str, float]:
    for part in kind.parts:
        value = values[part.key]
        if not part.low <= value <= part.high:
            raise Refused(
                "impossible-value",
                f"{part.key} {value:g} {kind.unit} is impossible for {kind.name} "
                f"(accepted {part.low:g}-{part.high:g} {kind.unit})",
            )
    if kind.panel and values["systolic"] <= values["diastolic"]:
        raise Refused("impossible-value", "systolic must be above diastolic")
    return values


def _quantity(kind: ReadingType, value: float) -> dict:
    return {"value": value, "unit": kind.unit, "system": UCUM, "code": kind.unit}


def _value_elements(kind: ReadingType, values: dict[str, float]) -> dict:
    if not kind.panel:
        return {"valueQuantity": _quantity(kind, values["value"])}
    components = [
        {"code": {"coding": p.concept.codings()}, "valueQuantity": _quantity(kind, values[p.key])}
        for p in kind.parts
    ]
    return {"component": components}


# --- Observations that arrive ready-made (VKP batch Bundles over HTTP) ---------------------


def reading_type(obs: dict) -> str:
    """The catalogue name of an Observation, from any of its LOINC, SNOMED CT or MDC codings."""
    codings = (obs.get("code") or {}).get("coding") or []
    found = {t.name for t in CATALOGUE.values() for c in codings if t.concept.names(c)}
    if not found:
        raise Refused("unknown-type", "the Observation's code names no reading type we take")
    if len(found) > 1:
        raise Refused("conflicting-codes", "the Observation's codings name different readings")
    return found.pop()


def check_observation(obs: dict) -> None:
    """Refuse an Observation whose type, unit, value or time we cannot take."""
    if not isinstance(obs, Mapping) or obs.get("resourceType") != "Observation":
        raise Refused("not-observation", "expected an Observation")
    kind = CATALOGUE[reading_type(obs)]
    values = {p.key: _observation_value(kind, obs, p) for p in kind.parts}
    _checked(kind, values)
    _check_effective(obs)


def _observation_value(kind: ReadingType, obs: Mapping[str, Any], part: Part) -> float:
    holder: Mapping[str, Any] | None = obs
    if kind.panel:
        holder = next((c for c in obs.get("component") or () if _is_part(c, part)), None)
    quantity = (holder or {}).get("valueQuantity")
    if not isinstance(quantity, Mapping):
        raise Refused("missing-field", f"the Observation has no valueQuantity for {part.key}")
    if quantity.get("system") != UCUM:
        raise Refused("wrong-unit", f"the {part.key} unit must be a UCUM code ({UCUM})")
    factor = _factor(kind, quantity.get("code"))
    return _convert(_number(part.key, quantity.get("value")), factor)


def _is_part(component: object, part: Part) -> bool:
    if not isinstance(component, Mapping):
        return False
    codings = (component.get("code") or {}).get("coding") or []
    return any(part.concept.names(c) for c in codings)


def _check_effective(obs: Mapping[str, Any]) -> None:
    """FHIR requires an offset on any time of day; a date alone (VKP's examples) is kept."""
    when = obs.get("effectiveDateTime") or obs.get("effectiveInstant")
    if when is None and obs.get("effectivePeriod") is None:
        raise Refused("missing-field", "the Observation has no effective time")
    if isinstance(when, str) and "T" in when and parse_time(when) is None:
        raise Refused("bad-time", "the effective time must give its UTC offset")


# --- de-duplication ------------------------------------------------------------------------


def reading_key(obs: dict) -> tuple[str, str] | None:
    """The (system, value) identifier to create the Observation conditionally on: ours
    (``urn:enjournal:vkp:reading:...``) first, else the sender's first complete identifier."""
    complete = [
        (i["system"], i["value"])
        for i in obs.get("identifier") or ()
        if isinstance(i, Mapping) and _text(i.get("system")) and _text(i.get("value"))
    ]
    ours = [key for key in complete if key[0].startswith(READING_SYSTEM)]
    found = ours or complete
    return found[0] if found else None


def _text(value: object) -> bool:
    return isinstance(value, str) and value.strip() != ""


def identifier_search(key: tuple[str, str]) -> str:
    """``system|value`` escaped for a FHIR search (R4: ``\\``, ``|``, ``,`` and ``$``)."""
    return "|".join(_escape(part) for part in key)


def _escape(text: str) -> str:
    for char in ("\\", "|", ",", "$"):
        text = text.replace(char, "\\" + char)
    return text
