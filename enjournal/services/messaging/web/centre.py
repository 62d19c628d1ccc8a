"""The message centre as a site of ``enjournal.web``: its settings (path, client, scopes,
cookie; health personnel of an organisation with a HER-id) and its pages: the inbox and the
sent messages of the user's organisation's parties, one message's content, marking it read
and answering it with an application receipt.  Every answer comes from messaging's FHIR
operations (``$messages``, ``$message``, ``$message-status``, ``$message-read``,
``$message-receipt``) through the user's own FHIR client: policy and audit as on the API.
"""

from __future__ import annotations

import orjson
from starlette.responses import Response

from enjournal.fhir.norwegian_ids import OID_HER_ID, OID_ORGNR
from enjournal.rest.message import FhirRequest
from enjournal.services.messaging import rules
from enjournal.services.messaging.addresses import her_id_of, party_name
from enjournal.services.messaging.web import content
from enjournal.web import FhirError, LoginFailed, Page, Site, SiteConfig, View, entries
from enjournal.web.i18n import N_


async def _personnel_logged_in(site: Site, session, principal) -> None:
    """Keep the organisation the token names: its HER-id and organisation number."""
    if not principal.her_id and not principal.org_nr:
        raise LoginFailed("the token names no organisation (HER-id or organisation number)")
    session.data["her_id"] = principal.her_id or ""
    session.data["org_nr"] = principal.org_nr or ""


CONFIG = SiteConfig(
    name="meldinger",
    path="/meldinger",
    package=__package__ or "enjournal.services.messaging.web",
    client_id="meldinger",
    title="Meldingssenter",
    # online_access: a refresh token, so a working day's session outlives one access token
    scopes="openid fhirUser online_access user/*.cruds",
    user_kinds=("personnel",),
    cookie="msg_session",
    on_login=_personnel_logged_in,
)
MAX_PARTIES = 20  # the organisation's parties a page lists messages of
MAX_NAMES = 60  # the other parties a page looks up by HER-id
PARTY_TYPES = ("Organization", "HealthcareService", "PractitionerRole")


class CentreView(View):
    """A page of the message centre: every template also gets the labels."""

    def context(self) -> dict:
        return {
            "types": content.TYPES,
            "states": content.STATES,
            "receipts": content.RECEIPTS,
            "error_codes": rules.ERRORS,
        }


def routes(site: Site) -> list[Page]:
    return [
        ("/", site.page(inbox, login=False), ["GET"]),
        ("/sendt", site.page(sent), ["GET"]),
        ("/melding/{id}", site.page(message), ["GET"]),
        ("/melding/{id}/lest", site.page(mark_read), ["POST"]),
        ("/melding/{id}/kvittering", site.page(receipt), ["POST"]),
    ]


# --- the organisation's parties --------------------------------------------------------------


async def my_parties(view: View) -> dict[str, str]:
    """HER-id -> name of the parties the user acts for: the token's HER-id, and those of
    the organisation of its organisation number (itself and its services)."""
    found: dict[str, str] = {}
    her_id = str(view.session.data.get("her_id") or "")
    if her_id:
        found[her_id] = ""
    org_nr = str(view.session.data.get("org_nr") or "")
    if org_nr:
        bundle = await view.fhir.get("Organization", [("identifier", f"{OID_ORGNR}|{org_nr}")])
        organisations = entries(bundle, "Organization")
        _add_parties(found, organisations)
        await _add_services(view, found, [str(o.get("id")) for o in organisations])
    return dict(list(found.items())[:MAX_PARTIES])


async def _add_services(view: View, found: dict[str, str], organisation_ids: list[str]) -> None:
    if not organisation_ids:
        return
    owners = ",".join(f"Organization/{i}" for i in organisation_ids)
    params = [("organization", owners), ("_count", str(MAX_PARTIES))]
    _add_parties(found, entries(await view.fhir.get("HealthcareService", params)))


def _add_parties(found: dict[str, str], resources: list[dict]) -> None:
    for resource in resources:
        her_id = her_id_of(resource)
        if her_id:
            found[her_id] = found.get(her_id) or str(resource.get("name") or "")


async def party_names(view: View, her_ids: set[str], known: dict[str, str]) -> dict[str, str]:
    """HER-id -> the party's name in the address register ("" where it is not found)."""
    names = {h: n for h, n in known.items() if n}
    for her_id in sorted(her_ids - set(names))[:MAX_NAMES]:
        names[her_id] = await _party_name(view, her_id)
    return names


async def _party_name(view: View, her_id: str) -> str:
    for kind in PARTY_TYPES:
        bundle = await view.fhir.get(kind, [("identifier", f"{OID_HER_ID}|{her_id}")])
        for resource in entries(bundle, kind):
            return party_name(resource)
    return ""


# --- the lists -------------------------------------------------------------------------------


async def listing(view: View, box: str, unread: bool = False) -> list[content.Summary]:
    """The messages of every party of the user's in ``box`` (inbox or sent), receipts left
    out (they show as the receipt status of the message they answer)."""
    parties = await my_parties(view)
    view.data["parties"] = parties
    found: list[content.Summary] = []
    for her_id in parties:
        params = [("party", her_id), ("box", box), ("_count", "200")]
        if unread:
            params.append(("unread", "true"))
        try:
            answer = await view.fhir.get("$messages", params)
        except FhirError as error:
            if error.status not in (403, 404):
                raise
            continue  # a party of the organisation the user may not act for
        found += [s for s in content.summaries(answer) if s.type != rules.APPREC]
    return found


async def inbox(view: View):
    if not view.session.logged_in:
        return "start.html"
    unread = view.request.query_params.get("vis") == "uleste"
    found = content.newest_first(await listing(view, "inbox", unread), unread_first=True)
    view.data.update(messages=found, unread_only=unread)
    view.data["names"] = await _names(view, {s.sender for s in found})
    return "inbox.html"


async def sent(view: View) -> str:
    found = content.newest_first(await listing(view, "sent"))
    view.data["messages"] = found
    view.data["names"] = await _names(view, {s.receiver for s in found})
    return "sent.html"


async def _names(view: View, others: set[str]) -> dict[str, str]:
    parties = view.data["parties"]
    return await party_names(view, others | set(parties), parties)


# --- one message -----------------------------------------------------------------------------


async def message(view: View) -> str:
    message_id = view.request.path_params["id"]
    found = content.status(await view.fhir.get("$message-status", [("id", message_id)]))
    parties = await my_parties(view)
    received = found.receiver in parties and found.delivered is not None
    body, media = await message_body(view, message_id)
    view.data.update(
        message=found,
        received=received,
        answerable=received and found.type != rules.APPREC and found.receipt is None,
        names=await party_names(view, {found.sender, found.receiver}, parties),
    )
    view.data.update(readable(body, media))
    return "message.html"


def readable(body: bytes, media: str) -> dict:
    """``content``: what the message says, from its FHIR JSON or its KITH XML (read with
    messaging's hardened reader); ``xml``: the XML as text where the reader refuses it."""
    if media != rules.XML:
        return {"content": content.content_of(_json(body)), "xml": None}
    from enjournal.services.messaging.xml import from_xml

    try:
        return {"content": content.content_of(from_xml(body)), "xml": None}
    except rules.Rejection:
        shown = body[: content.MAX_TEXT * 5].decode("utf-8", "replace")
        return {"content": None, "xml": shown}


async def message_body(view: View, message_id: str) -> tuple[bytes, str]:
    """``$message`` as it was sent (FHIR JSON, or the XML of the EDI facade) and its media
    type: the in-process API with the user's token, as ``view.fhir`` calls it, but kept as
    bytes (``view.fhir`` reads JSON only)."""
    platform = view.site.platform
    try:
        principal = await platform.security.verifier.verify(view.session.access_token or "")
    except Exception:  # an expired or refused token: as view.fhir answers it
        raise FhirError(401, "the access token was refused") from None
    request = FhirRequest(
        "GET", ["$message"], [("id", message_id)], {"accept": "application/fhir+json"}, b"",
        platform.settings.fhir_base,
    )  # fmt: skip
    response = await platform.handle(request, principal)
    if response.status >= 400:
        raise FhirError(response.status, "the message was refused")
    media = (response.headers or {}).get("Content-Type", rules.FHIR_JSON)
    return bytes(response.body or b""), media


def _json(body: bytes) -> object:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


async def mark_read(view: View) -> Response:
    message_id = view.request.path_params["id"]
    await view.fhir.operation("$message-read", id=message_id)
    return view.back(f"/melding/{message_id}", view.t("The message is marked as read."))


async def receipt(view: View) -> Response:
    """The receiver's application receipt: OK, OK with an error in a part, or rejected
    with a code of kodeverk 8221 and a text."""
    message_id = view.request.path_params["id"]
    here = f"/melding/{message_id}"
    status, code, text = view.field("status"), view.field("code"), view.field("text")[:500]
    # An OK receipt carries no error; the others one, its text the code's own if none given
    errors = [[code, text or rules.ERRORS.get(code, "")]] if code and status != rules.OK else []
    problem = receipt_problem(status, errors)
    if problem:
        return view.back(here, view.t(problem))
    try:
        await view.fhir.post("$message-receipt", receipt_parameters(message_id, status, errors))
    except FhirError as error:
        if error.status != 409:
            raise
        return view.back(here, view.t("The message had been answered already."))
    return view.back(here, view.t("The receipt is sent."))


def receipt_problem(status: str, errors: list[list[str]]) -> str | None:
    """What the form lacks (a message of the catalogues), or None."""
    if status not in rules.STATUS_TEXT:
        return N_("Choose the receipt's status.")
    if status != rules.OK and not errors:
        return N_("A receipt that is not OK names an error code.")
    if any(code not in rules.ERRORS for code, _ in errors):
        return N_("Choose an error code from the list.")
    return None


def receipt_parameters(message_id: str, status: str, errors: list[list[str]]) -> dict:
    parts: list[dict] = [
        {"name": "message", "valueString": message_id},
        {"name": "status", "valueCode": status},
    ]
    for code, text in errors:
        error = [{"name": "code", "valueCode": code}, {"name": "text", "valueString": text}]
        parts.append({"name": "error", "part": error})
    return {"resourceType": "Parameters", "parameter": parts}
