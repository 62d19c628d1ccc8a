"""The rules of the GP office's digital services on helsenorge (domain.md 4.1 and 10), as
pure functions over resources: what a message, a booking, a cancellation and a form answer
must hold, and the resources they become.  ``gp.py`` reads and writes; nothing here touches
the store.
"""

from __future__ import annotations

from datetime import datetime

from enjournal.fhir.errors import Conflict, Invalid, Unprocessable

TOPIC_SYSTEM = "https://enjournal.no/fhir/CodeSystem/helsenorge-message-topic"
TOPICS = {
    "dialog": "Dialog med legekontoret",
    "e-konsultasjon": "E-konsultasjon",
    "fornyelse": "Fornyelse av resept",
    # Only a health worker the citizen has not blocked lifts a block (domain.md 2.3).
    "oppheve-blokkering": "Oppheve blokkering i kjernejournal",
}
# A message is a few paragraphs; the GP office reads it, a document belongs elsewhere.
MAX_TEXT = 4000
MAX_COMMENT = 500
# Appointment status a patient may still cancel.
CANCELLABLE = frozenset({"proposed", "pending", "booked"})
SERVICE_TYPE = {"text": "Time hos fastlege"}


# ---- references ---------------------------------------------------------------------------


def reference(value, type_: str, name: str) -> str:
    """The id in a ``valueReference`` (or reference string) to ``type_``; Invalid if the
    parameter names anything else."""
    if isinstance(value, dict):
        value = value.get("reference")
    if not isinstance(value, str):
        raise Invalid(f"'{name}' must be a reference to a {type_}, e.g. {type_}/123")
    kind, _, id_ = value.rpartition("/")
    if kind.rsplit("/", 1)[-1] != type_ or not id_:
        raise Invalid(f"'{name}' must be a reference to a {type_}, e.g. {type_}/123")
    return id_


def refers_to(resource: dict, path: str, ref: str) -> bool:
    """Whether ``resource[path]`` (a Reference) is ``ref`` ("Patient/123")."""
    return ((resource.get(path) or {}).get("reference") or "").endswith(ref)


def subject_patient(resource: dict) -> str | None:
    """The id of the Patient a resource's ``subject`` names (a message, a prescription)."""
    ref = (resource.get("subject") or {}).get("reference") or ""
    return ref.split("/", 1)[1] if ref.startswith("Patient/") else None


# ---- messages -----------------------------------------------------------------------------


def message_text(value) -> str:
    """The message's text: present, not blank, at most ``MAX_TEXT`` characters."""
    if not isinstance(value, str) or not value.strip():
        raise Invalid("$message-gp needs the message in 'text' (valueString)")
    text = value.strip()
    if len(text) > MAX_TEXT:
        raise Unprocessable(f"the message is {len(text)} characters; at most {MAX_TEXT}")
    return text


def message_topic(value) -> str:
    if value is None:
        return "dialog"
    if value not in TOPICS:
        raise Invalid(f"'topic' must be one of {', '.join(TOPICS)}")
    return value


def communication(
    patient_id: str,
    sender: str,
    recipients: list[str],
    text: str,
    topic: str,
    now: datetime,
    *,
    in_response_to: str | None = None,
    about: str | None = None,
) -> dict:
    """The Communication a citizen's message becomes: to the patient's GP (and office)."""
    resource: dict = {
        "resourceType": "Communication",
        "status": "completed",
        "category": [
            {"coding": [{"system": TOPIC_SYSTEM, "code": topic, "display": TOPICS[topic]}]}
        ],
        "subject": {"reference": f"Patient/{patient_id}"},
        "sent": instant(now),
        "recipient": [{"reference": r} for r in recipients],
        "sender": {"reference": sender},
        "payload": [{"contentString": text}],
    }
    if in_response_to:
        resource["inResponseTo"] = [{"reference": in_response_to}]
    if about:
        resource["about"] = [{"reference": about}]
    return resource


def gp_references(patient: dict) -> list[str]:
    """The patient's GP (fastlege) and office, as listed on the Patient."""
    refs = [(g.get("reference") or "") for g in patient.get("generalPractitioner", [])]
    return [r for r in refs if r.startswith(("Practitioner/", "Organization/"))]


def require_gp(patient_id: str, gps: list[str]) -> None:
    if not gps:
        raise Unprocessable(
            f"Patient/{patient_id} has no GP (fastlege) registered: the GP office's digital "
            "services need one"
        )


# ---- appointments -------------------------------------------------------------------------


def instant(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def parse_instant(value) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        return None
    return moment if moment is None or moment.tzinfo else None


def check_bookable(slot: dict, schedule: dict, gps: list[str], now: datetime) -> None:
    """A slot the patient may book: of their own GP's schedule (``gps``: the GP, the GP's
    roles, the office's roles), in the future, free."""
    actors = {(a.get("reference") or "") for a in schedule.get("actor", [])}
    if not actors & set(gps):
        raise Unprocessable(f"Slot/{slot.get('id')} is not in your GP's (fastlege) schedule")
    start = parse_instant(slot.get("start"))
    if start is None or start <= now:
        raise Unprocessable(f"Slot/{slot.get('id')} has already started or passed")
    if slot.get("status") != "free":
        raise Conflict(f"Slot/{slot.get('id')} is no longer free")


def appointment(
    patient_id: str, slot: dict, schedule: dict, comment: str | None, now: datetime
) -> dict:
    """The booked Appointment: the patient (accepted) with the schedule's practitioners."""
    participants = [
        {
            "actor": {"reference": f"Patient/{patient_id}"},
            "required": "required",
            "status": "accepted",
        }
    ]
    for actor in schedule.get("actor", []):
        if (actor.get("reference") or "").startswith("Practitioner/"):
            participants.append(
                {
                    "actor": {"reference": actor["reference"]},
                    "required": "required",
                    "status": "accepted",
                }
            )
    resource: dict = {
        "resourceType": "Appointment",
        "status": "booked",
        "serviceType": slot.get("serviceType") or [SERVICE_TYPE],
        "start": slot["start"],
        "end": slot["end"],
        "slot": [{"reference": f"Slot/{slot['id']}"}],
        "created": instant(now)[:10],
        "participant": participants,
    }
    if slot.get("appointmentType"):
        resource["appointmentType"] = slot["appointmentType"]
    if comment:
        resource["comment"] = comment_text(comment)
    return resource


def comment_text(value) -> str:
    if not isinstance(value, str):
        raise Invalid("'comment' must be a valueString")
    if len(value.strip()) > MAX_COMMENT:
        raise Unprocessable(f"the comment is longer than {MAX_COMMENT} characters")
    return value.strip()


def is_participant(appointment_: dict, patient_ref: str) -> bool:
    return any(
        (p.get("actor") or {}).get("reference") == patient_ref
        for p in appointment_.get("participant", [])
    )


def cancel(appointment_: dict, reason: str | None, now: datetime) -> None:
    """Cancel a future appointment in place (status cancelled, the reason given)."""
    if appointment_.get("status") not in CANCELLABLE:
        raise Conflict(f"the appointment is {appointment_.get('status')}, not booked")
    start = parse_instant(appointment_.get("start"))
    if start is None or start <= now:
        raise Unprocessable("only a future appointment can be cancelled")
    appointment_["status"] = "cancelled"
    appointment_["cancelationReason"] = {"text": (reason or "Avbestilt av pasienten").strip()}


def booked_slots(appointment_: dict) -> list[str]:
    refs = [(s.get("reference") or "") for s in appointment_.get("slot", [])]
    return [r.split("/", 1)[1] for r in refs if r.startswith("Slot/")]


# ---- forms --------------------------------------------------------------------------------

# Questionnaire item type -> the answer value[x] it takes.
ANSWER_TYPES = {
    "boolean": ("valueBoolean",),
    "decimal": ("valueDecimal",),
    "integer": ("valueInteger",),
    "date": ("valueDate",),
    "dateTime": ("valueDateTime",),
    "time": ("valueTime",),
    "string": ("valueString",),
    "text": ("valueString",),
    "url": ("valueUri",),
    "choice": ("valueCoding", "valueString", "valueInteger", "valueDate", "valueTime"),
    "open-choice": ("valueCoding", "valueString"),
    "attachment": ("valueAttachment",),
    "reference": ("valueReference",),
    "quantity": ("valueQuantity",),
}


def check_answers(questionnaire: dict, response: dict) -> None:
    """Unprocessable, naming the item, unless ``response`` answers ``questionnaire``: every
    linkId known, required items answered, answers of the item's type, choices among the
    answer options, one answer unless the item repeats."""
    _check_items(questionnaire.get("item", []), response.get("item", []), "")


def _check_items(defined: list[dict], given: list[dict], where: str) -> None:
    by_id = {d.get("linkId"): d for d in defined}
    seen: set[str | None] = set()
    for item in given:
        link = item.get("linkId")
        if link not in by_id:
            raise Unprocessable(f"item {link!r}{where} is not in the questionnaire")
        if link in seen and not by_id[link].get("repeats"):
            raise Unprocessable(f"item {link!r}{where} is given more than once")
        seen.add(link)
        _check_item(by_id[link], item)
    for link, item in by_id.items():
        if item.get("required") and link not in seen and _answerable(item):
            raise Unprocessable(f"item {link!r} ({item.get('text', '')}) is required")


def _answerable(item: dict) -> bool:
    return item.get("type") != "display" and not item.get("readOnly")


def _check_item(defined: dict, item: dict) -> None:
    link, kind = defined["linkId"], defined.get("type")
    answers = item.get("answer", [])
    if kind in ("group", "display"):
        if answers:
            raise Unprocessable(f"item {link!r} is a {kind} and takes no answer")
        _check_items(defined.get("item", []), item.get("item", []), f" (in {link!r})")
        return
    if defined.get("required") and not answers:
        raise Unprocessable(f"item {link!r} ({defined.get('text', '')}) is required")
    if len(answers) > 1 and not defined.get("repeats"):
        raise Unprocessable(f"item {link!r} takes one answer")
    for answer in answers:
        _check_answer(defined, answer)
        _check_items(defined.get("item", []), answer.get("item", []), f" (in {link!r})")


def _check_answer(defined: dict, answer: dict) -> None:
    link, kind = defined["linkId"], defined.get("type")
    values = [k for k in answer if k.startswith("value")]
    allowed = ANSWER_TYPES.get(kind or "", ())
    if len(values) != 1 or values[0] not in allowed:
        raise Unprocessable(f"item {link!r} is of type {kind}: answer with {' or '.join(allowed)}")
    options = defined.get("answerOption")
    if kind == "choice" and options and not _among(answer[values[0]], values[0], options):
        raise Unprocessable(f"the answer to item {link!r} is not one of its options")


def _among(value, key: str, options: list[dict]) -> bool:
    for option in options:
        offered = option.get(key)
        if offered is None:
            continue
        if key == "valueCoding":
            if (offered.get("system"), offered.get("code")) == (
                value.get("system"),
                value.get("code"),
            ):
                return True
        elif offered == value:
            return True
    return False


def questionnaire_canonical(questionnaire: dict) -> str:
    url = questionnaire.get("url")
    if not url:
        return f"Questionnaire/{questionnaire['id']}"
    version = questionnaire.get("version")
    return f"{url}|{version}" if version else url


def form_answer(
    response: dict, questionnaire: dict, patient_id: str, author: str, now: datetime
) -> dict:
    """The QuestionnaireResponse as stored: completed, for the patient, by the author."""
    out = {
        k: v
        for k, v in response.items()
        if k
        not in ("id", "meta", "status", "subject", "author", "authored", "questionnaire", "source")
    }
    if isinstance(out.get("item"), list):
        # The texts shown with the answers are the form's own, not the caller's.
        out["item"] = _with_form_texts(out["item"], _form_texts(questionnaire.get("item")))
    out.update(
        resourceType="QuestionnaireResponse",
        questionnaire=questionnaire_canonical(questionnaire),
        status="completed",
        subject={"reference": f"Patient/{patient_id}"},
        authored=instant(now),
        author={"reference": author},
        source={"reference": author},  # who gave the answers: the acting citizen
    )
    return out


def _form_texts(items) -> dict[str, str]:
    """linkId -> text of the Questionnaire's items, nested ones included."""
    texts: dict[str, str] = {}
    for item in items if isinstance(items, list) else ():
        if isinstance(item, dict):
            if isinstance(item.get("linkId"), str) and isinstance(item.get("text"), str):
                texts[item["linkId"]] = item["text"]
            texts.update(_form_texts(item.get("item")))
    return texts


def _with_form_texts(items: list, texts: dict[str, str]) -> list:
    """The answer items with each ``text`` taken from the form (left out if it has none)."""
    out = []
    for item in items:
        if not isinstance(item, dict):
            out.append(item)
            continue
        item = {k: v for k, v in item.items() if k != "text"}
        if item.get("linkId") in texts:
            item["text"] = texts[item["linkId"]]
        if isinstance(item.get("item"), list):
            item["item"] = _with_form_texts(item["item"], texts)
        if isinstance(item.get("answer"), list):
            item["answer"] = [_answer_with_texts(a, texts) for a in item["answer"]]
        out.append(item)
    return out


def _answer_with_texts(answer, texts: dict[str, str]):
    if isinstance(answer, dict) and isinstance(answer.get("item"), list):
        return {**answer, "item": _with_form_texts(answer["item"], texts)}
    return answer
