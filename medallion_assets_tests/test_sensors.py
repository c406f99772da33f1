"""`landing_csv_sensor`, tick by tick, over a real temporary landing directory."""

import datetime as dt
import json
import logging
import os
from pathlib import Path

import pytest
from dagster import (
    DefaultSensorStatus,
    RunRequest,
    SensorResult,
    SkipReason,
    build_sensor_context,
)

from medallion_assets.definitions import defs
from medallion_assets.resources.landing import LandingDirectory
from medallion_assets.sample_data import HEADER
from medallion_assets.sensors import (
    INTERVAL_ENV,
    SOURCE_FILE_TAG,
    interval_seconds,
    landing_csv_sensor,
)

ROW = (
    "2019-10-01 00:00:00 UTC,view,1,2053013552226107603,,acer,12.30,512345678,"
    "5f1c1f1e-0000-4000-8000-000000000000"
)


class Ticks:
    """Evaluates the sensor the way the daemon does: each tick gets the previous tick's cursor."""

    def __init__(self, landing: Path):
        self.landing = landing
        self.cursor: str | None = None
        self.messages: list[str] = []

    def __call__(self) -> SensorResult | SkipReason:
        context = build_sensor_context(
            cursor=self.cursor, resources={"landing": LandingDirectory(path=str(self.landing))}
        )
        collected = self.messages

        class Collect(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                collected.append(record.getMessage())

        context.log.addHandler(Collect())
        result = landing_csv_sensor(context)
        if isinstance(result, SensorResult) and result.cursor is not None:
            self.cursor = result.cursor
        return result

    def requests(self) -> list[RunRequest]:
        result = self()
        assert isinstance(result, SensorResult)
        return list(result.run_requests or [])


def write(path: Path, rows: int = 3, mtime: float | None = None) -> Path:
    path.write_text(HEADER + "\n" + "".join(ROW + "\n" for _ in range(rows)))
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


@pytest.fixture
def ticks(tmp_path: Path) -> Ticks:
    landing = tmp_path / "landing"
    landing.mkdir()
    return Ticks(landing)


@pytest.mark.parametrize(
    "name, key",
    [
        ("2019-Oct.csv", "2019-10"),
        ("2019-11.csv", "2019-11"),
        ("2019-Dec.csv.gz", "2019-12"),
        ("2020-01.csv.gz", "2020-01"),
    ],
)
def test_a_recognised_file_gets_one_run_of_its_month_once_it_is_stable(ticks, name, key):
    path = write(ticks.landing / name, mtime=1_600_000_000)

    first = ticks()
    assert isinstance(first, SensorResult) and not first.run_requests
    assert f"waiting for {name}" in first.skip_reason.skip_message

    [request] = ticks.requests()
    info = path.stat()
    assert request.partition_key == key
    assert request.run_key == f"{name}:{info.st_mtime_ns}:{info.st_size}"
    assert request.tags[SOURCE_FILE_TAG] == name
    assert any(f"Requesting a run for {key} from {name}" in m for m in ticks.messages)


def test_the_runs_are_of_the_job_that_materializes_the_whole_graph():
    sensor = defs.resolve_sensor_def("landing_csv_sensor")
    job = defs.resolve_job_def(sensor.job_name)
    assert sensor.job_name == "medallion_monthly"
    assert job.asset_layer.selected_asset_keys == defs.resolve_asset_graph().get_all_asset_keys()


def test_a_processed_file_is_not_processed_again(ticks):
    write(ticks.landing / "2019-Oct.csv", mtime=1_600_000_000)
    ticks()
    assert len(ticks.requests()) == 1
    for _ in range(3):
        result = ticks()
        assert isinstance(result, SensorResult) and not result.run_requests


@pytest.mark.parametrize("change", ["content", "mtime"])
def test_a_replaced_or_changed_file_is_processed_again(ticks, change):
    path = write(ticks.landing / "2019-Oct.csv", rows=3, mtime=1_600_000_000)
    ticks()
    [first] = ticks.requests()

    if change == "content":
        write(path, rows=5, mtime=1_600_000_000)  # same mtime, another size
    else:
        os.utime(path, (1_700_000_000, 1_700_000_000))  # same size, re-exported later
    assert ticks.requests() == []  # changed since the previous tick: wait one more
    [second] = ticks.requests()
    assert second.partition_key == "2019-10"
    assert second.run_key != first.run_key
    assert ticks.requests() == []


def test_a_file_still_being_written_does_not_start_a_run(ticks):
    path = ticks.landing / "2019-Nov.csv"
    with open(path, "w") as handle:
        handle.write(HEADER + "\n")
        handle.flush()
        assert ticks.requests() == []
        for _ in range(3):
            handle.write(ROW + "\n")
            handle.flush()
            assert ticks.requests() == []
    [request] = ticks.requests()  # unchanged since the previous tick
    assert request.run_key.endswith(f":{path.stat().st_size}")


def test_several_months_at_once_become_several_runs_in_month_order(ticks):
    for name in ("2019-Dec.csv", "2019-10.csv.gz", "2019-Nov.csv"):
        write(ticks.landing / name)
    ticks()
    requests = ticks.requests()
    assert [r.partition_key for r in requests] == ["2019-10", "2019-11", "2019-12"]
    assert len({r.run_key for r in requests}) == 3


def test_only_the_file_a_run_reads_counts_when_a_month_has_two(ticks):
    write(ticks.landing / "2019-10.csv")
    write(ticks.landing / "2019-Oct.csv")
    ticks()
    [request] = ticks.requests()
    assert request.tags[SOURCE_FILE_TAG] == "2019-Oct.csv"
    assert any(
        m.startswith("Skipping 2019-10.csv: 2019-Oct.csv is also there") for m in ticks.messages
    )


def current_month() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m")


def make_hidden(landing: Path, outside: Path) -> str:
    write(landing / ".2019-Oct.csv")
    return ".2019-Oct.csv"


def make_temporary(suffix: str):
    def make(landing: Path, outside: Path) -> str:
        write(landing / f"2019-Oct.csv{suffix}")
        return f"2019-Oct.csv{suffix}"

    return make


def make_named(name: str):
    def make(landing: Path, outside: Path) -> str:
        write(landing / name)
        return name

    return make


def make_directory(landing: Path, outside: Path) -> str:
    (landing / "2019-Oct.csv").mkdir()
    write(landing / "2019-Oct.csv" / "2019-Oct.csv")
    return "2019-Oct.csv"


def make_link_outside(landing: Path, outside: Path) -> str:
    target = write(outside / "2019-Oct.csv")
    (landing / "2019-Oct.csv").symlink_to(target)
    return "2019-Oct.csv"


def make_broken_link(landing: Path, outside: Path) -> str:
    (landing / "2019-Oct.csv").symlink_to(landing / "gone.csv")
    return "2019-Oct.csv"


def make_fifo(landing: Path, outside: Path) -> str:
    os.mkfifo(landing / "2019-Oct.csv")
    return "2019-Oct.csv"


@pytest.mark.parametrize(
    "make, reason",
    [
        (make_hidden, "hidden or temporary file"),
        (make_temporary(".tmp"), "hidden or temporary file"),
        (make_temporary(".part"), "hidden or temporary file"),
        (make_temporary(".crdownload"), "hidden or temporary file"),
        (make_temporary("~"), "hidden or temporary file"),
        (make_named("notes.txt"), "name not recognised"),
        (make_named("2019-October.csv"), "name not recognised"),
        (make_named("2019-13.csv"), "name not recognised"),
        (make_named("2019-Oct.csv.zip"), "name not recognised"),
        (make_named("2019-Sep.csv"), "month 2019-09 is before the first partition 2019-10"),
        (make_named("2999-01.csv"), "month 2999-01 is not a partition yet"),
        (make_named(f"{current_month()}.csv"), f"month {current_month()} is not a partition yet"),
        (make_directory, "a directory, not a file"),
        (make_link_outside, "outside the landing directory"),
        (make_broken_link, "broken symbolic link"),
        (make_fifo, "not a regular file"),
    ],
    ids=[
        "hidden",
        "tmp",
        "part",
        "crdownload",
        "backup",
        "txt",
        "long-month",
        "month-13",
        "zip",
        "before-first",
        "far-future",
        "current-month",
        "directory",
        "link-outside",
        "broken-link",
        "fifo",
    ],
)
def test_what_is_not_a_monthly_file_is_skipped_with_a_logged_reason(ticks, tmp_path, make, reason):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    name = make(ticks.landing, outside)
    for _ in range(3):
        result = ticks()
        assert isinstance(result, SensorResult) and not result.run_requests
    assert name in result.skip_reason.skip_message
    logged = [m for m in ticks.messages if m.startswith(f"Skipping {name}: ")]
    assert len(logged) == 3
    assert reason in logged[0]


def test_a_link_to_a_file_inside_the_landing_dir_is_read_like_the_file(ticks):
    write(ticks.landing / "incoming.dat")
    (ticks.landing / "2019-Oct.csv").symlink_to(ticks.landing / "incoming.dat")
    ticks()
    [request] = ticks.requests()
    assert request.partition_key == "2019-10"


def test_a_skipped_file_does_not_hide_a_good_one(ticks):
    write(ticks.landing / "2019-Sep.csv")
    write(ticks.landing / ".2019-Nov.csv.tmp")
    write(ticks.landing / "2019-Oct.csv")
    ticks()
    assert [r.partition_key for r in ticks.requests()] == ["2019-10"]


def test_a_missing_landing_dir_is_a_skip_not_an_error(tmp_path):
    ticks = Ticks(tmp_path / "not-there")
    result = ticks()
    assert isinstance(result, SkipReason)
    assert str(tmp_path / "not-there") in result.skip_message


def test_a_landing_path_that_is_a_file_is_a_skip_not_an_error(tmp_path):
    (tmp_path / "landing").write_text("not a directory")
    result = Ticks(tmp_path / "landing")()
    assert isinstance(result, SkipReason)


def test_the_landing_dir_comes_from_the_environment_by_default(landing_dir):
    write(landing_dir / "2019-Oct.csv")
    cursor = None
    for _ in range(2):
        context = build_sensor_context(
            cursor=cursor, resources={"landing": defs.resources["landing"]}
        )
        result = landing_csv_sensor(context)
        cursor = result.cursor
    assert [r.partition_key for r in result.run_requests] == ["2019-10"]


def test_an_unreadable_cursor_costs_a_tick_not_an_exception(ticks):
    write(ticks.landing / "2019-Oct.csv")
    ticks.cursor = "not json"
    assert ticks.requests() == []
    ticks.cursor = json.dumps({"observed": {"2019-Oct.csv": "bad"}})
    assert ticks.requests() == []
    assert len(ticks.requests()) == 1


def test_the_cursor_forgets_files_that_are_gone(ticks):
    path = write(ticks.landing / "2019-Oct.csv")
    ticks()
    ticks.requests()
    assert "2019-Oct.csv" in ticks.cursor
    path.unlink()
    ticks()
    assert json.loads(ticks.cursor)["observed"] == {}


def test_the_sensor_runs_by_default_and_ticks_often(monkeypatch):
    sensor = defs.resolve_sensor_def("landing_csv_sensor")
    assert sensor.default_status == DefaultSensorStatus.RUNNING
    assert sensor.minimum_interval_seconds == interval_seconds() <= 30
    monkeypatch.setenv(INTERVAL_ENV, "3")
    assert interval_seconds() == 3
    monkeypatch.setenv(INTERVAL_ENV, "soon")
    assert interval_seconds() == 15
