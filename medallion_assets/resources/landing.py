"""The landing directory where monthly source files arrive.

Every path the pipeline opens in the landing directory is built here, from a validated partition
key, and checked to be a regular file that really lies inside the directory (no ``..``, no
absolute names, no symbolic link pointing elsewhere). A missing, empty or wrongly shaped file is a
deterministic input error: it fails fast, names the file and the problem, and is not retried.
"""

from __future__ import annotations

import datetime as dt
import gzip
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from dagster import ConfigurableResource, MetadataValue
from pydantic import Field

from medallion_assets.partitions import candidate_file_names, month_start
from medallion_assets.schema import SOURCE_HEADER
from medallion_assets.settings import Settings

DEFAULT_LANDING_DIR = Settings.model_fields["landing_dir"].default


class SourceFileError(Exception):
    """A landing file is missing or unusable; retrying cannot help."""


class MissingSourceFile(SourceFileError):
    pass


class BadSourceFile(SourceFileError):
    pass


# Bronze/events' materialization metadata entry naming the file each month was built from.
SOURCE_FINGERPRINT_METADATA = "source_fingerprint"


@dataclass(frozen=True)
class SourceFingerprint:
    """Which version of a landing file was (or would be) read: name, size, modification time.

    Bronze records it for every month it builds, and the landing sensor compares it with the file
    it sees, so a month already built from the very same file is not run again, whoever built it
    (``make run``, the CLI, a backfill, an earlier tick), while a re-delivered or changed file is.

    Why not a content hash: it would read the whole file on every tick that sees a new version,
    which for a full-size month (about 5 GB) costs tens of seconds of disk before anything can
    start, and a re-delivery with identical bytes re-running its month is harmless. Any writer
    that changes the bytes changes the size or the modification time (nanoseconds), and a copy
    that preserves the time (``cp -p``, ``rsync -t``) of a different file changes the size in
    practice; the combination is what build tools such as ``make`` and ``rsync`` trust too.
    """

    file: str
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: Path) -> SourceFingerprint:
        """The fingerprint of the file behind `path` (a symbolic link is followed)."""
        info = path.stat()
        return cls(path.name, info.st_size, info.st_mtime_ns)

    def run_key(self) -> str:
        return f"{self.file}:{self.mtime_ns}:{self.size}"

    def describe(self) -> str:
        modified = dt.datetime.fromtimestamp(self.mtime_ns / 1e9, dt.timezone.utc)
        return f"{self.file} ({self.size:,} bytes, modified {modified:%Y-%m-%d %H:%M:%S} UTC)"

    def to_json(self) -> dict[str, Any]:
        return {"file": self.file, "size": self.size, "mtime_ns": self.mtime_ns}

    @classmethod
    def from_json(cls, raw: Any) -> SourceFingerprint | None:
        """The fingerprint in `raw`, or None when `raw` is not one (older or foreign metadata)."""
        if not isinstance(raw, Mapping):
            return None
        try:
            return cls(str(raw["file"]), int(raw["size"]), int(raw["mtime_ns"]))
        except (KeyError, TypeError, ValueError):
            return None


def fingerprint_metadata(by_month: Mapping[str, SourceFingerprint]) -> dict[str, MetadataValue]:
    """Materialization metadata recording, per month key, the source file it was built from."""
    return {
        SOURCE_FINGERPRINT_METADATA: MetadataValue.json(
            {month: fingerprint.to_json() for month, fingerprint in sorted(by_month.items())}
        )
    }


def fingerprint_in_metadata(metadata: Mapping[str, Any], month: str) -> SourceFingerprint | None:
    """The fingerprint `fingerprint_metadata` recorded for `month` (metadata values already
    unwrapped, as in ``{k: v.value}``), or None when it is absent or unreadable."""
    by_month = metadata.get(SOURCE_FINGERPRINT_METADATA)
    if not isinstance(by_month, Mapping):
        return None
    return SourceFingerprint.from_json(by_month.get(month))


def open_text(path: Path):
    """A text stream over a plain or gzip-compressed source file, any line ending."""
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", newline=None)
    return open(path, encoding="utf-8", newline=None)


_CHUNK_BYTES = 1 << 24
# A line break as Spark's line reader (Hadoop's) ends a line: CR LF, a CR alone or an LF alone.
_BREAK = rb"(?:\r\n|\r(?!\n)|\n)"
# A line break followed by a blank line: only bytes up to 0x20 (Java's trim, which is what Spark's
# CSV reader uses to skip blank lines) other than CR and LF before the next break. A lookahead, so
# that runs of blank lines are each counted.
_BLANK_LINE_AHEAD = re.compile(_BREAK + rb"(?=[\x00-\x09\x0b\x0c\x0e-\x20]*[\r\n])")


class _LineCounter:
    """Counts line breaks, and blank lines after them, in a buffer: numpy's vectorised comparisons
    instead of bytes.count and a regular expression over every line (1.8 and 2.1 CPU seconds on a
    full-size month, against about 0.6 in all). The regular expression still decides, exactly,
    for a chunk where some break is followed by a byte up to 0x20 — the only way a blank line
    can start — which a file without blank lines never has.

    A break is what Spark's line reader ends a line at: LF, CR LF, and also a CR alone, which a
    field can hold (even quoted: the reader does not look at quotes). Such a line reaches bronze as
    two lines, each rejected for its field count; counted the same way here, so that the lines
    still add up. A chunk without any CR (one memchr) is counted by LF alone, as before."""

    def __init__(self) -> None:
        self._newline = np.empty(0, dtype=bool)
        self._low = np.empty(0, dtype=bool)

    def count(self, buffer: bytearray, last: int) -> tuple[int, int]:
        """(newlines in ``buffer[:last]``, blank lines starting at them), ``buffer[last]`` being a
        newline. Scratch arrays are reused: fresh ones would fault in new pages every chunk."""
        if len(self._newline) < last:
            self._newline = np.empty(len(buffer), dtype=bool)
            self._low = np.empty(len(buffer), dtype=bool)
        carriage_returns = buffer.find(b"\r", 0, last + 1) != -1
        data = np.frombuffer(buffer, dtype=np.uint8, count=last + 1)
        newline = np.equal(data[:-1], 10, out=self._newline[:last])
        if carriage_returns:  # a CR not followed by LF is a break too
            lone_cr = np.logical_and(data[:-1] == 13, data[1:] != 10)
            np.logical_or(newline, lone_cr, out=newline)
            del lone_cr
        lines = int(np.count_nonzero(newline))
        low = np.less_equal(data[1:], 0x20, out=self._low[:last])
        # A blank line starts after a break, with a byte up to 0x20 (after the LF of a CR LF).
        maybe_blank = bool(np.any(np.logical_and(newline, low, out=low)))
        del data, newline, low  # release the buffer, which may grow next
        if not maybe_blank:
            return lines, 0
        return lines, len(_BLANK_LINE_AHEAD.findall(buffer, 0, last + 1))


def count_data_lines(path: Path) -> int:
    """The file's data lines, counted from its bytes: every line holding a character above U+0020,
    less the header. Independent of every parser (Spark's included), so that accepted rows +
    rejected rows can be checked against it.

    Reads the file in 16 MiB chunks into one buffer, reused: memory does not grow with the file,
    and no chunk is allocated or copied again. It runs beside Spark's parse of the same file, so
    every CPU second it saves is one the parse gets back: 6.8 CPU seconds for a full-size month
    when each chunk was a new bytes object searched by bytes.count and a regular expression.
    """
    opener = gzip.open if path.name.endswith(".gz") else open
    counter = _LineCounter()
    lines = blank = 0
    # The stream is read as "\n" + file (+ "\n" if the last line has none): every line then
    # starts right after a break, and a blank one is a break followed by blanks and a break.
    # buffer[:start] holds what follows the last break seen (from that break on).
    buffer = bytearray(_CHUNK_BYTES)
    buffer[0] = ord("\n")
    start = 1
    with opener(path, "rb") as handle:
        while True:
            if start > len(buffer) // 2:  # a line longer than half the buffer
                buffer.extend(bytes(len(buffer)))
            with memoryview(buffer) as view, view[start:] as free:
                read = handle.readinto(free)
            if not read:
                break
            end = start + read
            last = buffer.rfind(b"\n", 0, end)
            # A CR alone after the last LF ends a line too (the byte after it read already, so it
            # is known not to be an LF): a file of CR-ended lines is still read a chunk at a time.
            last = max(last, buffer.rfind(b"\r", last + 1, end - 1))
            if last > 0:
                found, blanks = counter.count(buffer, last)
                lines += found
                blank += blanks
            buffer[: end - last] = buffer[last:end]
            start = end - last
    rest = bytes(buffer[:start])
    rest = rest if rest.endswith(b"\n") and len(rest) > 1 else rest + b"\n"
    if len(rest) > 1:
        lines += len(re.findall(_BREAK, rest)) - 1
        blank += len(_BLANK_LINE_AHEAD.findall(rest))
    return max(lines - blank - 1, 0)


# The source's lines are 130-140 bytes long (REES46's log, and `sample_data`'s); a smaller figure
# makes the estimate below err towards more rows.
ESTIMATED_LINE_BYTES = 100


def estimated_rows(paths: Iterable[Path]) -> int | None:
    """About how many data lines the files hold, from their sizes alone (`ESTIMATED_LINE_BYTES`),
    before the exact count (`count_data_lines`) reads them; None when a file is compressed, whose
    size does not say. What the Spark session is started for (`SparkSessionResource.session_for`).
    """
    total = 0
    for path in paths:
        if path.name.endswith(".gz"):
            return None
        total += path.stat().st_size
    return total // ESTIMATED_LINE_BYTES


def inside(directory: Path, path: Path) -> bool:
    try:
        path.resolve(strict=True).relative_to(directory.resolve(strict=True))
    except (ValueError, FileNotFoundError):
        return False
    return True


class LandingDirectory(ConfigurableResource):
    """Where monthly CSVs land (``$MEDALLION_LANDING_DIR``, see `medallion_assets.settings`); a
    relative path is taken from the working directory (the project root under the Makefile)."""

    path: str = Field(default=DEFAULT_LANDING_DIR, description="Landing directory.")

    def directory(self) -> Path:
        return Path(self.path or DEFAULT_LANDING_DIR).expanduser().absolute()

    def source_file(self, partition_key: str) -> Path:
        """The month's source file, checked to exist, be a regular file and lie in the directory."""
        month_start(partition_key)  # validates the key before any path is built
        directory = self.directory()
        looked_at = []
        for name in candidate_file_names(partition_key):
            candidate = directory / name
            looked_at.append(str(candidate))
            if candidate.is_symlink() and not inside(directory, candidate):
                raise BadSourceFile(f"{candidate} links outside the landing directory {directory}.")
            if candidate.is_file() and inside(directory, candidate):
                return candidate
        raise MissingSourceFile(
            f"No source file for month {partition_key}: looked for " + ", ".join(looked_at) + "."
        )

    @staticmethod
    def check_header(path: Path) -> None:
        """Fail unless the file starts with the expected header and has at least one data line."""
        try:
            with open_text(path) as handle:
                header = handle.readline()
                first_row = handle.readline()
                while first_row and not first_row.strip():
                    first_row = handle.readline()
        except (OSError, EOFError, UnicodeDecodeError) as error:
            raise BadSourceFile(f"{path}: cannot be read as UTF-8 CSV text ({error}).") from error
        if not header:
            raise BadSourceFile(f"{path}: the file is empty (zero bytes, no header).")
        found = header.lstrip("\ufeff").rstrip("\r\n")
        if found != SOURCE_HEADER:
            raise BadSourceFile(
                f"{path}: wrong header.\n  expected columns: {SOURCE_HEADER.split(',')}\n"
                f"  found columns:    {found.split(',')}"
            )
        if not first_row:
            raise BadSourceFile(f"{path}: the file has a header but no data rows.")
