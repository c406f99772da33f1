"""`landing_csv_sensor`, tick by tick, over a real temporary landing directory and a real
(ephemeral) Dagster instance holding what each month was last built from.

The sensor's clock is the test's: each tick is `evaluate` at a time the test sets, so a file
settling over seconds is tested without waiting for them. The sensor as the Definitions build it
(its landing directory, settle time and interval from the settings) is tested apart.
"""

import datetime as dt
import json
import logging
import os
import time
from pathlib import Path

import pytest
from dagster import (
    AssetMaterialization,
    DagsterInstance,
    DefaultSensorStatus,
    Definitions,
    Output,
    RunRequest,
    SensorResult,
    SkipReason,
    build_sensor_context,
    job,
    op,
)

from medallion_assets.assets.bronze import BRONZE_EVENTS
from medallion_assets.automation.landing_sensor import (
    REQUESTED_BECAUSE_TAG,
    SENSOR_NAME,
    SOURCE_FILE_TAG,
    SensorState,
    build_landing_sensor,
    evaluate,
    last_bronze_build,
    scan_landing,
)
from medallion_assets.definitions import build_defs
from medallion_assets.resources.landing import (
    SourceFingerprint,
    fingerprint_metadata,
)
from medallion_assets.settings import Settings
from medallion_assets.tools.sample_data import HEADER
from medallion_assets_tests.source_lines import good_lines, run_job, write_source

ROW = (
    "2019-10-01 00:00:00 UTC,view,1,2053013552226107603,,acer,12.30,512345678,"
    "5f1c1f1e-0000-4000-8000-000000000000"
)
# Long finished files: settled on the first tick that sees them.
OLD = 1_600_000_000


class Ticks:
    """Evaluates the sensor the way the daemon does — each tick gets the previous tick's cursor —
    at the time `now`, which only the test moves."""

    def __init__(self, landing: Path, instance: DagsterInstance, *, settle: float = 5.0):
        self.landing = landing
        self.instance = instance
        self.settle = settle
        self.now = time.time()
        self.cursor: str | None = None
        self.messages: list[str] = []

    def __call__(self) -> SensorResult | SkipReason:
        context = build_sensor_context(cursor=self.cursor, instance=self.instance)
        collect_logs(context, self.messages)
        result = evaluate(context, self.landing, now=self.now, settle=self.settle)
        if isinstance(result, SensorResult) and result.cursor is not None:
            self.cursor = result.cursor
        return result

    def requests(self) -> list[RunRequest]:
        result = self()
        assert isinstance(result, SensorResult)
        return list(result.run_requests or [])

    def logged(self, prefix: str) -> list[str]:
        return [m for m in self.messages if m.startswith(prefix)]


def collect_logs(context, messages: list[str]) -> None:
    """Append what the sensor logs on `context` to `messages`."""

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    context.log.addHandler(Collect())


def write(path: Path, rows: int = 3, mtime: float | None = OLD) -> Path:
    """A finished source file, by default modified long ago; ``mtime=None`` leaves it fresh."""
    path.write_text(HEADER + "\n" + "".join(ROW + "\n" for _ in range(rows)))
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def record_build(instance: DagsterInstance, month: str, metadata: dict) -> str:
    """A real run on `instance` that materializes bronze/events for `month` with `metadata`, as a
    build by the CLI or an older version of the project leaves it; returns the run id."""

    @op
    def build_bronze():
        yield AssetMaterialization(asset_key=BRONZE_EVENTS, partition=month, metadata=metadata)
        yield Output(None)

    @job
    def external_build():
        build_bronze()

    result = external_build.execute_in_process(instance=instance)
    assert result.success
    return result.run_id


@pytest.fixture
def instance() -> DagsterInstance:
    with DagsterInstance.ephemeral() as instance:
        yield instance


@pytest.fixture
def ticks(landing_dir: Path, instance: DagsterInstance) -> Ticks:
    return Ticks(landing_dir, instance)


@pytest.mark.parametrize(
    "name, key",
    [
        ("2019-Oct.csv", "2019-10"),
        ("2019-11.csv", "2019-11"),
        ("2019-Dec.csv.gz", "2019-12"),
        ("2020-01.csv.gz", "2020-01"),
    ],
)
def test_a_finished_file_gets_one_run_of_its_month_on_the_first_tick(ticks, name, key):
    path = write(ticks.landing / name)

    [request] = ticks.requests()
    info = path.stat()
    assert request.partition_key == key
    assert request.run_key == f"{name}:{info.st_mtime_ns}:{info.st_size}"
    assert request.tags[SOURCE_FILE_TAG] == name
    # The run says why the tick requested it: the UI shows such a tick with its runs only.
    assert request.tags[REQUESTED_BECAUSE_TAG] == f"{key} has not been built"
    [logged] = ticks.logged(f"Requesting a run for {key} from {name}: ")
    assert f"{key} has not been built" in logged


def test_a_tick_that_requests_nothing_says_what_it_decided_for_each_file_and_month(
    ticks, instance
):
    assert ticks().skip_reason.skip_message == (
        "No new month to process: the landing directory is empty."
    )
    october = write(ticks.landing / "2019-Oct.csv")
    run_id = record_build(
        instance, "2019-10", fingerprint_metadata({"2019-10": SourceFingerprint.of(october)})
    )
    write(ticks.landing / "2019-Nov.csv", mtime=ticks.now)  # still arriving
    write(ticks.landing / "notes.txt")

    message = ticks().skip_reason.skip_message

    assert message == (
        "No new month to process. 2019-Nov.csv (2019-11) waiting to settle; "
        f"2019-Oct.csv: 2019-10 already built from this very file by run {run_id[:8]} "
        "(same name, size and mtime); "
        "notes.txt: name not recognised (expected YYYY-Mon.csv or YYYY-MM.csv, optionally .gz)."
    )


def test_the_runs_are_of_the_job_that_materializes_the_whole_graph(defs):
    sensor = defs.resolve_sensor_def("landing_csv_sensor")
    job_def = defs.resolve_job_def(sensor.job_name)
    assert sensor.job_name == "medallion_monthly"
    # Every asset but the landing files, which are observed rather than materialized.
    materializable = defs.resolve_asset_graph().materializable_asset_keys
    assert job_def.asset_layer.selected_asset_keys == materializable


def test_a_processed_file_is_not_processed_again_and_each_tick_says_why(ticks):
    write(ticks.landing / "2019-Oct.csv")
    assert len(ticks.requests()) == 1
    for _ in range(3):
        result = ticks()
        assert isinstance(result, SensorResult) and not result.run_requests
    skips = ticks.logged("Skipping 2019-Oct.csv: ")
    assert len(skips) == 3
    assert all("a run of 2019-10 was requested for this file" in m for m in skips)


@pytest.mark.parametrize("change", ["content", "mtime"])
def test_a_replaced_or_changed_file_is_processed_again(ticks, change):
    path = write(ticks.landing / "2019-Oct.csv", rows=3)
    [first] = ticks.requests()

    if change == "content":
        write(path, rows=5)  # same (old) mtime, another size
    else:
        os.utime(path, (1_700_000_000, 1_700_000_000))  # same size, re-exported later
    [second] = ticks.requests()
    assert second.partition_key == "2019-10"
    assert second.run_key != first.run_key
    assert ticks.requests() == []


def test_a_file_still_being_written_does_not_start_a_run(ticks):
    ticks.settle = 2
    path = ticks.landing / "2019-Nov.csv"
    with open(path, "w") as handle:

        def append(text: str) -> None:
            """The writer adds to the file at the sensor's present moment."""
            handle.write(text)
            handle.flush()
            os.utime(path, (ticks.now, ticks.now))

        append(HEADER + "\n")
        assert ticks.requests() == []
        for _ in range(4):
            ticks.now += 0.5
            append(ROW + "\n")
            assert ticks.requests() == []
    waits = ticks.logged("Waiting for 2019-Nov.csv: ")
    assert len(waits) == 5
    assert "unchanged for 2 s" in waits[-1]
    ticks.now += 1.9
    assert ticks.requests() == []  # the writer's last change is 1.9 s old
    ticks.now += 0.2
    [request] = ticks.requests()  # unchanged for the settle time
    assert request.run_key.endswith(f":{path.stat().st_size}")


def scan(landing: Path, previous: SensorState, now: float, settle: float = 5.0):
    """One tick at `now`, for months never built."""
    return scan_landing(landing, previous, now=now, settle=settle, last_build=lambda month: None)


def test_a_file_is_read_once_unchanged_for_the_settle_time_by_its_mtime(ticks):
    path = write(ticks.landing / "2019-Oct.csv", mtime=OLD)
    first = scan(ticks.landing, SensorState(), now=OLD + 4.9)
    assert "2019-Oct.csv" in first.waiting and not first.run_requests
    assert "changed 4.9 s ago" in first.waiting["2019-Oct.csv"]
    second = scan(ticks.landing, first.state, now=OLD + 5.0)
    assert [r.partition_key for r in second.run_requests] == ["2019-10"]
    assert second.run_requests[0].run_key == SourceFingerprint.of(path).run_key()
    assert not scan(ticks.landing, SensorState(), now=OLD + 0.5, settle=0).waiting


def test_a_file_with_an_mtime_in_the_future_settles_on_the_sensors_clock(ticks):
    write(ticks.landing / "2019-Oct.csv", mtime=OLD + 3600)  # a file server an hour ahead
    first = scan(ticks.landing, SensorState(), now=OLD)
    assert first.waiting and not first.run_requests
    assert scan(ticks.landing, first.state, now=OLD + 4).waiting
    later = scan(ticks.landing, first.state, now=OLD + 5)
    assert [r.partition_key for r in later.run_requests] == ["2019-10"]


def test_a_change_restarts_the_settle_time(ticks):
    path = write(ticks.landing / "2019-Oct.csv", mtime=OLD + 3600)
    first = scan(ticks.landing, SensorState(), now=OLD)
    write(path, rows=4, mtime=OLD + 3600)  # grew between two ticks
    second = scan(ticks.landing, first.state, now=OLD + 5)
    assert second.waiting and not second.run_requests
    assert scan(ticks.landing, second.state, now=OLD + 10).run_requests


def test_several_months_at_once_become_several_runs_in_month_order(ticks):
    for name in ("2019-Dec.csv", "2019-10.csv.gz", "2019-Nov.csv"):
        write(ticks.landing / name)
    requests = ticks.requests()
    assert [r.partition_key for r in requests] == ["2019-10", "2019-11", "2019-12"]
    assert len({r.run_key for r in requests}) == 3


def test_a_month_built_elsewhere_from_the_same_file_is_not_run_again(ticks, instance):
    october = write(ticks.landing / "2019-Oct.csv")
    november = write(ticks.landing / "2019-Nov.csv")
    run_id = record_build(
        instance, "2019-10", fingerprint_metadata({"2019-10": SourceFingerprint.of(october)})
    )
    # Another month's fingerprint in the same metadata says nothing about November.
    record_build(
        instance, "2019-11", fingerprint_metadata({"2019-10": SourceFingerprint.of(november)})
    )

    assert [r.partition_key for r in ticks.requests()] == ["2019-11"]
    [skip] = ticks.logged("Skipping 2019-Oct.csv: ")
    assert skip == (
        f"Skipping 2019-Oct.csv: 2019-10 already built from this very file by run {run_id[:8]} "
        "(same name, size and mtime)."
    )
    assert ticks.requests() == []
    assert len(ticks.logged("Skipping 2019-Oct.csv: ")) == 2  # every tick says why


@pytest.mark.parametrize("change", ["size", "mtime", "name"])
def test_a_month_built_from_another_version_of_its_file_runs_again(ticks, instance, change):
    path = write(ticks.landing / "2019-Oct.csv")
    built = SourceFingerprint.of(path)
    if change == "size":
        write(path, rows=7)
    elif change == "mtime":
        os.utime(path, (OLD + 60, OLD + 60))
    else:
        path.rename(ticks.landing / "2019-10.csv")
    record_build(instance, "2019-10", fingerprint_metadata({"2019-10": built}))

    [request] = ticks.requests()
    assert request.partition_key == "2019-10"
    [logged] = ticks.logged("Requesting a run for 2019-10 from ")
    assert f"2019-10 was last built from {built.describe()}" in logged


def test_an_older_build_that_names_only_its_file_counts_if_it_started_after_the_last_change(
    ticks, instance
):
    path = write(ticks.landing / "2019-Oct.csv")
    run_id = record_build(instance, "2019-10", {"source_files": {"2019-10": "2019-Oct.csv"}})
    assert ticks.requests() == []
    [skip] = ticks.logged("Skipping 2019-Oct.csv: ")
    assert f"by run {run_id[:8]}, which started after its last change" in skip

    # Re-delivered after that run started: its month runs again once the file has settled.
    redelivered = instance.get_run_record_by_id(run_id).start_time + 1
    os.utime(path, (redelivered, redelivered))
    rescan = scan_landing(
        ticks.landing,
        SensorState.from_cursor(ticks.cursor),
        # Past the settle time with room to spare: the float time set above comes back from the
        # file system rounded to a nanosecond, which can land it a hair after `redelivered`.
        now=redelivered + 6,
        settle=5,
        last_build=lambda month: last_bronze_build(instance, month),
    )
    assert [r.partition_key for r in rescan.run_requests] == ["2019-10"]
    assert "2019-10 was last built by run" in rescan.requested["2019-Oct.csv"]


@pytest.mark.graph
def test_a_month_built_by_the_real_job_is_not_run_again_until_its_file_changes(
    instance, settings, landing_dir, spark
):
    """`make run`, then `make dev`: the sensor finds the month built from the file it sees, by
    the fingerprint bronze records."""
    path = write_source(landing_dir, "2019-Oct.csv", good_lines(20))
    os.utime(path, (OLD, OLD))
    result = run_job(settings, "2019-10", instance=instance)
    assert result.success

    ticks = Ticks(landing_dir, instance)
    assert ticks.requests() == []
    [skip] = ticks.logged("Skipping 2019-Oct.csv: ")
    assert f"already built from this very file by run {result.run_id[:8]}" in skip

    # Re-delivered with one more line and the same modification time: only the size tells.
    write_source(landing_dir, "2019-Oct.csv", good_lines(21))
    os.utime(path, (OLD, OLD))
    [request] = Ticks(landing_dir, instance).requests()
    assert request.partition_key == "2019-10"


def test_only_the_file_a_run_reads_counts_when_a_month_has_two(ticks):
    write(ticks.landing / "2019-10.csv")
    write(ticks.landing / "2019-Oct.csv")
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
    [request] = ticks.requests()
    assert request.partition_key == "2019-10"


def test_a_skipped_file_does_not_hide_a_good_one(ticks):
    write(ticks.landing / "2019-Sep.csv")
    write(ticks.landing / ".2019-Nov.csv.tmp")
    write(ticks.landing / "2019-Oct.csv")
    assert [r.partition_key for r in ticks.requests()] == ["2019-10"]


def test_a_missing_landing_dir_is_a_skip_not_an_error(tmp_path, instance):
    ticks = Ticks(tmp_path / "not-there", instance)
    result = ticks()
    assert isinstance(result, SkipReason)
    assert str(tmp_path / "not-there") in result.skip_message


def test_a_landing_path_that_is_a_file_is_a_skip_not_an_error(tmp_path, instance):
    (tmp_path / "landing").write_text("not a directory")
    result = Ticks(tmp_path / "landing", instance)()
    assert isinstance(result, SkipReason)


def defs_tick(defs: Definitions, instance: DagsterInstance, messages: list[str] | None = None):
    """One tick of the sensor as `defs` define it, on the real clock, with the resources of
    `defs` it asks for (as the daemon evaluates it)."""
    sensor = defs.resolve_sensor_def(SENSOR_NAME)
    resources = {key: defs.resources[key] for key in sensor.required_resource_keys}
    context = build_sensor_context(instance=instance, resources=resources)
    if messages is not None:
        collect_logs(context, messages)
    return sensor(context)


def test_the_defs_sensor_looks_at_the_landing_dir_of_its_settings(defs, settings, instance):
    write(Path(settings.landing_dir) / "2019-Oct.csv")
    other = Path(settings.landing_dir).parent / "elsewhere"
    other.mkdir()
    write(other / "2019-Nov.csv")

    result = defs_tick(defs, instance)

    assert [r.partition_key for r in result.run_requests] == ["2019-10"]
    moved = build_defs(settings.model_copy(update={"landing_dir": str(other)}))
    assert [r.partition_key for r in defs_tick(moved, instance).run_requests] == ["2019-11"]


def test_the_defs_sensor_waits_the_settle_time_of_its_settings(settings, instance):
    # Changed 30 s ago on the real clock: settled for a 10 s settle time, not for a 60 s one.
    # The margins leave the test 30 s of slack either way.
    changed = time.time() - 30
    path = write(Path(settings.landing_dir) / "2019-Oct.csv", mtime=changed)

    patient = build_defs(settings.model_copy(update={"sensor_settle_seconds": 60.0}))
    messages: list[str] = []
    waiting = defs_tick(patient, instance, messages)
    assert not waiting.run_requests
    [logged] = [m for m in messages if m.startswith("Waiting for 2019-Oct.csv: ")]
    assert "unchanged for 60 s" in logged

    quick = build_defs(settings.model_copy(update={"sensor_settle_seconds": 10.0}))
    [request] = defs_tick(quick, instance).run_requests
    assert request.run_key == SourceFingerprint.of(path).run_key()


def test_an_unreadable_cursor_costs_a_tick_not_an_exception(ticks):
    path = write(ticks.landing / "2019-Oct.csv")
    for cursor in (
        "not json",
        json.dumps({"observed": {"2019-Oct.csv": "bad"}}),
        json.dumps({"handled": {"2019-Oct.csv": 3}}),
        # A cursor of the previous version, which waited a tick before any file.
        json.dumps({"version": 1, "observed": {"2019-Oct.csv": [1, 2]}, "requested": {}}),
    ):
        ticks.cursor = cursor
        [request] = ticks.requests()
        assert request.run_key == SourceFingerprint.of(path).run_key()


def test_the_cursor_forgets_files_that_are_gone(ticks):
    path = write(ticks.landing / "2019-Oct.csv")
    ticks.requests()
    assert "2019-Oct.csv" in ticks.cursor
    path.unlink()
    ticks()
    assert json.loads(ticks.cursor)["observed"] == {}
    assert json.loads(ticks.cursor)["handled"] == {}


def test_the_sensor_runs_by_default_and_ticks_at_every_daemon_loop(defs, settings):
    sensor = defs.resolve_sensor_def(SENSOR_NAME)
    assert sensor.default_status == DefaultSensorStatus.RUNNING
    # Below the daemon's 5 s loop, so that the sensor ticks at every loop.
    assert sensor.minimum_interval_seconds == settings.sensor_interval_seconds == 3


@pytest.mark.parametrize("interval", [1, 30, 600])
def test_the_sensors_minimum_interval_is_the_interval_setting(interval):
    settings = Settings.from_env({"MEDALLION_SENSOR_INTERVAL_SECONDS": str(interval)})
    sensor = build_defs(settings).resolve_sensor_def(SENSOR_NAME)
    assert sensor.minimum_interval_seconds == interval
    built = build_landing_sensor(interval_seconds=interval, settle_seconds=5)
    assert built.name == SENSOR_NAME and built.minimum_interval_seconds == interval
