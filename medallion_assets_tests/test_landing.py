import gzip
import os

import pytest

from medallion_assets.resources.landing import BadSourceFile, LandingDirectory, MissingSourceFile
from medallion_assets.schema import SOURCE_HEADER

ROW = "2019-10-01 00:00:00 UTC,view,1,2053013555631882655,,apple,1.00,5,s"


def test_missing_file_names_every_path_looked_for(landing_dir):
    with pytest.raises(MissingSourceFile) as error:
        LandingDirectory().source_file("2019-10")
    message = str(error.value)
    for name in ["2019-Oct.csv", "2019-Oct.csv.gz", "2019-10.csv", "2019-10.csv.gz"]:
        assert str(landing_dir / name) in message


def test_finds_gzip_and_numeric_names(landing_dir):
    target = landing_dir / "2019-10.csv.gz"
    with gzip.open(target, "wt") as handle:
        handle.write(SOURCE_HEADER + "\n" + ROW + "\n")
    found = LandingDirectory().source_file("2019-10")
    assert found == target
    LandingDirectory.check_header(found)


def test_invalid_key_is_rejected_before_any_path_is_built(landing_dir):
    with pytest.raises(ValueError, match="expected YYYY-MM"):
        LandingDirectory().source_file("../../etc/passwd")


def test_symlink_leaving_the_landing_dir_is_refused(landing_dir, tmp_path):
    outside = tmp_path / "outside.csv"
    outside.write_text(SOURCE_HEADER + "\n" + ROW + "\n")
    os.symlink(outside, landing_dir / "2019-Oct.csv")
    with pytest.raises(BadSourceFile, match="outside the landing directory"):
        LandingDirectory().source_file("2019-10")


def test_a_directory_with_a_month_name_is_not_a_source(landing_dir):
    (landing_dir / "2019-Oct.csv").mkdir()
    with pytest.raises(MissingSourceFile):
        LandingDirectory().source_file("2019-10")


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
