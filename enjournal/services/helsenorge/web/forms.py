"""Forms on the portal: a FHIR Questionnaire filled in and submitted as a
QuestionnaireResponse (``Questionnaire/[id]/$submit``, which checks the answers)."""

from __future__ import annotations

from enjournal.services.helsenorge.web.portal import View
from enjournal.web import Site, entries

FIELD_TYPES = {
    "string": "text",
    "text": "textarea",
    "integer": "number",
    "decimal": "number",
    "date": "date",
    "boolean": "boolean",
    "choice": "choice",
}


def routes(site: Site) -> list:
    return [
        ("/skjema", site.page(forms), ["GET"]),
        ("/skjema/{id}", site.page(form), ["GET", "POST"]),
    ]


async def forms(view: View) -> str:
    found = await view.fhir.get("Questionnaire", [("status", "active"), ("_count", "50")])
    view.data["forms"] = [
        {"id": q.get("id"), "title": q.get("title") or q.get("name") or q.get("id")}
        for q in entries(found, "Questionnaire")
    ]
    params = [("subject", f"Patient/{view.patient}"), ("_sort", "-authored"), ("_count", "50")]
    answered = await view.fhir.get("QuestionnaireResponse", params)
    view.data["answered"] = entries(answered, "QuestionnaireResponse")
    return "forms.html"


async def form(view: View):
    questionnaire = await view.fhir.get(f"Questionnaire/{view.request.path_params['id']}")
    if view.request.method == "POST":
        await view.fhir.operation(
            f"Questionnaire/{questionnaire['id']}/$submit",
            patient={"reference": f"Patient/{view.patient}"},
            response=response(questionnaire, view),
        )
        return view.back("/skjema", view.t("The form is sent."))
    view.data["questionnaire"] = questionnaire
    view.data["items"] = [_field(i) for i in _items(questionnaire)]
    return "form.html"


def _items(questionnaire: dict) -> list[dict]:
    return [i for i in questionnaire.get("item") or () if i.get("type") in FIELD_TYPES]


def _field(item: dict) -> dict:
    options = [
        (
            o["valueCoding"].get("code"),
            o["valueCoding"].get("display") or o["valueCoding"].get("code"),
        )
        for o in item.get("answerOption") or ()
        if "valueCoding" in o
    ]
    return {
        "link": item.get("linkId"),
        "text": item.get("text") or item.get("linkId"),
        "kind": FIELD_TYPES[item["type"]],
        "required": bool(item.get("required")),
        "options": options,
    }


def response(questionnaire: dict, view: View) -> dict:
    """The answers as a QuestionnaireResponse; the operation checks them against the form."""
    items = []
    for item in _items(questionnaire):
        answer = _answer(item, view.field(f"q-{item.get('linkId')}"))
        if answer is not None:
            items.append({"linkId": item["linkId"], "text": item.get("text"), "answer": [answer]})
    return {
        "resourceType": "QuestionnaireResponse",
        "questionnaire": questionnaire.get("url") or f"Questionnaire/{questionnaire['id']}",
        "status": "completed",
        "item": items,
    }


def _answer(item: dict, raw: str) -> dict | None:
    kind = item["type"]
    if raw == "":
        return None
    if kind == "boolean":
        return {"valueBoolean": raw == "true"}
    if kind == "integer":
        return {"valueInteger": int(raw)} if _is_integer(raw) else {"valueString": raw}
    if kind == "decimal":
        return (
            {"valueDecimal": float(raw.replace(",", "."))}
            if _is_number(raw)
            else {"valueString": raw}
        )
    if kind == "date":
        return {"valueDate": raw}
    if kind == "choice":
        coding = next(
            (
                o["valueCoding"]
                for o in item.get("answerOption") or ()
                if (o.get("valueCoding") or {}).get("code") == raw
            ),
            {"code": raw},
        )
        return {"valueCoding": coding}
    return {"valueString": raw}


def _is_integer(raw: str) -> bool:
    """A whole number FHIR's integer holds (32-bit); anything else goes to the operation as
    text, which it refuses with the item named (``isdigit`` alone takes "²")."""
    digits = raw.removeprefix("-")
    return digits.isascii() and digits.isdigit() and len(digits) <= 10 and abs(int(raw)) < 2**31


def _is_number(raw: str) -> bool:
    try:
        number = float(raw.replace(",", "."))
    except ValueError:
        return False
    return raw.isascii() and abs(number) < 1e15
