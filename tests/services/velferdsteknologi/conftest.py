"""Velferdsteknologi's test world: a municipality's home follow-up with devices assigned to
patients, a secured platform for the hub, and a private Mosquitto broker that authenticates
each device and lets it publish only on its own topic (the machine's shared broker at 1883
lets anyone in, so the device checks are tested on a broker of our own)."""

from __future__ import annotations

import getpass
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from enjournal.bootstrap import compose, open_platform
from enjournal.security.setup import worker_security
from enjournal.settings import Settings

FNR = "urn:oid:2.16.578.1.12.4.1.4.1"
ORG = "urn:oid:2.16.578.1.12.4.1.4.101"
MUNICIPALITY = "964338531"  # a home-care service's organisation number (demo)
PATIENTS = {"vkp-pas-1": "13097248022", "vkp-pas-2": "01016010061"}
DEVICES = {"dev-oxi-1": "vkp-pas-1", "dev-bp-1": "vkp-pas-1", "dev-scale-2": "vkp-pas-2"}
CONSUMER = ("enjournal-consumer", "consumer-secret")
DEVICE_SECRET = "device-secret-"  # + device id: each device its own password


def patient(pid: str, fnr: str) -> dict:
    return {
        "resourceType": "Patient",
        "id": pid,
        "identifier": [{"system": FNR, "value": fnr}],
        "name": [{"family": "Hjemme", "given": [pid]}],
        "birthDate": "1972-09-13",
    }


def device(device_id: str, patient_id: str | None, status: str = "active") -> dict:
    found = {
        "resourceType": "Device",
        "id": device_id,
        "status": status,
        "identifier": [{"system": "urn:enjournal:vkp:device", "value": device_id}],
        "owner": {"identifier": {"system": ORG, "value": MUNICIPALITY}},
    }
    if patient_id:
        found["patient"] = {"reference": f"Patient/{patient_id}"}
    return found


NURSE_HPR = "9144889"


def care_world() -> list[dict]:
    """The municipality's home-care service, its nurse, and the episode of care that gives
    the nurse a care relationship with vkp-pas-1 (not with vkp-pas-2)."""
    return [
        {
            "resourceType": "Organization",
            "id": "hjemmetjenesten",
            "identifier": [{"system": ORG, "value": MUNICIPALITY}],
            "name": "Hjemmetjenesten, Bodø kommune",
        },
        {
            "resourceType": "Practitioner",
            "id": "sykepleier-hjemme",
            "identifier": [{"system": "urn:oid:2.16.578.1.12.4.1.4.4", "value": NURSE_HPR}],
            "name": [{"family": "Pleie", "given": ["Siri"]}],
        },
        {
            "resourceType": "EpisodeOfCare",
            "id": "oppfolging-pas-1",
            "status": "active",
            "patient": {"reference": "Patient/vkp-pas-1"},
            "managingOrganization": {"reference": "Organization/hjemmetjenesten"},
        },
    ]


def world() -> list[dict]:
    return [
        *(patient(p, f) for p, f in PATIENTS.items()),
        *(device(d, p) for d, p in DEVICES.items()),
        device("dev-spare", None),
        *care_world(),
    ]


@pytest.fixture
async def hub(store_url):
    """A platform with security on (policy, hooks, audit), the world loaded."""
    settings = Settings(database_url=store_url, auth=True, terminology_check=False, jobs=False)
    security = worker_security(settings)
    platform = await open_platform(compose(settings, security=security))
    await security.start(platform.store)
    async with platform.store.transaction() as tx:
        for resource in world():
            await tx.update(resource, resource["id"])
    yield platform
    await security.stop()
    await platform.store.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PrivateBroker:
    port: int
    url: str  # the consumer's mqtt://user:password@host:port
    process: subprocess.Popen


@pytest.fixture(scope="session")
def private_broker(tmp_path_factory):
    """Mosquitto (Debian's, from the machine) with a password per device and an ACL:
    ``pattern write vkp/%u/readings`` and ``.../alarms`` (a device publishes only under its
    own id)."""
    if shutil.which("mosquitto") is None or shutil.which("mosquitto_passwd") is None:
        pytest.fail("mosquitto and mosquitto_passwd are needed (Debian package mosquitto)")
    folder = tmp_path_factory.mktemp("mosquitto")
    passwords = folder / "passwords"
    passwords.write_text("")
    for user, secret in [CONSUMER, *((d, DEVICE_SECRET + d) for d in (*DEVICES, "dev-spare"))]:
        subprocess.run(["mosquitto_passwd", "-b", str(passwords), user, secret], check=True)
    acl = folder / "acl"
    acl.write_text(
        f"user {CONSUMER[0]}\ntopic read vkp/+/readings\ntopic read vkp/+/alarms\n\n"
        "pattern write vkp/%u/readings\npattern write vkp/%u/alarms\n"
    )
    port = free_port()
    config = folder / "mosquitto.conf"
    config.write_text(_config(port, passwords, acl))
    process = subprocess.Popen(["mosquitto", "-c", str(config)], stderr=subprocess.PIPE)
    _wait_for(port, process)
    yield PrivateBroker(port, f"mqtt://{CONSUMER[0]}:{CONSUMER[1]}@127.0.0.1:{port}", process)
    process.terminate()
    process.wait(timeout=10)


def _config(port: int, passwords: Path, acl: Path) -> str:
    return (
        # run as whoever runs the tests (as root, mosquitto would switch to its own user,
        # which cannot read the test's private folder)
        f"user {getpass.getuser()}\nlistener {port} 127.0.0.1\nallow_anonymous false\n"
        f"password_file {passwords}\nacl_file {acl}\npersistence false\n"
        "max_inflight_messages 1000\nmax_queued_messages 100000\n"
    )


def _wait_for(port: int, process: subprocess.Popen) -> None:
    for _ in range(100):
        if process.poll() is not None:
            raise RuntimeError(f"mosquitto did not start: {process.stderr.read().decode()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("mosquitto did not open its port")


UCUM = "http://unitsofmeasure.org"


def goal(id_: str, loinc: str, **target) -> dict:
    return {
        "resourceType": "Goal",
        "id": id_,
        "lifecycleStatus": "active",
        "description": {"text": id_},
        "subject": {"reference": "Patient/vkp-pas-1"},
        "target": [
            {"measure": {"coding": [{"system": "http://loinc.org", "code": loinc}]}, **target}
        ],
    }


def plan_world() -> list[dict]:
    spo2 = goal(
        "spo2-min",
        "2708-6",
        detailRange={"low": {"value": 92, "unit": "%", "system": UCUM, "code": "%"}},
    )
    weight = goal(
        "weight-rise",
        "29463-7",
        extension=[
            {
                "url": "https://enjournal.no/fhir/StructureDefinition/vkp-threshold-change",
                "extension": [
                    {
                        "url": "rise",
                        "valueQuantity": {"value": 2, "unit": "kg", "system": UCUM, "code": "kg"},
                    },
                    {
                        "url": "within",
                        "valueDuration": {"value": 3, "unit": "d", "system": UCUM, "code": "d"},
                    },
                ],
            }
        ],
    )
    care_plan = {
        "resourceType": "CarePlan",
        "id": "plan-pas-1",
        "status": "active",
        "intent": "plan",
        "subject": {"reference": "Patient/vkp-pas-1"},
        "careTeam": [{"reference": "CareTeam/hjemmesykepleien", "display": "Hjemmesykepleien"}],
        "goal": [{"reference": "Goal/spo2-min"}, {"reference": "Goal/weight-rise"}],
        "activity": [
            {
                "detail": {
                    "status": "in-progress",
                    "code": {
                        "coding": [{"system": "http://snomed.info/sct", "code": "1104051000000101"}]
                    },
                }
            }
        ],
    }
    return [spo2, weight, care_plan]


@pytest.fixture
async def planned(hub):
    async with hub.store.transaction() as tx:
        for resource in plan_world():
            await tx.update(resource, resource["id"])
    return hub
