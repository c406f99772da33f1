"""The benchmark's timeline of a CLI run (benchmarks/timeline.py): marks read from a run's output,
step durations from their start and success marks, and the printed breakdown. Pure functions; a
real run's marks are printed by `make bench` and cli_timeline.py."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

TIMELINE = Path(__file__).resolve().parents[1] / "benchmarks" / "timeline.py"


@pytest.fixture(scope="module")
def timeline():
    spec = importlib.util.spec_from_file_location("bench_timeline", TIMELINE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def marked(timeline, *points: tuple[float, str]) -> str:
    return "\n".join(f"{timeline.MARK}{json.dumps([at, point])}" for at, point in points)


def test_points_are_seconds_since_spawn_and_lines_without_a_mark_are_ignored(timeline):
    output = "\n".join(
        [
            "2026-12-05 - dagster - DEBUG - RUN_START",
            marked(timeline, (100.5, "dagster imported"), (103.25, "bronze_events start")),
            "a log line that mentions @@timeline in the middle is not a mark",
            marked(timeline, (104.0, "dagster imported")),  # a second mark keeps the first
        ]
    )
    assert timeline.read_points(output, spawned=100.0) == {
        "dagster imported": 0.5,
        "bronze_events start": 3.25,
    }


def test_a_step_lasts_from_its_start_to_its_success_and_one_without_success_is_left_out(
    timeline,
):
    points = {
        "bronze_events start": 2.0,
        "bronze_events end": 7.5,
        "silver_events start": 7.5,
        "silver_events end": 9.0,
        "gold_tables start": 9.0,  # failed: no success event
    }
    assert timeline.steps(points) == {"bronze_events": 5.5, "silver_events": 1.5}


def test_the_breakdown_gives_each_points_median_spread_and_gap_in_the_first_rounds_order(
    timeline,
):
    rounds = [
        {"dagster imported": 0.5, "definitions loaded": 1.0, "process gone": 10.0},
        {"dagster imported": 0.7, "definitions loaded": 1.4, "process gone": 12.0},
        {"dagster imported": 0.6, "process gone": 11.0},
    ]
    assert timeline.breakdown(rounds) == [
        "- dagster imported: 0.60 s (0.50-0.70), +0.60",
        "- definitions loaded: 1.20 s (1.00-1.40), +0.60 (marked in 2 of 3 rounds)",
        "- process gone: 11.00 s (10.00-12.00), +9.80",
    ]
