"""The pages' templates under the strict environment with FHIR resources that leave out what
FHIR lets them leave out (a CarePlan without title, a Patient without birth date, a Goal
described by a code, evidence without a value): the page, never a 500; and what a patient or
a nurse wrote is escaped."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

from enjournal.services.velferdsteknologi.web import logic
from enjournal.services.velferdsteknologi.web.centre import CONFIG, LABELS
from enjournal.services.velferdsteknologi.web.charts import SERIES_NAMES
from enjournal.web.site import environment

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)
EVIL = '<script>alert(1)</script>"'


def render(template: str, **data) -> str:
    session = SimpleNamespace(logged_in=True, name=EVIL)
    context = {
        "labels": LABELS,
        "series_names": SERIES_NAMES,
        "now": NOW,
        "session": session,
        "lang": "nb",
        "csrf": "token",
        "flash": None,
        "path": "/oppfolging/",
        "base": "/oppfolging",
        **data,
    }
    return environment(CONFIG, "nb").get_template(template).render(context)


def _alert(**issue) -> logic.Alert:
    work = {
        "id": "t1",
        "identifier": [{"system": "urn:enjournal:vkp:alert", "value": "k"}],
        "status": "completed",
        "code": {"coding": [{"code": "threshold"}]},
        "for": {"reference": "Patient/p1"},
        "output": [{"valueString": EVIL}],
    }
    return logic.alert(work, {"detail": EVIL, **issue}, NOW)


def test_the_patient_page_takes_sparse_resources_and_escapes_text():
    sparse_obs = {"id": "o1", "component": [{"code": {}}]}  # no value, no time
    open_alert = _alert(evidence=[{"detail": [{"reference": "Observation/o1"}]}])
    open_alert.status = "requested"
    html = render(
        "patient.html",
        patient={"resourceType": "Patient", "id": "p1"},
        name=EVIL,
        age=None,
        charts=[],
        goals=[
            {"id": "g1", "description": {"coding": [{"code": "x"}]}},
            {"id": "g2"},
        ],
        limits=[],
        problems=[EVIL],
        plans=[{"resourceType": "CarePlan", "careTeam": [{"reference": "CareTeam/x"}, {}]}],
        alerts=[open_alert, _alert()],
        observations={"o1": sparse_obs},
    )
    assert "<script>" not in html
    assert "&lt;script&gt;" in html


def test_the_overview_escapes_names_and_alert_texts():
    row = logic.Followed("p1", EVIL, None)
    html = render("overview.html", patients=[row], alerts=[_alert()], names={"p1": EVIL})
    assert "<script>" not in html
