import contextlib
import gzip
import os
import random
import re
import sys

import pytest
from dagster import DagsterInstance, DagsterUnknownPartitionError

from medallion_assets.partitions import InvalidPartitionKey
from medallion_assets.resources import landing
from medallion_assets.resources.landing import BadSourceFile, LandingDirectory, MissingSourceFile
from medallion_assets.schema import SOURCE_HEADER

ROW = "2019-10-01 00:00:00 UTC,view,1,2053013555631882655,,apple,1.00,5,s"


def test_missing_file_names_every_path_looked_for(landing_dir):
    with pytest.raises(MissingSourceFile) as error:
        LandingDirectory(path=str(landing_dir)).source_file("2019-10")
    message = str(error.value)
    for name in ["2019-Oct.csv", "2019-Oct.csv.gz", "2019-10.csv", "2019-10.csv.gz"]:
        assert str(landing_dir / name) in message


def test_finds_gzip_and_numeric_names(landing_dir):
    target = landing_dir / "2019-10.csv.gz"
    with gzip.open(target, "wt") as handle:
        handle.write(SOURCE_HEADER + "\n" + ROW + "\n")
    found = LandingDirectory(path=str(landing_dir)).source_file("2019-10")
    assert found == target
    LandingDirectory.check_header(found)


def test_invalid_key_is_rejected_before_any_path_is_built(landing_dir):
    with pytest.raises(ValueError, match="expected YYYY-MM"):
        LandingDirectory(path=str(landing_dir)).source_file("../../etc/passwd")


def test_symlink_leaving_the_landing_dir_is_refused(landing_dir, tmp_path):
    outside = tmp_path / "outside.csv"
    outside.write_text(SOURCE_HEADER + "\n" + ROW + "\n")
    os.symlink(outside, landing_dir / "2019-Oct.csv")
    with pytest.raises(BadSourceFile, match="outside the landing directory"):
        LandingDirectory(path=str(landing_dir)).source_file("2019-10")


def test_a_directory_with_a_month_name_is_not_a_source(landing_dir):
    (landing_dir / "2019-Oct.csv").mkdir()
    with pytest.raises(MissingSourceFile):
        LandingDirectory(path=str(landing_dir)).source_file("2019-10")


@pytest.mark.parametrize(
    "content,message",
    [
        ("", "empty"),
        (SOURCE_HEADER + "\n", "no data rows"),
        (SOURCE_HEADER + "\r\n\r\n", "no data rows"),
        ("event_time,event_type,product_id\n" + ROW + "\n", "expected columns"),
    ],
)
def test_bad_files_are_reported_by_name(tmp_path, content, message):
    path = tmp_path / "2019-Oct.csv"
    path.write_text(content)
    with pytest.raises(BadSourceFile, match=message) as error:
        LandingDirectory.check_header(path)
    assert str(path) in str(error.value)


def test_wrong_header_lists_expected_and_found_columns(tmp_path):
    path = tmp_path / "2019-Oct.csv"
    path.write_text("time,type\n1,2\n")
    with pytest.raises(BadSourceFile) as error:
        LandingDirectory.check_header(path)
    assert "'user_session'" in str(error.value) and "['time', 'type']" in str(error.value)


def test_bom_and_crlf_header_is_accepted(tmp_path):
    path = tmp_path / "2019-Oct.csv"
    path.write_bytes(("\ufeff" + SOURCE_HEADER + "\r\n" + ROW + "\r\n").encode("utf-8"))
    LandingDirectory.check_header(path)


# -- nothing outside the landing directory is ever opened ------------------------------------------

_opened: list[tuple[str, object]] | None = None


def _record_file_access(event: str, args: tuple) -> None:
    if _opened is not None and event in ("open", "os.listdir", "os.scandir"):
        _opened.append((event, args[0] if args else None))


sys.addaudithook(_record_file_access)


@contextlib.contextmanager
def file_accesses():
    """Every file open and directory listing made by this process inside the block."""
    global _opened
    _opened = []
    try:
        yield _opened
    finally:
        _opened = None


@pytest.mark.parametrize(
    "key",
    ["../2019-10", "..", "2019-10/../../2019-10", "/etc/passwd", "/tmp/2019-10", "2019-10\x00",
     " 2019-10", "2019-10\n", "2019-10.csv", "2019-1", "2019-13", "2019-09", "", "２０１９-10"],
)
def test_a_malformed_key_is_refused_before_any_file_is_touched(key, landing_dir, tmp_path):
    # A file a traversal would reach, were a path built from the key.
    (tmp_path / "2019-10.csv").write_text(SOURCE_HEADER + "\n" + ROW + "\n")
    with file_accesses() as accesses, pytest.raises(InvalidPartitionKey):
        LandingDirectory(path=str(landing_dir)).source_file(key)
    assert accesses == []


def test_a_relative_symlink_climbing_out_is_refused_without_opening_it(landing_dir, tmp_path):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "2019-Oct.csv").write_text(SOURCE_HEADER + "\n" + ROW + "\n")
    os.symlink("../elsewhere/2019-Oct.csv", landing_dir / "2019-Oct.csv")
    with file_accesses() as accesses, pytest.raises(BadSourceFile, match="outside the landing"):
        LandingDirectory(path=str(landing_dir)).source_file("2019-10")
    assert accesses == []


def test_a_chain_of_symlinks_ending_outside_is_refused(landing_dir, tmp_path):
    outside = tmp_path / "outside.csv"
    outside.write_text(SOURCE_HEADER + "\n" + ROW + "\n")
    os.symlink(outside, landing_dir / ".hop")
    os.symlink(".hop", landing_dir / "2019-10.csv.gz")
    with pytest.raises(BadSourceFile, match="outside the landing"):
        LandingDirectory(path=str(landing_dir)).source_file("2019-10")


def test_a_symlink_to_a_file_inside_the_landing_dir_is_accepted(landing_dir):
    (landing_dir / "incoming").mkdir()
    real = landing_dir / "incoming" / "export-2019-10.csv"
    real.write_text(SOURCE_HEADER + "\n" + ROW + "\n")
    os.symlink("incoming/export-2019-10.csv", landing_dir / "2019-Oct.csv")
    found = LandingDirectory(path=str(landing_dir)).source_file("2019-10")
    assert found == landing_dir / "2019-Oct.csv"


def test_a_landing_dir_reached_through_a_symlink_works(tmp_path):
    real = tmp_path / "mnt" / "landing"
    real.mkdir(parents=True)
    (real / "2019-Oct.csv").write_text(SOURCE_HEADER + "\n" + ROW + "\n")
    os.symlink(real, tmp_path / "link")
    landing = LandingDirectory(path=str(tmp_path / "link"))
    assert landing.source_file("2019-10") == tmp_path / "link" / "2019-Oct.csv"


@pytest.mark.graph
def test_dagster_refuses_a_malformed_key_before_the_run_starts(defs):
    job = defs.resolve_job_def("medallion_monthly")
    with pytest.raises(DagsterUnknownPartitionError):
        job.execute_in_process(partition_key="../2019-10", instance=DagsterInstance.ephemeral())


def _reference_data_lines(data: bytes) -> int:
    """Lines holding a byte above 0x20, less the header: the definition, line by line, with the
    breaks of Spark's line reader (CR LF, CR, LF)."""
    lines = re.split(rb"\r\n|\r|\n", data)
    if data.endswith((b"\n", b"\r")):
        lines.pop()
    return max(sum(any(b > 0x20 for b in line) for line in lines) - 1, 0)


@pytest.mark.parametrize("chunk", [1, 2, 3, 8, 64, 1 << 24])
def test_data_lines_are_counted_exactly_across_chunk_boundaries(tmp_path, monkeypatch, chunk):
    monkeypatch.setattr(landing, "_CHUNK_BYTES", chunk)
    rng = random.Random(chunk)
    pieces = [b"a,b,c", b"", b" ", b"\t \r", b"\r", b"x", b"\x00", b"\xef\xbb\xbfh", b"y" * 200]
    pieces += [b"a\rb", b'"sam\rsung",1', b"\r\r", b"z\r"]
    cases = [b"", b"\n", b"h\n", b"h", b"h\n\n\n", b"h\r\n1\r\n\r\n2", b"h\n  \n \t\n3\n   "]
    cases += [b"h\r1\r2\r", b"h\r1\r\r \r2", b"h\n1\r", b"h\r\n1\r2\r\n", b"\r\r\rh\r1"]
    for _ in range(40):
        lines = [rng.choice(pieces) for _ in range(rng.randrange(0, 30))]
        cases.append(b"\n".join(lines) + rng.choice([b"", b"\n", b"\r\n", b"\n\n"]))
    for number, data in enumerate(cases):
        path = tmp_path / f"{number}.csv"
        path.write_bytes(data)
        assert landing.count_data_lines(path) == _reference_data_lines(data), data
        packed = tmp_path / f"{number}.csv.gz"
        packed.write_bytes(gzip.compress(data))
        assert landing.count_data_lines(packed) == _reference_data_lines(data), data


def test_rows_are_estimated_from_plain_files_sizes_and_not_from_compressed_ones(tmp_path):
    plain = [tmp_path / "2019-10.csv", tmp_path / "2019-11.csv"]
    plain[0].write_bytes(b"x" * 25_000)
    plain[1].write_bytes(b"y" * 5_050)
    assert landing.estimated_rows(plain) == 30_050 // landing.ESTIMATED_LINE_BYTES
    compressed = tmp_path / "2019-12.csv.gz"
    compressed.write_bytes(gzip.compress(b"z" * 1_000))
    assert landing.estimated_rows([*plain, compressed]) is None
