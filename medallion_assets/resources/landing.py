"""The landing directory where monthly source files arrive.

Every path the pipeline opens in the landing directory is built here, from a validated partition
key, and checked to be a regular file that really lies inside the directory (no ``..``, no
absolute names, no symbolic link pointing elsewhere). A missing, empty or wrongly shaped file is a
deterministic input error: it fails fast, names the file and the problem, and is not retried.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

from dagster import ConfigurableResource
from pydantic import Field

from medallion_assets.partitions import candidate_file_names, month_start
from medallion_assets.schema import SOURCE_HEADER

LANDING_ENV = "MEDALLION_LANDING_DIR"
DEFAULT_LANDING_DIR = "data/landing"


class SourceFileError(Exception):
    """A landing file is missing or unusable; retrying cannot help."""


class MissingSourceFile(SourceFileError):
    pass


class BadSourceFile(SourceFileError):
    pass


def open_text(path: Path):
    """A text stream over a plain or gzip-compressed source file, any line ending."""
    if path.name.endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8", newline=None)
    return open(path, encoding="utf-8", newline=None)


def inside(directory: Path, path: Path) -> bool:
    try:
        path.resolve(strict=True).relative_to(directory.resolve(strict=True))
    except (ValueError, FileNotFoundError):
        return False
    return True


class LandingDirectory(ConfigurableResource):
    """Where monthly CSVs land: ``$MEDALLION_LANDING_DIR``, else ``data/landing`` under the working
    directory (the project root when started through the Makefile)."""

    path: str | None = Field(default=None, description=f"Landing directory; default ${LANDING_ENV}.")

    def directory(self) -> Path:
        raw = self.path or os.environ.get(LANDING_ENV) or DEFAULT_LANDING_DIR
        return Path(raw).expanduser().absolute()

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
