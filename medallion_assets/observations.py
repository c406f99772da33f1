"""Counts taken by Spark while a write runs: the data-quality checks' numbers at no extra pass.

A `pyspark.sql.Observation` attached to a DataFrame computes its aggregates as the rows flow
through the job that writes the DataFrame, and hands them to the driver when the job ends. The
checks compare these counts with each other and with the Delta log, instead of reading tables
again (which cost a quarter of a full-size month).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

from pyspark.sql import Column, DataFrame, Observation

# `Observation.get` blocks until the observed query has run; a bug that never runs it must not hang
# the step.
_TIMEOUT_SECONDS = 300.0


class Observed:
    """Named aggregates observed on a DataFrame: `attach` them, run the write, read `values`."""

    def __init__(self, name: str, **aggregates: Column) -> None:
        # Names must be unique within a plan and within the session's lifetime.
        self._observation = Observation(f"{name}_{uuid.uuid4().hex[:12]}")
        self._aggregates = aggregates

    def attach(self, frame: DataFrame) -> DataFrame:
        return frame.observe(
            self._observation,
            *[column.alias(name) for name, column in self._aggregates.items()],
        )

    def values_or_none_written(self, rows_written: Callable[[], int]) -> dict[str, object] | None:
        """`values`, or — when Spark reported nothing and ``rows_written()`` (asked only then, e.g.
        from the Delta log) is 0 — every aggregate as None, SQL's value of a sum over no rows.

        Spark drops the observation of a write whose plan it proves empty (a month without
        purchases has no revenue rows), which is not a failure to count: there was nothing.
        """
        observed = self.values()
        if observed:
            return observed
        return dict.fromkeys(self._aggregates) if rows_written() == 0 else observed

    def values(self, timeout: float = _TIMEOUT_SECONDS) -> dict[str, object] | None:
        """The observed values once the write has run; None if Spark never reports them."""
        result: dict[str, object] = {}
        done = threading.Event()

        def collect() -> None:
            try:
                result.update(self._observation.get)
            except Exception:  # no metrics row: Spark raises on reading it; reported as None
                return
            done.set()

        worker = threading.Thread(target=collect, daemon=True)
        worker.start()
        worker.join(timeout)
        return result if done.is_set() else None
