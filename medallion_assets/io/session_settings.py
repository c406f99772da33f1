"""Spark session settings for the duration of a block, and the session's own afterwards.

A Spark session outlives any one write: the steps of a Dagster run share one, a session created
outside the run (a notebook's, the test suite's) is reused as it is, and a Spark Connect server
keeps a session per client for as long as the client lives. A write that needs settings of its
own therefore sets them for its block only, and puts back what it found: the previous value where
there was one, and no value at all where there was none — so the session's default applies again,
rather than a copy of it frozen at the time of the write.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

from pyspark.sql import SparkSession


@contextlib.contextmanager
def session_settings(session: SparkSession, settings: Mapping[str, str]) -> Iterator[None]:
    """Within the block, ``session`` has ``settings``; afterwards, whatever it had before (a
    setting that was not set is unset again), also when the block fails."""
    # An explicit default of None gives back only what was set, not Spark's built-in default.
    previous = {key: session.conf.get(key, None) for key in settings}
    try:
        for key, value in settings.items():
            session.conf.set(key, value)
        yield
    finally:
        for key, value in previous.items():
            if value is None:
                session.conf.unset(key)
            else:
                session.conf.set(key, value)
