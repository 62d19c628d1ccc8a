"""The services' shared input reader and refusal recorder (enjournal/services/inputs.py)."""

from __future__ import annotations

from types import SimpleNamespace

import orjson
import pytest

from enjournal.fhir.errors import Forbidden, Invalid, NotFound
from enjournal.rest.message import FhirRequest
from enjournal.security.context import AccessContext
from enjournal.security.principal import Principal
from enjournal.services.inputs import operation_parameters, refused


def post(body) -> FhirRequest:
    return FhirRequest("POST", ["MedicationRequest", "1", "$dispense"], body=orjson.dumps(body))


@pytest.mark.parametrize(
    "body",
    [
        {"resourceType": "MedicationDispense"},
        {"resourceType": "Parameters", "parameter": {"name": "quantity"}},
        {"resourceType": "Parameters", "parameter": [1]},
        {"resourceType": "Parameters", "parameter": [{"valueString": "x"}]},
        ["Parameters"],
    ],
)
def test_a_body_of_the_wrong_shape_is_refused(body):
    with pytest.raises(Invalid):
        operation_parameters(post(body), "$dispense")


def test_required_parameters_and_other_accepted_bodies():
    body = {"resourceType": "Parameters", "parameter": [{"name": "quantity", "valueDecimal": 2}]}
    assert operation_parameters(post(body), "$dispense", ("quantity",)) == {"quantity": 2}
    with pytest.raises(Invalid):
        operation_parameters(post(body), "$withdraw", ("reason",))
    bare = {"resourceType": "MedicationRequest"}
    assert operation_parameters(post(bare), "$prescribe", also=("MedicationRequest",)) == {}
    empty = FhirRequest("POST", ["x"], body=b"")
    assert operation_parameters(empty, "$take") == {}


def test_a_refusal_is_recorded_in_the_request_context():
    principal = Principal("personnel", "sub", "client", hpr="1")
    context = AccessContext(principal, basis="SAMTYKKE", request_id="r1")
    request = FhirRequest("POST", ["x"], guard=SimpleNamespace(context=context))
    error = refused(request, "U", "$take", "not yours", "kari", NotFound)
    assert isinstance(error, NotFound)
    [event] = context.events
    assert event["outcome"] == "4" and event["action"] == "U"
    assert "kari" in str(event["entity"])
    assert "SAMTYKKE" in str(event["purposeOfEvent"]) and context.refusals == 1
    assert isinstance(refused(FhirRequest("POST", ["x"]), "c", "$x", "no"), Forbidden)
