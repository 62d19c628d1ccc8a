"""The interaction check of prescribing and dispensing: the FEST interactions between a
medicine and the patient's current ones, a severe one refused (409) until the caller names
it in ``acknowledge``, each found one kept as a DetectedIssue."""

from __future__ import annotations

from enjournal.fhir.errors import Conflict, Issue
from enjournal.services.eresept import drugs


def acknowledged(params: dict) -> set[str]:
    value = params.get("acknowledge") or []
    values = value if isinstance(value, list) else [value]
    return {str(v) for v in values}


def require_acknowledged(found, params: dict, patient_id: str) -> None:
    """The most severe interactions need the caller to name them in ``acknowledge``; else
    409 with an OperationOutcome listing them and the DetectedIssues contained."""
    missing = [i for i in found if i.severity == "high" and i.id not in acknowledged(params)]
    if missing:
        raise InteractionConflict(missing, patient_id)


class InteractionConflict(Conflict):
    """409 naming each unacknowledged interaction in an issue of its own, with the
    DetectedIssues contained; ``rest.errors.error_response`` renders it."""

    def __init__(self, interactions, patient_id: str):
        self.interactions = interactions
        self.patient_id = patient_id
        super().__init__(
            "severe interaction(s) need an acknowledgement: "
            + ", ".join(f"{i.id} ({i.atc_a} + {i.atc_b})" for i in interactions)
        )
        self.issues += [_interaction_issue(i) for i in interactions]
        self.contained = [
            {**drugs.detected_issue(i, f"Patient/{patient_id}", []), "id": f"issue{n}"}
            for n, i in enumerate(interactions)
        ]


def _interaction_issue(found) -> Issue:
    diagnostics = f"{found.severity}: {found.atc_a} + {found.atc_b}: {found.consequence}"
    return Issue("error", "business-rule", diagnostics, details=found.id)


async def store_issues(tx, found, patient_id, new_ref, atcs, params) -> list[dict]:
    """Store the detected interactions (acknowledged ones with the acknowledgement)."""
    named = acknowledged(params)
    out: list[dict] = []
    for interaction in found:
        implicated = [new_ref] + [
            ref for atc, ref in atcs if _matches(atc, interaction.atc_a, interaction.atc_b)
        ]
        issue = drugs.detected_issue(interaction, f"Patient/{patient_id}", implicated)
        if interaction.id in named:
            issue.setdefault("mitigation", []).append(
                {"action": {"text": "Acknowledged by the prescriber or pharmacist"}}
            )
        out.append(issue)
    if out:
        await tx.create_many(out)  # stamps id and meta into each issue
    return out


def _matches(atc: str, a: str, b: str) -> bool:
    return bool(atc) and (atc.startswith(a) or atc.startswith(b))


def issues_refs(issues: list[dict]) -> list[str]:
    return [f"DetectedIssue/{i['id']}" for i in issues]
