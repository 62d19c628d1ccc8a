"""Device readings (enjournal/services/velferdsteknologi/readings.py): the catalogue, a
reading made an Observation or refused, Observations in VKP's form checked, the de-duplication
key."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta

import pytest

from enjournal.services.velferdsteknologi.readings import (
    CATALOGUE,
    LOINC,
    MDC,
    READING_SYSTEM,
    SCT,
    SENT_EXTENSION,
    UCUM,
    Refused,
    check_observation,
    identifier_search,
    observation,
    parse_time,
    reading_key,
    reading_type,
)

FNR = "05073500186"  # VKP's own example patient
DNR = "45073500186"  # first digit + 4
RECEIVED = datetime(2026, 12, 3, 9, 0, 5, tzinfo=UTC)

GOOD = {
    "spo2": (95, "%"),
    "pulse": (72, "/min"),
    "blood-pressure": ({"systolic": 130, "diastolic": 85}, "mm[Hg]"),
    "weight": (72.4, "kg"),
    "glucose": (6.3, "mmol/L"),
    "temperature": (37.1, "Cel"),
    "respiration-rate": (16, "/min"),
}
CODES = {  # reading type -> (LOINC, SNOMED CT, MDC)
    "spo2": ("2708-6", "431314004", "150456"),
    "pulse": ("8867-4", "364075005", "149546"),
    "blood-pressure": ("85354-9", "75367002", "150020"),
    "weight": ("29463-7", "27113001", "188736"),
    "glucose": ("15074-8", "434912009", "160184"),
    "temperature": ("8310-5", "276885007", "150364"),
    "respiration-rate": ("9279-1", "86290005", "151562"),
}


def reading(kind: str = "spo2", **changes) -> dict:
    value, unit = GOOD[kind]
    body = {
        "id": "r-1842",
        "type": kind,
        "value": copy.deepcopy(value),
        "unit": unit,
        "measured": "2026-12-03T09:55:00+01:00",
        "sent": "2026-12-03T09:55:03+01:00",
    }
    body.update(changes)
    return body


def make(body: dict, device: str = "dev-oxi-1", patient: str = FNR) -> dict:
    return observation(body, device, patient, RECEIVED)


def refusal(body: dict, **kwargs) -> str:
    with pytest.raises(Refused) as caught:
        make(body, **kwargs)
    assert str(caught.value)  # always a human message
    return caught.value.code


def codes_of(concept: dict) -> dict[str, str]:
    return {c["system"]: c["code"] for c in concept["coding"]}


# --- the catalogue and the Observation made ------------------------------------------------


def test_the_catalogue_has_the_seven_types():
    assert set(CATALOGUE) == set(GOOD)


@pytest.mark.parametrize("kind", list(GOOD))
def test_each_type_is_accepted_with_its_three_codes(kind):
    obs = make(reading(kind))
    loinc, sct, mdc = CODES[kind]
    assert codes_of(obs["code"]) == {LOINC: loinc, SCT: sct, MDC: mdc}
    assert obs["resourceType"] == "Observation" and obs["status"] == "final"
    assert obs["category"][0]["coding"][0]["code"] == "vital-signs"
    check_observation(obs)  # what we make, we accept back over HTTP
    assert reading_type(obs) == kind


def test_the_observation_names_patient_device_times_and_identifier():
    obs = make(reading("pulse"))
    assert obs["subject"] == {
        "identifier": {"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": FNR}
    }
    assert obs["device"] == {"reference": "Device/dev-oxi-1"}
    assert obs["effectiveDateTime"] == "2026-12-03T09:55:00+01:00"  # the device's time
    assert obs["issued"] == "2026-12-03T09:00:05+00:00"  # when we received it
    assert obs["extension"] == [
        {"url": SENT_EXTENSION, "valueDateTime": "2026-12-03T09:55:03+01:00"}
    ]
    assert obs["identifier"] == [{"system": READING_SYSTEM + "dev-oxi-1", "value": "r-1842"}]
    assert obs["valueQuantity"] == {"value": 72, "unit": "/min", "system": UCUM, "code": "/min"}


def test_a_d_number_gets_the_d_number_system():
    obs = make(reading(), patient=DNR)
    assert obs["subject"]["identifier"]["system"] == "urn:oid:2.16.578.1.12.4.1.4.2"


def test_without_a_gateway_time_there_is_no_extension():
    body = reading()
    del body["sent"]
    assert "extension" not in make(body)


def test_blood_pressure_is_a_panel_with_two_components():
    obs = make(reading("blood-pressure"))
    assert "valueQuantity" not in obs
    systolic, diastolic = obs["component"]
    assert codes_of(systolic["code"]) == {LOINC: "8480-6", SCT: "271649006", MDC: "150021"}
    assert codes_of(diastolic["code"]) == {LOINC: "8462-4", SCT: "271650006", MDC: "150022"}
    assert systolic["valueQuantity"]["value"] == 130
    assert diastolic["valueQuantity"] == {
        "value": 85,
        "unit": "mm[Hg]",
        "system": UCUM,
        "code": "mm[Hg]",
    }


@pytest.mark.parametrize(
    ("value", "unit", "kg"), [(72350, "g", 72.35), (160, "[lb_av]", 72.575), (72.35, "kg", 72.35)]
)
def test_weight_is_stored_in_kg(value, unit, kg):
    quantity = make(reading("weight", value=value, unit=unit))["valueQuantity"]
    assert quantity["value"] == kg and quantity["code"] == "kg"


@pytest.mark.parametrize(
    ("kind", "unit"),
    [
        ("pulse", "{beat}/min"),
        ("pulse", "1/min"),
        ("respiration-rate", "{breaths}/min"),
        ("glucose", "mmol/l"),
    ],
)
def test_unit_spellings_of_the_same_unit_are_taken_and_stored_in_the_usual_code(kind, unit):
    quantity = make(reading(kind, unit=unit))["valueQuantity"]
    assert quantity["code"] == CATALOGUE[kind].unit


# --- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"type": "mood"}, "unknown-type"),
        ({"type": ["spo2"]}, "unknown-type"),
        ({"unit": "kg"}, "wrong-unit"),
        ({"unit": None}, "missing-field"),
        ({"value": None}, "missing-field"),
        ({"measured": None}, "missing-field"),
        ({"id": None}, "missing-field"),
        ({"type": None}, "missing-field"),
        ({"value": "95"}, "bad-value"),
        ({"value": True}, "bad-value"),
        ({"value": float("nan")}, "bad-value"),
        ({"value": 140}, "impossible-value"),
        ({"id": ""}, "bad-id"),
        ({"id": "a|b"}, "bad-id"),
        ({"id": 17}, "bad-id"),
        ({"id": "x" * 65}, "bad-id"),
        ({"measured": "2026-12-03T09:55:00"}, "bad-time"),  # no offset
        ({"measured": "2026-12-03"}, "bad-time"),  # no time of day
        ({"measured": "yesterday"}, "bad-time"),
        ({"measured": 1764751200}, "bad-time"),
        ({"sent": "2026-12-03T09:55:03"}, "bad-time"),
        ({"measured": "2026-12-03T09:10:00+00:00"}, "bad-time"),  # 10 minutes in the future
    ],
)
def test_each_refusal_has_its_code(changes, code):
    assert refusal(reading(**changes)) == code


def test_glucose_in_mg_per_dl_is_refused_not_converted():
    assert refusal(reading("glucose", value=110, unit="mg/dL")) == "wrong-unit"


def test_a_reading_that_is_not_an_object_is_refused():
    with pytest.raises(Refused) as caught:
        observation(["spo2"], "dev-1", FNR, RECEIVED)  # type: ignore[arg-type]
    assert caught.value.code == "bad-reading"


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ([130, 85], "bad-value"),
        ({"systolic": 130}, "missing-field"),
        ({"systolic": 130, "diastolic": "85"}, "bad-value"),
        ({"systolic": 85, "diastolic": 85}, "impossible-value"),
        ({"systolic": 80, "diastolic": 120}, "impossible-value"),
    ],
)
def test_blood_pressure_refusals(value, code):
    assert refusal(reading("blood-pressure", value=value)) == code


@pytest.mark.parametrize(
    ("device", "patient", "code"),
    [
        ("dev/1", FNR, "bad-device"),
        ("", FNR, "bad-device"),
        ("dev-1", "0507350018", "bad-patient"),
        ("dev-1", "0507350018x", "bad-patient"),
    ],
)
def test_bad_device_or_patient_ids_are_refused(device, patient, code):
    assert refusal(reading(), device=device, patient=patient) == code


def test_messages_do_not_repeat_the_senders_text_or_the_patient_number():
    with pytest.raises(Refused) as caught:
        make(reading(type="<script>" * 50))
    assert "<script>" not in str(caught.value)
    with pytest.raises(Refused) as caught:
        make(reading(), patient="0507350018")
    assert "0507350018" not in str(caught.value)


def test_a_naive_received_time_is_a_programming_error_not_a_refusal():
    with pytest.raises(ValueError) as caught:
        observation(reading(), "dev-1", FNR, datetime(2026, 12, 3, 9, 0))
    assert not isinstance(caught.value, Refused)


# --- range boundaries: just inside is taken, just outside refused --------------------------

BOUNDS = [
    ("spo2", "%", 50, 100),
    ("pulse", "/min", 20, 300),
    ("weight", "kg", 0.5, 500),
    ("temperature", "Cel", 25, 45),
    ("glucose", "mmol/L", 0.5, 60),
    ("respiration-rate", "/min", 2, 80),
]


@pytest.mark.parametrize(("kind", "unit", "low", "high"), BOUNDS)
def test_range_boundaries(kind, unit, low, high):
    for inside in (low, high):
        assert make(reading(kind, value=inside, unit=unit))["valueQuantity"]["value"] == inside
    for outside in (low - 0.1, high + 0.1):
        assert refusal(reading(kind, value=outside, unit=unit)) == "impossible-value"


def test_weight_range_applies_after_conversion():
    assert make(reading("weight", value=500, unit="g"))["valueQuantity"]["value"] == 0.5
    assert refusal(reading("weight", value=499, unit="g")) == "impossible-value"


@pytest.mark.parametrize(
    ("systolic", "diastolic", "ok"),
    [
        (40, 20, True),
        (39, 20, False),
        (300, 200, True),
        (301, 90, False),
        (120, 19, False),
        (250, 201, False),
        (121, 120, True),
        (120, 120, False),
    ],
)
def test_blood_pressure_boundaries(systolic, diastolic, ok):
    body = reading("blood-pressure", value={"systolic": systolic, "diastolic": diastolic})
    if ok:
        make(body)
    else:
        assert refusal(body) == "impossible-value"


# --- time parsing --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-12-03T09:55:00+01:00", datetime(2026, 12, 3, 8, 55, tzinfo=UTC)),
        ("2026-12-03T08:55:00Z", datetime(2026, 12, 3, 8, 55, tzinfo=UTC)),
        ("2026-12-03T09:55+01:00", datetime(2026, 12, 3, 8, 55, tzinfo=UTC)),
        ("2026-12-03T09:55:00.250+01:00", datetime(2026, 12, 3, 8, 55, 0, 250000, tzinfo=UTC)),
        ("2026-12-03T09:55:00", None),
        ("2026-12-03", None),
        ("2026-13-03T09:55:00+01:00", None),
        ("", None),
    ],
)
def test_parse_time_needs_a_date_time_with_offset(text, expected):
    assert parse_time(text) == expected


def test_times_are_written_in_fhir_form_with_seconds():
    obs = make(reading(measured="2026-12-03T08:55Z", sent="2026-12-03T08:55:03Z"))
    assert obs["effectiveDateTime"] == "2026-12-03T08:55:00+00:00"


def test_a_device_clock_a_little_ahead_is_tolerated():
    ahead = (RECEIVED + timedelta(minutes=4)).isoformat()
    assert make(reading(measured=ahead))["effectiveDateTime"] == ahead


# --- Observations in VKP's form ------------------------------------------------------------


def vkp(codings: list[dict], value: object = 99, unit: str = "%", **more) -> dict:
    """An Observation as VKP's examples send them (HL7Norway/VkpObservation instances)."""
    obs = {
        "resourceType": "Observation",
        "identifier": [{"system": "http://dips.no/fhir/namingsystem/externalId", "value": "ext-5"}],
        "status": "final",
        "code": {"coding": codings},
        "subject": {"identifier": {"system": "urn:oid:2.16.578.1.12.4.1.4.1", "value": FNR}},
        "effectiveDateTime": "2022-03-16",
        "valueQuantity": {"value": value, "unit": unit, "system": UCUM, "code": unit},
    }
    obs.update(more)
    return obs


@pytest.mark.parametrize(
    "coding",
    [
        {"system": LOINC, "code": "2708-6"},
        {"system": SCT, "code": "431314004"},
        {"system": MDC, "code": "150456"},
        {"system": LOINC, "code": "59408-5"},
    ],
)
def test_an_observation_is_typed_by_any_one_of_its_codings(coding):
    obs = vkp([coding])
    assert reading_type(obs) == "spo2"
    check_observation(obs)


def test_vkp_examples_with_weight_in_grams_and_glucose_in_mmol_per_l_pass():
    check_observation(vkp([{"system": LOINC, "code": "29463-7"}], 49000, "g"))
    nlk = {"system": "urn:oid:2.16.578.1.12.4.1.1.7280", "code": "NPU02187"}
    check_observation(vkp([nlk], 6.3, "mmol/l"))


def test_a_vkp_blood_pressure_panel_is_checked_component_by_component():
    def component(loinc: str, value: float) -> dict:
        quantity = {"value": value, "system": UCUM, "code": "mm[Hg]"}
        return {"code": {"coding": [{"system": LOINC, "code": loinc}]}, "valueQuantity": quantity}

    panel = [{"system": SCT, "code": "75367002"}]
    good = vkp(panel, component=[component("8480-6", 123), component("8462-4", 78)])
    del good["valueQuantity"]
    check_observation(good)
    swapped = dict(good, component=[component("8480-6", 78), component("8462-4", 123)])
    with pytest.raises(Refused, match="above") as caught:
        check_observation(swapped)
    assert caught.value.code == "impossible-value"
    with pytest.raises(Refused) as caught:
        check_observation(dict(good, component=[component("8480-6", 123)]))
    assert caught.value.code == "missing-field"


@pytest.mark.parametrize(
    ("obs", "code"),
    [
        (vkp([{"system": LOINC, "code": "8302-2"}]), "unknown-type"),  # body height
        (vkp([]), "unknown-type"),
        (
            vkp([{"system": LOINC, "code": "2708-6"}, {"system": MDC, "code": "150364"}]),
            "conflicting-codes",
        ),
        (vkp([{"system": MDC, "code": "150456"}], 101), "impossible-value"),
        (vkp([{"system": MDC, "code": "150456"}], 95, "1"), "wrong-unit"),
        (
            vkp([{"system": MDC, "code": "150456"}], valueQuantity={"value": 95, "code": "%"}),
            "wrong-unit",
        ),
        (vkp([{"system": MDC, "code": "150456"}], valueQuantity=None), "missing-field"),
        (vkp([{"system": MDC, "code": "150456"}], "95"), "bad-value"),
        (vkp([{"system": MDC, "code": "150456"}], effectiveDateTime=None), "missing-field"),
        (
            vkp([{"system": MDC, "code": "150456"}], effectiveDateTime="2022-03-16T10:00:00"),
            "bad-time",
        ),
        ({"resourceType": "Patient"}, "not-observation"),
    ],
)
def test_check_observation_refusals(obs, code):
    with pytest.raises(Refused) as caught:
        check_observation(obs)
    assert caught.value.code == code


# --- the de-duplication key ----------------------------------------------------------------


def test_reading_key_is_our_identifier_first():
    obs = make(reading())
    obs["identifier"].insert(0, {"system": "urn:other", "value": "7"})
    assert reading_key(obs) == (READING_SYSTEM + "dev-oxi-1", "r-1842")


def test_the_same_reading_sent_again_has_the_same_key():
    again = make(reading(sent="2026-12-03T09:58:00+01:00"))
    assert reading_key(make(reading())) == reading_key(again)
    assert reading_key(make(reading(id="r-1843"))) != reading_key(again)
    assert reading_key(make(reading(), device="dev-oxi-2")) != reading_key(again)


def test_reading_key_falls_back_to_the_senders_identifier_or_none():
    assert reading_key(vkp([])) == ("http://dips.no/fhir/namingsystem/externalId", "ext-5")
    assert reading_key(vkp([], identifier=[{"value": "no-system"}, {"system": "s"}])) is None
    assert reading_key(vkp([], identifier=None)) is None


def test_identifier_search_escapes_the_search_specials():
    assert identifier_search(("urn:a", "r-1")) == "urn:a|r-1"
    assert identifier_search(("urn:a", "x|y,z$\\")) == "urn:a|x\\|y\\,z\\$\\\\"
