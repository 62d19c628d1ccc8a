"""NEWS2 scoring: every band edge of RCP Chart 1 from both sides, the decimals between the
chart's steps, the risk bands of Chart 2, partial and invalid vitals.  Expected points are
written out from the chart, never computed."""

from __future__ import annotations

import dataclasses

import pytest

from enjournal.services.velferdsteknologi.news2 import (
    News2,
    Vitals,
    parameter_scores,
    risk,
    score,
)


@pytest.mark.parametrize(
    ("rate", "points"),
    [
        (0, 3),
        (8, 3),
        (9, 1),
        (11, 1),
        (12, 0),
        (20, 0),
        (21, 2),
        (24, 2),
        (25, 3),
        (60, 3),
        # decimals round half up to whole breaths
        (8.4, 3),
        (8.5, 1),
        (11.49, 1),
        (11.5, 0),
        (20.49, 0),
        (20.5, 2),
        (24.5, 3),
    ],
)
def test_respiration_rate(rate: float, points: int) -> None:
    assert parameter_scores(Vitals(respiration_rate=rate)) == {"respiration_rate": points}


@pytest.mark.parametrize(
    ("spo2", "points"),
    [
        (0, 3),
        (91, 3),
        (92, 2),
        (93, 2),
        (94, 1),
        (95, 1),
        (96, 0),
        (100, 0),
        (91.49, 3),
        (91.5, 2),
        (93.5, 1),
        (95.5, 0),
    ],
)
def test_spo2_scale_1(spo2: float, points: int) -> None:
    assert parameter_scores(Vitals(spo2=spo2)) == {"spo2": points}


@pytest.mark.parametrize(("spo2", "points"), [(91, 3), (94, 1), (96, 0), (100, 0)])
def test_spo2_scale_1_on_oxygen_scores_the_oxygen_apart(spo2: float, points: int) -> None:
    vitals = Vitals(spo2=spo2, on_oxygen=True)
    assert parameter_scores(vitals) == {"spo2": points, "air_or_oxygen": 2}


@pytest.mark.parametrize(
    ("spo2", "points"),
    [
        (70, 3),
        (83, 3),
        (84, 2),
        (85, 2),
        (86, 1),
        (87, 1),
        (88, 0),
        (92, 0),
        (93, 0),  # high saturations score nothing on air
        (97, 0),
        (100, 0),
        (83.5, 2),
        (85.5, 1),
        (87.49, 1),
        (87.5, 0),
    ],
)
def test_spo2_scale_2_on_air(spo2: float, points: int) -> None:
    vitals = Vitals(spo2=spo2, on_oxygen=False, spo2_scale=2)
    assert parameter_scores(vitals) == {"spo2": points, "air_or_oxygen": 0}


@pytest.mark.parametrize(
    ("spo2", "points"),
    [
        (83, 3),
        (84, 2),
        (85, 2),
        (86, 1),
        (87, 1),
        (88, 0),
        (92, 0),
        (93, 1),
        (94, 1),
        (95, 2),
        (96, 2),
        (97, 3),
        (100, 3),
        (92.49, 0),
        (92.5, 1),
        (94.5, 2),
        (96.5, 3),
    ],
)
def test_spo2_scale_2_on_oxygen(spo2: float, points: int) -> None:
    vitals = Vitals(spo2=spo2, on_oxygen=True, spo2_scale=2)
    assert parameter_scores(vitals) == {"spo2": points, "air_or_oxygen": 2}


@pytest.mark.parametrize(
    ("spo2", "expected"),
    [(85, {"spo2": 2}), (92, {"spo2": 0}), (92.5, {}), (93, {}), (97, {})],
)
def test_spo2_scale_2_from_93_cannot_be_scored_without_air_or_oxygen(
    spo2: float, expected: dict[str, int]
) -> None:
    assert parameter_scores(Vitals(spo2=spo2, spo2_scale=2)) == expected


@pytest.mark.parametrize(("on_oxygen", "points"), [(True, 2), (False, 0)])
def test_air_or_oxygen(on_oxygen: bool, points: int) -> None:
    assert parameter_scores(Vitals(on_oxygen=on_oxygen)) == {"air_or_oxygen": points}


@pytest.mark.parametrize(
    ("systolic", "points"),
    [
        (0, 3),
        (90, 3),
        (91, 2),
        (100, 2),
        (101, 1),
        (110, 1),
        (111, 0),
        (219, 0),
        (220, 3),
        (300, 3),
        (90.49, 3),
        (90.5, 2),
        (110.4, 1),
        (110.5, 0),
        (219.5, 3),
    ],
)
def test_systolic(systolic: float, points: int) -> None:
    assert parameter_scores(Vitals(systolic=systolic)) == {"systolic": points}


@pytest.mark.parametrize(
    ("pulse", "points"),
    [
        (0, 3),
        (40, 3),
        (41, 1),
        (50, 1),
        (51, 0),
        (90, 0),
        (91, 1),
        (110, 1),
        (111, 2),
        (130, 2),
        (131, 3),
        (250, 3),
        (40.5, 1),
        (50.5, 0),
        (90.49, 0),
        (90.5, 1),
        (110.5, 2),
        (130.5, 3),
    ],
)
def test_pulse(pulse: float, points: int) -> None:
    assert parameter_scores(Vitals(pulse=pulse)) == {"pulse": points}


@pytest.mark.parametrize(("letter", "points"), [("A", 0), ("C", 3), ("V", 3), ("P", 3), ("U", 3)])
def test_consciousness(letter: str, points: int) -> None:
    assert parameter_scores(Vitals(consciousness=letter)) == {"consciousness": points}


@pytest.mark.parametrize(
    ("temperature", "points"),
    [
        (30.0, 3),
        (35, 3),
        (35.0, 3),
        (35.04, 3),
        (35.05, 1),  # rounds half up to 35.1
        (35.1, 1),
        (36.0, 1),
        (36.04, 1),
        (36.05, 0),
        (36.1, 0),
        (37, 0),
        (38.0, 0),
        (38.04, 0),
        (38.05, 1),
        (38.1, 1),
        (39, 1),
        (39.0, 1),
        (39.04, 1),
        (39.05, 2),
        (39.1, 2),
        (42.0, 2),
    ],
)
def test_temperature(temperature: float, points: int) -> None:
    assert parameter_scores(Vitals(temperature=temperature)) == {"temperature": points}


def _vitals(**changes: object) -> Vitals:
    """A complete set scoring 0 everywhere, with ``changes``."""
    normal = Vitals(
        respiration_rate=16,
        spo2=97,
        on_oxygen=False,
        systolic=120,
        pulse=70,
        consciousness="A",
        temperature=37.0,
    )
    return dataclasses.replace(normal, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("changes", "total", "expected_risk"),
    [
        ({}, 0, "low"),
        ({"on_oxygen": True}, 2, "low"),
        ({"respiration_rate": 21, "temperature": 38.1}, 3, "low"),  # 3 in total, no single 3
        ({"respiration_rate": 21, "spo2": 94, "pulse": 91}, 4, "low"),
        ({"respiration_rate": 21, "spo2": 94, "pulse": 91, "temperature": 38.1}, 5, "medium"),
        ({"respiration_rate": 21, "spo2": 94, "pulse": 111, "temperature": 38.1}, 6, "medium"),
        ({"respiration_rate": 21, "spo2": 92, "pulse": 111, "temperature": 38.1}, 7, "high"),
        ({"consciousness": "V"}, 3, "low-medium"),
        ({"consciousness": "C", "temperature": 38.1}, 4, "low-medium"),
        ({"respiration_rate": 25}, 3, "low-medium"),
        ({"systolic": 220}, 3, "low-medium"),
        ({"temperature": 35.0}, 3, "low-medium"),
        ({"consciousness": "P", "respiration_rate": 21}, 5, "medium"),
        ({"consciousness": "U", "on_oxygen": True, "respiration_rate": 21}, 7, "high"),
        (
            {
                "respiration_rate": 5,
                "spo2": 85,
                "on_oxygen": True,
                "systolic": 80,
                "pulse": 140,
                "consciousness": "U",
                "temperature": 34.0,
            },
            20,
            "high",
        ),
    ],
)
def test_total_and_risk(changes: dict[str, object], total: int, expected_risk: str) -> None:
    result = score(_vitals(**changes))
    assert result is not None
    assert (result.total, result.risk, result.complete) == (total, expected_risk, True)


def test_scores_name_all_seven_parameters() -> None:
    result = score(_vitals(on_oxygen=True, pulse=131))
    assert result == News2(
        total=5,
        risk="medium",
        scores={
            "respiration_rate": 0,
            "spo2": 0,
            "air_or_oxygen": 2,
            "systolic": 0,
            "pulse": 3,
            "consciousness": 0,
            "temperature": 0,
        },
        complete=True,
    )


def test_scale_2_patient_in_target_on_air_is_complete_and_low() -> None:
    result = score(_vitals(spo2=88, spo2_scale=2))
    assert result is not None
    assert (result.total, result.risk, result.complete) == (0, "low", True)


@pytest.mark.parametrize(
    ("total", "scores", "expected"),
    [
        (0, {}, "low"),
        (4, {"a": 2, "b": 2}, "low"),
        (3, {"a": 3}, "low-medium"),
        (4, {"a": 3, "b": 1}, "low-medium"),
        (5, {"a": 2, "b": 2, "c": 1}, "medium"),
        (6, {"a": 3, "b": 3}, "medium"),
        (7, {"a": 3, "b": 2, "c": 2}, "high"),
        (20, {"a": 3}, "high"),
    ],
)
def test_risk_bands(total: int, scores: dict[str, int], expected: str) -> None:
    assert risk(total, scores) == expected


def test_nothing_measured_has_no_score() -> None:
    assert score(Vitals()) is None
    assert score(Vitals(spo2_scale=2)) is None


@pytest.mark.parametrize(
    ("vitals", "total", "expected_risk", "scores"),
    [
        (Vitals(pulse=131), 3, "low-medium", {"pulse": 3}),
        (Vitals(on_oxygen=False), 0, "low", {"air_or_oxygen": 0}),
        (
            Vitals(respiration_rate=21, temperature=39.1),
            4,
            "low",
            {"respiration_rate": 2, "temperature": 2},
        ),
        (Vitals(spo2=95, spo2_scale=2), 0, "low", {}),  # measured but not scorable
    ],
)
def test_partial_vitals_score_what_is_there_and_say_incomplete(
    vitals: Vitals, total: int, expected_risk: str, scores: dict[str, int]
) -> None:
    assert score(vitals) == News2(total, expected_risk, scores, complete=False)


@pytest.mark.parametrize(
    "missing",
    ["respiration_rate", "spo2", "on_oxygen", "systolic", "pulse", "consciousness", "temperature"],
)
def test_any_one_missing_parameter_makes_the_score_incomplete(missing: str) -> None:
    result = score(_vitals(**{missing: None}))
    assert result is not None
    assert result.complete is False
    assert len(result.scores) == 6


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"respiration_rate": -1}, "respiration_rate cannot be negative"),
        ({"spo2": -0.1}, "spo2 cannot be negative"),
        ({"systolic": -120}, "systolic cannot be negative"),
        ({"pulse": -0.4}, "pulse cannot be negative"),
        ({"temperature": -1.0}, "temperature cannot be negative"),
        ({"spo2": 100.1}, "spo2 cannot be above 100"),
        ({"spo2": 101}, "spo2 cannot be above 100"),
        ({"systolic": float("nan")}, "systolic must be a finite number"),
        ({"pulse": float("inf")}, "pulse must be a finite number"),
        ({"respiration_rate": "12"}, "respiration_rate must be a finite number"),
        ({"pulse": True}, "pulse must be a finite number"),
        ({"on_oxygen": "yes"}, "on_oxygen must be True, False or None"),
        ({"on_oxygen": 1}, "on_oxygen must be True, False or None"),
        ({"consciousness": "X"}, "consciousness must be one of"),
        ({"consciousness": "a"}, "consciousness must be one of"),
        ({"consciousness": ""}, "consciousness must be one of"),
        ({"consciousness": "Alert"}, "consciousness must be one of"),
        ({"spo2_scale": 0}, "spo2_scale must be 1 or 2"),
        ({"spo2_scale": 3}, "spo2_scale must be 1 or 2"),
        ({"spo2_scale": True}, "spo2_scale must be 1 or 2"),
    ],
)
def test_invalid_vitals_are_refused(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Vitals(**fields)  # type: ignore[arg-type]


def test_vitals_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        Vitals(pulse=70).pulse = 200  # type: ignore[misc]
