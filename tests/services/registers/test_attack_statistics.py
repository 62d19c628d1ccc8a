"""Attacks on ``$register-statistics``: differencing two releases after the caller edits the
publication log, and the threshold floor (notes: /work/notes/attack-registers.md)."""

from __future__ import annotations

import pytest

from enjournal.fhir import jsonio
from enjournal.rest.message import FhirRequest
from enjournal.security.principal import Principal
from enjournal.services.registers import statistics as stats
from enjournal.services.registers import suppression as S
from tests.services.registers import test_statistics
from tests.services.registers.test_statistics import STATS_SCOPES, ask

platform = test_statistics.platform  # the fixture: the population, security on

pytestmark = pytest.mark.backends("memory")
# A statistics client whose scopes also let it change MeasureReports (system/*.cruds would).
EDITOR = Principal(
    "system", "stats", "stats-client", frozenset({*STATS_SCOPES, "system/MeasureReport.cruds"})
)
ASK = {"measure": "gp-patients", "dimension": ["municipality", "age"], "period": "2025"}


async def _change(platform, edit: str, report: dict) -> int:
    """Delete the report, re-tag it (PUT), or delete it by a search on its measure."""
    body = jsonio.dumps(_untag(report)) if edit == "PUT" else b""
    conditional = edit == "conditional DELETE"
    request = FhirRequest(
        edit.split()[-1],
        ["MeasureReport"] if conditional else ["MeasureReport", report["id"]],
        [("measure", report["measure"])] if conditional else [],
        {"content-type": "application/fhir+json"},
        body,
        platform.settings.fhir_base,
    )
    return (await platform.handle(request, EDITOR)).status


def _untag(report: dict) -> dict:
    return {**report, "identifier": [{"system": "urn:example", "value": "x"}]}


@pytest.mark.parametrize("edit", ["DELETE", "PUT", "conditional DELETE"])
async def test_a_release_cannot_be_differenced_after_editing_the_log(platform, edit):
    """S-1 (fixed in a6d6b19, the log is append-only): editing the stored report is refused,
    and the next release is audited against it, so no hidden cell of the pair is pinned."""
    status, first = await ask(platform, EDITOR, **ASK, ageBands="0,30,70")
    assert status == 200, first
    assert await _change(platform, edit, first) == 403
    status, second = await ask(platform, EDITOR, **ASK, ageBands="0,50,70")
    assert status == 200, second
    releases = [stats.to_release(first), stats.to_release(second)]
    model = S.Model(releases)
    for key in releases[1].suppressed:
        low, high = model.bounds(releases[1], key)
        assert high - low >= 5, (key, low, high)


async def test_the_log_holds_when_left_alone(platform):
    """The same two asks without editing the log: every hidden cell keeps its range."""
    first = (await ask(platform, EDITOR, **ASK, ageBands="0,30,70"))[1]
    second = (await ask(platform, EDITOR, **ASK, ageBands="0,50,70"))[1]
    releases = [stats.to_release(first), stats.to_release(second)]
    model = S.Model(releases)
    for release in releases:
        for key in release.suppressed:
            low, high = model.bounds(release, key)
            assert high - low >= 5, (release.id, key, low, high)


@pytest.mark.parametrize("threshold", [0, 1, 2, -5])
async def test_the_threshold_floor_holds(platform, threshold):
    status, outcome = await ask(
        platform, EDITOR, measure="contacts", period="2025", threshold=threshold
    )
    assert status == 400, outcome
    status, outcome = await ask(
        platform, EDITOR, measure="contacts", period="2025", protection=threshold
    )
    assert status == 400, outcome
