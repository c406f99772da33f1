"""A month's file still being written, under a real `make dev` (daemon, webserver, Connect
server): the landing sensor's settle rule as the daemon actually applies it.

The sensor's rules are tested tick by tick on a test clock (`test_sensors.py`); what only the real
daemon shows is that its ticks, its cursor kept between them and the settle time given through
the environment work together while a file really grows: a run started half-way through the
copy would build the month from half the file, and nothing would ever run it again.
"""

from __future__ import annotations

import time

import pytest

from medallion_assets.tools.sample_data import generate_month
from medallion_assets_tests.dagster_dev import dagster_dev, wait_for
from medallion_assets_tests.test_dagster_dev import (
    RUN_TIMEOUT,
    SENSOR,
    SENSOR_TAGS,
    data_rows,
    rows_per_month,
    tags_of,
)

pytestmark = pytest.mark.slow

# Short enough to keep the test quick, long enough that the appends below (every 0.25 s) never
# leave the file unchanged for that long.
SETTLE_SECONDS = 3
APPEND_EVERY = 0.25
LINES_PER_APPEND = 4
# Ticks that must see the file growing: the daemon looks every 5 s, so this is some 10-15 s of
# writing.
TICKS_WHILE_WRITING = 2
ROWS = 1_200  # enough lines to keep appending for a minute if the ticks come slowly


def test_a_file_being_written_runs_once_after_it_settles_and_the_run_reads_all_of_it(tmp_path):
    source = generate_month("2019-10", ROWS, tmp_path / "export", seed=5)
    header, *lines = source.read_bytes().splitlines(keepends=True)

    with dagster_dev(
        tmp_path,
        MEDALLION_SENSOR_SETTLE_SECONDS=str(SETTLE_SECONDS),
        MEDALLION_SENSOR_INTERVAL_SECONDS="1",
    ) as server:
        # The sensor is ticking before the file appears, so it sees the file grow from the start.
        wait_for("a first sensor tick", lambda: server.sensor_ticks(SENSOR) or None, 120)
        target = server.landing / source.name
        started = time.time()
        waiting: list[dict] = []
        with open(target, "wb") as out:
            out.write(header)
            out.flush()
            written = 0
            next_look = time.monotonic() + 1
            while written < len(lines):
                out.write(b"".join(lines[written : written + LINES_PER_APPEND]))
                out.flush()
                written += LINES_PER_APPEND
                if time.monotonic() >= next_look:  # what the daemon's ticks made of the file
                    next_look = time.monotonic() + 1
                    assert not server.runs(SENSOR_TAGS), "a run started while the file grew"
                    waiting = [
                        t for t in server.sensor_ticks(SENSOR)
                        if t["timestamp"] > started
                        and any(m.startswith(f"Waiting for {target.name}: ") for m in t["messages"])
                    ]
                    if len(waiting) >= TICKS_WHILE_WRITING:
                        break
                time.sleep(APPEND_EVERY)
            out.write(b"".join(lines[written:]))  # the rest at once: the last change
        finished = target.stat().st_mtime
        assert len(waiting) >= TICKS_WHILE_WRITING, "the daemon never looked while the file grew"
        assert all(not t["runIds"] for t in waiting)

        [run] = server.wait_for_runs(SENSOR_TAGS, 1, RUN_TIMEOUT)
        assert tags_of(run)["dagster/partition"] == "2019-10"
        assert tags_of(run)["medallion/source_file"] == target.name
        # Requested only once the file had stayed unchanged for the settle time.
        assert run["creationTime"] >= finished + SETTLE_SECONDS, (run["creationTime"], finished)

        # Two more ticks after the run: the file, unchanged, is not run again.
        done = max(t["timestamp"] for t in server.sensor_ticks(SENSOR))
        wait_for(
            "two sensor ticks after the run",
            lambda: len([t for t in server.ended_ticks(SENSOR) if t["timestamp"] > done]) >= 2
            or None,
            120,
        )
        assert [r["runId"] for r in server.runs()] == [run["runId"]]

        # The run read the finished file: every one of its lines is in bronze.
        assert data_rows(target) == ROWS
        assert rows_per_month(server.warehouse / "bronze" / "events") == {"2019-10": ROWS}
