"""The citizen portal as a site of ``enjournal.web``: its settings (path, client, scopes,
cookie; citizens only), its login step (the citizen's own Patient) and its View (whom the
citizen acts for: ``view.patient``).

Sessions, login, CSRF, rendering and the security headers are ``enjournal.web``'s; what
the portal keeps in a session of its own is in ``session.data``: ``self_patient`` (the
citizen's own Patient id), ``acting_for`` and ``acting_name`` (whose pages these are, when
not the citizen's own).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from enjournal import web
from enjournal.web import FhirClient, LoginFailed, Session, Site, SiteConfig

# What a citizen does on the portal: read their record; change privacy settings (Consent),
# lock a prescription, their own kjernejournal registrations and power of attorney
# (RelatedPerson); write to the GP office, book appointments and answer forms.
SCOPES = (
    "openid fhirUser launch/patient online_access patient/*.rs patient/Consent.cu "
    "patient/MedicationRequest.u patient/Condition.cud patient/RelatedPerson.cud "
    "patient/Flag.cud patient/Communication.c patient/Appointment.cu "
    "patient/QuestionnaireResponse.c"
)


async def _citizen_logged_in(site: Site, session: Session, principal) -> None:
    """Only citizens with a national id; their own Patient kept in the session."""
    if not principal.pid:
        raise LoginFailed("only citizens log in to the portal")
    own = principal.patient or await _own_patient(site, session)
    session.data["self_patient"] = own


async def _own_patient(site: Site, session: Session) -> str:
    """The citizen's Patient id when the token names none (an issuer without SMART launch
    context): the ``self`` entry of ``Patient/$represented``."""
    fhir = FhirClient(site.platform, session.access_token or "")
    answer = await fhir.get("Patient/$represented")
    for part in answer.get("parameter") or ():
        fields = {p.get("name"): p for p in part.get("part") or ()}
        if code(fields.get("relation")) == "self":
            reference = (fields.get("patient") or {}).get("valueReference") or {}
            session.name = session.name or reference.get("display")
            return (reference.get("reference") or "").removeprefix("Patient/")
    raise LoginFailed("no record of this citizen")


def code(part: dict | None) -> str:
    """A Parameters part's code (``valueCode``, or ``valueString``)."""
    part = part or {}
    return str(part.get("valueCode") or part.get("valueString") or "")


CONFIG = SiteConfig(
    name="helsenorge",
    path="/helsenorge",
    package=__package__ or "enjournal.services.helsenorge.web",
    client_id="helsenorge",
    title="Helsenorge",
    scopes=SCOPES,
    user_kinds=("citizen",),  # ID-porten serves citizens only: a health worker is refused
    cookie="hn_session",
    idle_seconds=30 * 60,  # helsenorge logs out after 30 minutes without activity [assumed]
    # The login's refresh grant (``online_access``) lasts an hour at the embedded provider;
    # the session ends with it, whatever the activity.
    grant_seconds=3600,
    on_login=_citizen_logged_in,
)
PATH = CONFIG.path


@dataclass
class View(web.View):
    """A portal page request: the citizen's own Patient and whom they act for."""

    @property
    def self_patient(self) -> str | None:
        return self.session.data.get("self_patient")

    @property
    def acting_for(self) -> str | None:
        return self.session.data.get("acting_for")

    @property
    def patient(self) -> str:
        """The Patient id whose pages these are."""
        return self.acting_for or self.self_patient or ""

    def act_for(self, patient: str | None, name: str | None) -> None:
        """Whose pages these are from now on (None: the citizen's own)."""
        self.session.data["acting_for"], self.session.data["acting_name"] = patient, name

    def context(self) -> dict[str, Any]:
        return {
            "self_patient": self.self_patient,
            "acting_for": self.acting_for,
            "acting_name": self.session.data.get("acting_name"),
        }
