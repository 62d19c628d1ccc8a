"""Kjernejournal's rules as tables: each row one case a reader can check against
/work/shared/docs/domain.md section 2 (2.2 critical information, 2.3 access and the
citizen's controls, 2.1 the patient's own registrations).  No server, no database: the
functions of ``rules.py`` and ``own.py`` are pure.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from enjournal.fhir.errors import Forbidden, Invalid, NotFound, Unprocessable
from enjournal.services.kjernejournal import own, rules
from enjournal.services.kjernejournal.rules import (
    AKUTT,
    FORHOYET,
    SAMTYKKE,
    UNNTAK,
    WHOLE_RECORD,
    Access,
    Privacy,
)
from tests.conftest import MEMORY

pytestmark = MEMORY

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
ME = "1000001"  # the calling health worker's HPR number
OTHER = "1000002"  # another health worker's
ALL_PARTS = frozenset(rules.PARTS)

NONE = Privacy()
BLOCKS_ME = Privacy(blocked=frozenset({ME}))
BLOCKS_OTHER = Privacy(blocked=frozenset({OTHER}))
RESTRICTS_CRITICAL = Privacy(restricted=frozenset({"kritisk-info"}))
RESTRICTS_MEDICINES = Privacy(restricted=frozenset({"legemidler"}))
RESTRICTS_ALL = Privacy(restricted=frozenset({WHOLE_RECORD}))
RESERVED = Privacy(reserved_at=NOW - timedelta(days=1))


def read(
    basis: str | None,
    *,
    care: str | None = "encounter",
    privacy: Privacy = NONE,
    profession: str | None = "LE",
    reason: str | None = None,
    blocked_by_consent: bool = False,
) -> Access:
    return rules.personnel_access(
        hpr=ME,
        profession=profession,
        basis=basis,
        reason=reason,
        care_relationship=care,
        blocked_by_consent=blocked_by_consent,
        privacy=privacy,
    )


def granted(
    basis: str, purpose: str, *, withheld=frozenset(), opened=frozenset(), emergency=False
) -> Access:
    return Access(basis, purpose, frozenset(withheld), frozenset(opened), emergency)


# ---- health personnel: access basis x role x the citizen's settings (domain.md 2.3) ----------

PERSONNEL = [
    # The four NHN bases, with a care relationship and no settings.
    ("GP on UNNTAK (no consent needed for the fastlege)", dict(basis=UNNTAK, care="gp-list"),
     granted(UNNTAK, "TREAT")),
    ("GP's office colleague on UNNTAK", dict(basis=UNNTAK, care="gp-list (same office)"),
     granted(UNNTAK, "TREAT")),
    ("hospital doctor on UNNTAK: UNNTAK is the GP's", dict(basis=UNNTAK, care="encounter"),
     Forbidden),
    ("hospital doctor on SAMTYKKE", dict(basis=SAMTYKKE), granted(SAMTYKKE, "TREAT")),
    ("hospital doctor on FORHOYET_SAMTYKKE", dict(basis=FORHOYET), granted(FORHOYET, "TREAT")),
    # AKUTT from a clinician who may read anyway opens nothing: logged, not an emergency access.
    ("AKUTT with a care relationship, nothing restricted", dict(basis=AKUTT, reason="bevisstløs"),
     granted(AKUTT, "TREAT")),
    # A basis must be stated, be one of the four, and AKUTT needs a reason.
    ("no basis stated", dict(basis=None), Invalid),
    ("an old KJ header value is not a basis", dict(basis="HPAKUTT"), Invalid),
    ("AKUTT without a reason", dict(basis=AKUTT), Invalid),
    # Consent needs a care relationship; emergency does not.
    ("SAMTYKKE without a care relationship", dict(basis=SAMTYKKE, care=None), Forbidden),
    ("FORHOYET_SAMTYKKE without a care relationship", dict(basis=FORHOYET, care=None),
     Forbidden),
    ("AKUTT without a care relationship", dict(basis=AKUTT, care=None, reason="ulykke"),
     granted(AKUTT, "ETREAT", emergency=True)),
    # Roles: pharmacists are not covered (they see prescriptions through e-resept).
    ("pharmacist (FA1) on SAMTYKKE", dict(basis=SAMTYKKE, profession="FA1"), Forbidden),
    ("prescription pharmacist (FA2) on AKUTT", dict(basis=AKUTT, profession="FA2", reason="x"),
     Forbidden),
    ("nurse (SP) on SAMTYKKE", dict(basis=SAMTYKKE, profession="SP"), granted(SAMTYKKE, "TREAT")),
    # Blocking (blokkere) holds always, even in emergencies.
    ("blocked by the patient, SAMTYKKE", dict(basis=SAMTYKKE, privacy=BLOCKS_ME), Forbidden),
    ("blocked by the patient, AKUTT", dict(basis=AKUTT, privacy=BLOCKS_ME, reason="x"),
     Forbidden),
    ("blocked by the patient, GP on UNNTAK", dict(basis=UNNTAK, care="gp-list",
     privacy=BLOCKS_ME), Forbidden),
    ("denied by name in a Consent, AKUTT", dict(basis=AKUTT, blocked_by_consent=True,
     reason="x"), Forbidden),
    ("another health worker blocked, not me", dict(basis=SAMTYKKE, privacy=BLOCKS_OTHER),
     granted(SAMTYKKE, "TREAT")),
    # Restriction (sperre): consent leaves the part out; raised consent or AKUTT opens it.
    ("critical info restricted, SAMTYKKE", dict(basis=SAMTYKKE, privacy=RESTRICTS_CRITICAL),
     granted(SAMTYKKE, "TREAT", withheld={"kritisk-info"})),
    ("critical info restricted, GP on UNNTAK", dict(basis=UNNTAK, care="gp-list",
     privacy=RESTRICTS_CRITICAL), granted(UNNTAK, "TREAT", withheld={"kritisk-info"})),
    ("medicines restricted, FORHOYET_SAMTYKKE", dict(basis=FORHOYET,
     privacy=RESTRICTS_MEDICINES), granted(FORHOYET, "TREAT", opened={"legemidler"})),
    ("medicines restricted, AKUTT", dict(basis=AKUTT, privacy=RESTRICTS_MEDICINES,
     reason="x"), granted(AKUTT, "ETREAT", opened={"legemidler"}, emergency=True)),
    ("whole record restricted, SAMTYKKE", dict(basis=SAMTYKKE, privacy=RESTRICTS_ALL),
     granted(SAMTYKKE, "TREAT", withheld=ALL_PARTS)),
    ("whole record restricted, FORHOYET_SAMTYKKE", dict(basis=FORHOYET,
     privacy=RESTRICTS_ALL), granted(FORHOYET, "TREAT", opened=ALL_PARTS)),
    # Reservation: no kjernejournal exists, whatever the basis.
    ("reserved, SAMTYKKE", dict(basis=SAMTYKKE, privacy=RESERVED), NotFound),
    ("reserved, GP on UNNTAK", dict(basis=UNNTAK, care="gp-list", privacy=RESERVED), NotFound),
    ("reserved, AKUTT", dict(basis=AKUTT, privacy=RESERVED, reason="x"), NotFound),
    ("reserved and blocked: reservation first", dict(basis=SAMTYKKE,
     privacy=Privacy(blocked=frozenset({ME}), reserved_at=NOW)), NotFound),
]  # fmt: skip


@pytest.mark.parametrize(
    ("case", "expected"), [pytest.param(c, e, id=name) for name, c, e in PERSONNEL]
)
def test_personnel_access(case, expected):
    if isinstance(expected, type):
        with pytest.raises(expected):
            read(**case)
    else:
        assert read(**case) == expected


@pytest.mark.parametrize(
    ("basis", "opened", "flagged"),
    [
        (SAMTYKKE, False, False),
        (FORHOYET, False, False),  # nothing restricted: nothing opened, nothing to follow up
        (FORHOYET, True, True),  # a restricted part opened: followed up
        (AKUTT, False, True),  # emergency: always followed up
    ],
)
def test_flagged_for_follow_up(basis, opened, flagged):
    privacy = RESTRICTS_CRITICAL if opened else NONE
    assert read(basis, privacy=privacy, reason="x").flagged is flagged


# ---- the citizen, and parents of children under 12 (domain.md 2.3, 10) ----------------------

CITIZEN = [
    ("own record", True, False, (), granted(None, "PATRQT")),
    ("a child under 12 at the parent's address", False, True, (), granted(None, "PATRQT")),
    # The guard gives child_in_care only under 12 at a shared address; from 12 it is False,
    # and a parent of a child 12-15 holds only the GP services (area 3).
    ("a child from 12, or at another address", False, False, (), NotFound),
    ("a child of 12-15: GP services only", False, False, ("3",), NotFound),
    ("a fullmakt for innsyn (area 1)", False, False, ("1",), granted(None, "PATRQT")),
    ("a fullmakt for both areas", False, False, ("1", "3"), granted(None, "PATRQT")),
    ("someone else's record", False, False, (), NotFound),
]


@pytest.mark.parametrize(
    ("own_record", "child", "areas", "expected"),
    [pytest.param(o, c, a, e, id=name) for name, o, c, a, e in CITIZEN],
)
def test_citizen_access(own_record, child, areas, expected):
    if isinstance(expected, type):
        with pytest.raises(expected):
            rules.citizen_access(own_record, child, frozenset(areas))
    else:
        assert rules.citizen_access(own_record, child, frozenset(areas)) == expected


# ---- who registers critical information (domain.md 2.2) ---------------------------------------

REGISTRARS = [
    ("physician", "personnel", "LE", None),
    ("nurse: 'sometimes', unspecified, so not by default", "personnel", "SP", Forbidden),
    ("psychologist: likewise", "personnel", "PS", Forbidden),
    ("pharmacist", "personnel", "FA1", Forbidden),
    ("health worker without a profession", "personnel", None, Forbidden),
    ("the patient", "citizen", None, Forbidden),
    ("a system client", "system", None, Forbidden),
]


@pytest.mark.parametrize(
    ("kind", "profession", "refusal"),
    [pytest.param(k, p, r, id=name) for name, k, p, r in REGISTRARS],
)
def test_may_register(kind, profession, refusal):
    if refusal is None:
        assert rules.may_register(kind, profession) is None
    else:
        with pytest.raises(refusal):
            rules.may_register(kind, profession)


# ---- the citizen's settings: $kj-privacy (domain.md 2.3, controls 1, 2 and 4) ------------------

PRIVACY = [
    ("restrict a tab", NONE, {"restrict": "legemidler"},
     Privacy(restricted=frozenset({"legemidler"}))),
    ("restrict the whole record", NONE, {"restrict": WHOLE_RECORD},
     Privacy(restricted=frozenset({WHOLE_RECORD}))),
    ("restrict an unknown part", NONE, {"restrict": "prøvesvar"}, Invalid),
    ("lift a restriction (empty list)", RESTRICTS_CRITICAL, {"restrict": []}, NONE),
    ("block a health worker", NONE, {"block": [ME]}, BLOCKS_ME),
    ("block something that is not an HPR number", NONE, {"block": ["abc"]}, Invalid),
    ("add a block, keeping the old one", BLOCKS_OTHER, {"block": [OTHER, ME]},
     Privacy(blocked=frozenset({ME, OTHER}))),
    ("the patient cannot lift a block", BLOCKS_OTHER, {"block": []}, Forbidden),
    ("settings not named are kept", BLOCKS_OTHER, {"restrict": "vaksiner"},
     Privacy(restricted=frozenset({"vaksiner"}), blocked=frozenset({OTHER}))),
    ("reserve: from now", NONE, {"reserve": True}, Privacy(reserved_at=NOW)),
    ("reserve again: keeps the first date", RESERVED, {"reserve": "true"}, RESERVED),
    ("reserve is true or false", NONE, {"reserve": "ja"}, Invalid),
    ("withdraw within 30 days: the same record", RESERVED, {"reserve": False}, NONE),
    ("withdraw after 30 days: a new, empty record from now",
     Privacy(reserved_at=NOW - timedelta(days=30)), {"reserve": False},
     Privacy(started_at=NOW)),
]  # fmt: skip


@pytest.mark.parametrize(
    ("current", "values", "expected"),
    [pytest.param(c, v, e, id=name) for name, c, v, e in PRIVACY],
)
def test_privacy_from_parameters(current, values, expected):
    if isinstance(expected, type):
        with pytest.raises(expected):
            rules.privacy_from_parameters(values, NOW, current)
    else:
        assert rules.privacy_from_parameters(values, NOW, current) == expected


LIFTING = [
    ("a health worker who is not blocked", ME, OTHER, "pasienten ba om det", None),
    ("the blocked health worker themself", ME, ME, "x", Forbidden),
    ("with no HPR (not a health worker)", ME, None, "x", Forbidden),
    ("without a reason", ME, OTHER, "  ", Invalid),
    ("someone who is not blocked", "1000003", OTHER, "x", Unprocessable),
]


@pytest.mark.parametrize(
    ("target", "caller", "reason", "refusal"),
    [pytest.param(t, c, r, e, id=name) for name, t, c, r, e in LIFTING],
)
def test_lift_block(target, caller, reason, refusal):
    privacy = Privacy(blocked=frozenset({ME}))
    if refusal is None:
        assert rules.lift_block(privacy, target, caller, reason) == NONE
    else:
        with pytest.raises(refusal):
            rules.lift_block(privacy, target, caller, reason)


@pytest.mark.parametrize(
    ("reserved_days_ago", "due"),
    [(None, False), (0, False), (29, False), (30, True), (400, True)],
)
def test_deletion_30_days_after_reservation(reserved_days_ago, due):
    reserved = None if reserved_days_ago is None else NOW - timedelta(days=reserved_days_ago)
    assert Privacy(reserved_at=reserved).deletion_due(NOW) is due


STARTED = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("started", "moment", "before"),
    [
        (None, "2001-01-01", False),  # never reserved: everything belongs
        (STARTED, "2025-02-28T23:00:00Z", True),
        (STARTED, "2025-03-01T09:59:59Z", True),
        (STARTED, "2025-03-01T10:00:00Z", False),
        (STARTED, "2025-03-01T12:00:00+01:00", False),  # 11:00 UTC
        (STARTED, "2025-03-01", True),  # a date on the start day cannot be placed after it
        (STARTED, "2025-03-02", False),
        (STARTED, None, True),  # undated: not shown in the new record
        (STARTED, "late last night", True),  # unreadable
    ],
)
def test_new_record_starts_empty(started, moment, before):
    assert Privacy(started_at=started).before_start(moment) is before


# ---- what critical information may hold (domain.md 2.2) -----------------------------------


@pytest.mark.parametrize(
    ("code", "allowed"),
    [
        ("I21", True),
        ("I21.9", True),
        ("E109", True),  # without the dot
        ("T88.3", True),  # malignant hyperthermia from anaesthesia
        ("U07.1", True),
        ("V01", False),  # chapter XX, external causes
        ("Y98", False),
        ("W19.0", False),
        ("Z00", False),  # chapter XXI, factors influencing health status
        ("Z99.2", False),
        ("I2", False),  # not an ICD-10 code
        ("", False),
    ],
)
def test_icd10_chapters_xx_and_xxi_are_excluded(code, allowed):
    assert rules.icd10_allowed(code) is allowed


SOURCE = {"url": rules.KJ_SOURCE_OF_INFORMATION, "valueCoding": {"code": "1"}}


def condition(code: str) -> dict:
    coding = {"system": "http://hl7.org/fhir/sid/icd-10", "code": code}
    return {"resourceType": "Condition", "code": {"coding": [coding]}, "extension": [SOURCE]}


def allergy(**changes) -> dict:
    resource = {
        "resourceType": "AllergyIntolerance",
        "code": {"coding": [{"system": rules.ATC, "code": "J01CE02"}]},
        "criticality": "high",
        "verificationStatus": {"coding": [{"code": "confirmed"}]},
        "extension": [SOURCE],
    }
    resource.update(changes)
    return {k: v for k, v in resource.items() if v is not None}


def flag(end: str | None) -> dict:
    return {
        "resourceType": "Flag",
        "code": {"text": "Ikke HLR"},
        "period": {"end": end} if end else {},
        "extension": [SOURCE],
    }


ENTRIES = [
    ("critical condition in ICD-10", condition("I21"), "kritisk-tilstand", None),
    ("condition in chapter XXI", condition("Z99.2"), "kritisk-tilstand", Unprocessable),
    ("condition without ICD-10", {**condition("I21"), "code": {"text": "hjerteinfarkt"}},
     "kritisk-tilstand", Unprocessable),
    ("entry without its source of information", {**condition("I21"), "extension": []},
     "kritisk-tilstand", Unprocessable),
    ("drug reaction on ATC, high criticality", allergy(), "legemiddelreaksjon", None),
    ("criticality other than low or high", allergy(criticality="unable-to-assess"),
     "legemiddelreaksjon", Unprocessable),
    ("drug reaction naming no drug", allergy(code={"text": "penicillin"}),
     "legemiddelreaksjon", Unprocessable),
    ("other allergy in words", allergy(code={"text": "nøtter"}), "annen-allergi", None),
    ("verification 'refuted' (presumed is KjPresumed)",
     allergy(verificationStatus={"coding": [{"code": "refuted"}]}), "legemiddelreaksjon",
     Unprocessable),
    ("limit on life-prolonging treatment with 'valid to'", flag("2026-01-01"),
     "livsforlengende", None),
    ("limit on life-prolonging treatment without 'valid to'", flag(None), "livsforlengende",
     Unprocessable),
    ("other procedure change without 'valid to'", flag(None), "prosedyreendring", None),
]  # fmt: skip


@pytest.mark.parametrize(
    ("resource", "category", "refusal"),
    [pytest.param(r, c, e, id=name) for name, r, c, e in ENTRIES],
)
def test_check_entry(resource, category, refusal):
    if refusal is None:
        assert rules.check_entry(resource, rules.CATEGORIES[category]) is None
    else:
        with pytest.raises(refusal):
            rules.check_entry(resource, rules.CATEGORIES[category])


def kj_coding(code: str) -> dict:
    return {"coding": [{"system": rules.KJ, "code": code}]}


@pytest.mark.parametrize(
    ("resource", "category"),
    [
        ({"resourceType": "AllergyIntolerance", "category": ["medication"]}, "legemiddelreaksjon"),
        ({"resourceType": "AllergyIntolerance", "category": ["food"]}, "annen-allergi"),
        ({"resourceType": "Procedure"}, "behandling"),
        ({"resourceType": "Device"}, "implantat"),
        ({"resourceType": "Condition", "category": [kj_coding("smitte")]}, "smitte"),
        (
            {"resourceType": "Flag", "meta": {"tag": kj_coding("prosedyreendring")["coding"]}},
            "prosedyreendring",
        ),  # the tag says it too
    ],
)
def test_category_of(resource, category):
    assert rules.category_of(resource).code == category


@pytest.mark.parametrize(
    "resource",
    [
        {"resourceType": "Condition"},  # a condition states which of its three kinds it is
        {"resourceType": "Observation"},  # not a kind of critical information
        {  # a category of another type
            "resourceType": "Flag",
            "meta": {"tag": [{"system": rules.KJ, "code": "smitte"}]},
        },
    ],
)
def test_category_of_refuses(resource):
    with pytest.raises(Unprocessable):
        rules.category_of(resource)


def test_medicines_three_years_back():
    # domain.md 2.1, Legemidler: "up to 3 years history".
    assert rules.medication_window(NOW) == NOW - timedelta(days=3 * 365)


# ---- the patient's own registrations: at most 30 diseases (domain.md 2.1) ---------------------


@pytest.mark.parametrize(("others", "allowed"), [(0, True), (29, True), (30, False), (45, False)])
def test_at_most_30_own_diseases(others, allowed):
    if allowed:
        assert own.check_conditions(others) is None
    else:
        with pytest.raises(Unprocessable):
            own.check_conditions(others)


@pytest.mark.parametrize(
    ("code", "allowed"),
    [("astma", True), ("kreft", True), ("I21", False), ("", False)],
)
def test_own_diseases_come_from_the_fixed_list(code, allowed):
    concept = {"coding": [{"system": own.CONDITION_SYSTEM, "code": code}]}
    if allowed:
        assert own.condition_coding(concept)["display"] == own.CONDITIONS[code]
    else:
        with pytest.raises(Unprocessable):
            own.condition_coding(concept)


def test_the_fixed_list_has_about_24_categories():
    assert 20 <= len(own.CONDITIONS) <= 28  # domain.md 2.1: "chosen from ~24 categories"
