"""Velferdsteknologi's rule inside the general FHIR API (a guard hook): a reading from a
home device is written only for the patient the device is assigned to.

Only home follow-up devices are checked (a Device with the identifier system
``HOME_DEVICE``); an Observation from another device (a hospital's monitor) is not this
service's business.  The assignment is the Device itself: ``Device.patient`` (R4: "patient
to whom Device is affixed") while ``Device.status`` is ``active``; reassigning a device is
an update of the Device, so its history keeps who had it when.  The check runs for every
Observation that names a home device, whichever way it came (a gateway's HTTP batch, the
MQTT consumer), and also checks the reading itself (``readings.check_observation``): a
refusal of content is a 422 naming the reason, a device writing for someone else a 403,
both audited.
"""

from __future__ import annotations

from enjournal.fhir import jsonio
from enjournal.fhir.errors import Gone, NotFound, Unprocessable
from enjournal.services.velferdsteknologi import readings
from enjournal.services.velferdsteknologi.hub import HUB_CLIENT

MARKER = b"Device/"  # absent from the stored JSON: no device, nothing to check
# A home follow-up device is registered with this identifier system (its serial number).
HOME_DEVICE = "urn:enjournal:vkp:device"


def assigned_patient(device: dict) -> str | None:
    """The id of the Patient a device is assigned to (``Device.patient``), if any."""
    reference = (device.get("patient") or {}).get("reference") or ""
    return reference.removeprefix("Patient/") if reference.startswith("Patient/") else None


def is_home_device(device: dict) -> bool:
    return any(i.get("system") == HOME_DEVICE for i in device.get("identifier") or ())


async def check(guard, tx, action: str, resource: dict, patients) -> str | None:
    if action not in ("c", "u") or resource.get("resourceType") != "Observation":
        return None
    named = resource.get("device") or {}
    if _names_home_device_by_identifier(named):
        raise Unprocessable("name a home device by its reference Device/<id>")
    reference, device_id = _local_device(named.get("reference"))
    if device_id is None:
        return None
    device = await _device(guard, tx, device_id)
    if device is None and "://" in reference:
        return None  # another server's device (an absolute URL we do not hold)
    if device is None:  # a reading from a device nobody registered is nobody's to trust
        raise Unprocessable(f"unknown device {reference}")
    if not is_home_device(device):
        return None  # another kind of device (a hospital's monitor): not ours to check
    if device.get("status") != "active":
        raise Unprocessable(f"the device {reference} is not in use")
    assigned = assigned_patient(device)
    if not assigned or f"Patient/{assigned}" != (resource.get("subject") or {}).get("reference"):
        return "the device is not assigned to this patient"
    try:
        readings.check_observation(resource)
    except readings.Refused as refused:
        raise Unprocessable(f"reading refused ({refused.code}): {refused}") from None
    if readings.reading_key(resource) is None:
        raise Unprocessable("a device reading needs its stable identifier (Observation.identifier)")
    return None


def _local_device(reference: object) -> tuple[str, str | None]:
    """The reference and the id of the Device it names, also when written as an absolute
    URL (``https://host/fhir/Device/<id>``): the check must not be one spelling away."""
    if not isinstance(reference, str):
        return "", None
    parts = reference.split("/")
    if reference.startswith("Device/") and len(parts) == 2:
        return reference, parts[1]
    if "://" in reference and len(parts) >= 2 and parts[-2] == "Device" and parts[-1]:
        return reference, parts[-1]
    if reference.startswith("Device/"):  # Device/<id>/_history/<n> and the like
        return reference, parts[1]
    return reference, None


def _names_home_device_by_identifier(named: dict) -> bool:
    ident = named.get("identifier") if isinstance(named, dict) else None
    return isinstance(ident, dict) and ident.get("system") == HOME_DEVICE


async def _device(guard, tx, device_id: str) -> dict | None:
    """The Device, read once per request (a group of readings names the same few)."""
    cache = guard.request_cache.setdefault("vkp-devices", {})
    if device_id not in cache:
        try:
            cache[device_id] = jsonio.loads((await tx.read("Device", device_id)).content)
        except (NotFound, Gone):
            cache[device_id] = None
    return cache[device_id]


ALERT_MARKER = b"urn:enjournal:vkp:alert"  # alerts.ALERT_ID, in the stored JSON


async def alerts_by_the_hub(guard, tx, action: str, resource: dict, patients) -> str | None:
    """Only the hub raises alerts: a DetectedIssue or Task carrying the alert identifier
    is created by the hub's system client (the staff change them through the steps)."""
    if action != "c" or resource.get("resourceType") not in ("DetectedIssue", "Task"):
        return None
    if not any(i.get("system") == ALERT_MARKER.decode() for i in resource.get("identifier") or ()):
        return None
    if guard.principal.kind == "system" and guard.principal.client_id == HUB_CLIENT:
        return None
    return "follow-up alerts are raised by the hub (urn:enjournal:vkp:alert is reserved)"
