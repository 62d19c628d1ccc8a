"""The follow-up centre as a site of ``enjournal.web``: its settings (path, client, scopes,
cookie; health personnel only) and its pages: the overview of the patients under follow-up
and the open alerts, one patient's readings, thresholds and alerts, and the steps on an
alert (acknowledge, arrived, close), each an operation of ``api.py`` through the nurse's own
FHIR client (policy and audit as on the API).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from starlette.responses import Response

from enjournal.services.velferdsteknologi import alerts, rules
from enjournal.services.velferdsteknologi.web import charts, logic
from enjournal.web import FhirError, Page, Site, SiteConfig, View, entries
from enjournal.web.i18n import N_, OSLO

CONFIG = SiteConfig(
    name="oppfolging",
    path="/oppfolging",
    package=__package__ or "enjournal.services.velferdsteknologi.web",
    client_id="oppfolging",
    title="Oppfølgingssenter",
    # online_access: a refresh token, so a shift's session outlives one access token
    scopes="openid fhirUser online_access user/*.cruds",
    user_kinds=("personnel",),
    cookie="vkp_session",
)
ALERT_TASKS = ("identifier", f"{alerts.ALERT_ID}|")
OPEN_STATUSES = ",".join(logic.OPEN)
MANY = "200"  # the most of one kind a page reads (a municipality's open alerts fit)


# What the pages name by code, as messages of the catalogues (translated where shown).
LABELS = {
    "kind": {
        "threshold": N_("Threshold crossed"),
        "news2": N_("NEWS2 score"),
        "missing-measurement": N_("Measurement missing"),
        "silent-device": N_("Device silent"),
        "safety-alarm": N_("Safety alarm"),
    },
    "priority": {
        "routine": N_("routine"),
        "urgent": N_("urgent"),
        "asap": N_("as soon as possible"),
        "stat": N_("immediately"),
    },
    "status": {
        "requested": N_("new"),
        "accepted": N_("acknowledged"),
        "in-progress": N_("help has arrived"),
        "completed": N_("closed"),
        "cancelled": N_("cancelled"),
    },
    "severity": {"low": N_("low"), "moderate": N_("moderate"), "high": N_("high")},
    "risk": {
        "low": N_("low"),
        "low-medium": N_("low-medium"),
        "medium": N_("medium"),
        "high": N_("high"),
    },
    "side": {"low": N_("lower limit"), "high": N_("upper limit")},
}


class CentreView(View):
    """A page of the centre: every template also gets the labels and the time now."""

    def context(self) -> dict:
        return {"labels": LABELS, "series_names": charts.SERIES_NAMES, "now": now()}


def routes(site: Site) -> list[Page]:
    return [
        ("/", site.page(home, login=False), ["GET"]),
        ("/pasient/{id}", site.page(patient), ["GET"]),
        ("/varsel/{id}/kvitter", site.page(acknowledge), ["POST"]),
        ("/varsel/{id}/ankommet", site.page(arrived), ["POST"]),
        ("/varsel/{id}/lukk", site.page(close), ["POST"]),
    ]


def now() -> datetime:
    return datetime.now(UTC)


# --- the overview ----------------------------------------------------------------------------


async def home(view: View):
    if not view.session.logged_in:
        return "start.html"
    at = now()
    patients = await followed_patients(view)
    open_alerts = await open_alerts_of(view, at)
    names = {str(p.get("id")): logic.patient_name(p) for p in patients}
    news2 = await latest_news2(view, [str(p.get("id")) for p in patients], at)
    view.data["patients"] = logic.followed(patients, open_alerts, news2, at)
    view.data["alerts"] = open_alerts
    view.data["names"] = names
    return "overview.html"


async def followed_patients(view: View) -> list[dict]:
    """The subjects of the active care plans, those the user may read (policy: the patients
    of their own service).  Health personnel search a record's resources one patient at a
    time, so the plans are found from the patients' side (``_has``), not ``CarePlan?``."""
    params = [("_has:CarePlan:subject:status", "active"), ("_count", MANY)]
    return entries(await view.fhir.get("Patient", params), "Patient")


async def open_alerts_of(view: View, at: datetime) -> list[logic.Alert]:
    params = [ALERT_TASKS, ("status", OPEN_STATUSES), ("_include", "Task:focus")]
    bundle = await view.fhir.get("Task", [*params, ("_count", MANY)])
    return logic.alerts_of(entries(bundle, "Task"), entries(bundle, "DetectedIssue"), at)


async def latest_news2(view: View, patient_ids: list[str], at: datetime) -> dict:
    """Each patient's NEWS2 of their newest vital signs of the last day (one search per
    patient: personnel search a record one patient at a time)."""
    since = (at - timedelta(days=1)).isoformat()
    found = {}
    for pid in patient_ids:
        params = [("subject", f"Patient/{pid}"), ("category", "vital-signs")]
        params += [("date", f"ge{since}"), ("_count", "500")]
        bundle = await view.fhir.get("Observation", params)
        score = logic.latest_news2(entries(bundle, "Observation"))
        if score is not None:
            found[pid] = score
    return found


# --- one patient -----------------------------------------------------------------------------


async def patient(view: View) -> str:
    pid = view.request.path_params["id"]
    at = now()
    found = await view.fhir.get(f"Patient/{pid}")  # another municipality's: the 404 page
    observations = await recent_observations(view, pid, at)
    goals = entries(await view.fhir.get("Goal", [("subject", f"Patient/{pid}")]), "Goal")
    limits, problems = rules.thresholds(goals)
    view.data.update(
        patient=found,
        name=logic.patient_name(found),
        age=logic.age_in_years(found.get("birthDate"), at.date()),
        charts=charts.charts(logic.readings_of(observations), limits, at.astimezone(OSLO)),
        goals=goals,
        limits=limits,
        problems=problems,
        plans=await care_plans(view, pid),
        alerts=await alerts_of_patient(view, pid, at),
        observations={str(o.get("id")): o for o in observations},
    )
    return "patient.html"


async def recent_observations(view: View, pid: str, at: datetime) -> list[dict]:
    since = (at - timedelta(days=charts.DAYS)).isoformat()
    params = [("subject", f"Patient/{pid}"), ("date", f"ge{since}"), ("_count", "1000")]
    return entries(await view.fhir.get("Observation", params), "Observation")


async def care_plans(view: View, pid: str) -> list[dict]:
    params = [("subject", f"Patient/{pid}"), ("status", "active")]
    return entries(await view.fhir.get("CarePlan", params), "CarePlan")


async def alerts_of_patient(view: View, pid: str, at: datetime) -> list[logic.Alert]:
    params = [ALERT_TASKS, ("patient", f"Patient/{pid}"), ("_include", "Task:focus")]
    bundle = await view.fhir.get("Task", [*params, ("_sort", "-authored-on"), ("_count", MANY)])
    return logic.alerts_of(entries(bundle, "Task"), entries(bundle, "DetectedIssue"), at)


# --- the steps on an alert -------------------------------------------------------------------


async def acknowledge(view: View) -> Response:
    return await _step(view, "$vkp-acknowledge", view.t("The alert is acknowledged."))


async def arrived(view: View) -> Response:
    return await _step(view, "$vkp-arrived", view.t("Arrival at the patient is recorded."))


async def close(view: View) -> Response:
    action = view.field("action")
    if not action:
        return view.back(_back(view), view.t("Say what was done before closing the alert."))
    return await _step(view, "$vkp-close", view.t("The alert is closed."), action=action)


async def _step(view: View, operation: str, done: str, **parameters: str) -> Response:
    task_id = view.request.path_params["id"]
    try:
        await view.fhir.operation(f"Task/{task_id}/{operation}", **parameters)
    except FhirError as error:
        if error.status != 409:
            raise
        # Someone else took a step first (the alert moved on): say so, not an error page.
        return view.back(_back(view), view.t("The alert had changed meanwhile: see it now."))
    return view.back(_back(view), done)


def _back(view: View) -> str:
    """The page the form came from: the overview or a patient's page (nothing else)."""
    back = view.field("back")
    if back.startswith("/pasient/") and "/" not in back.removeprefix("/pasient/"):
        return back
    return "/"
