"""How a Spark step retries, and how an input error refuses to.

A Spark step can fail for reasons that pass on their own: an executor lost, a storage service
throttling or briefly unreachable, a mounted landing share hiccuping. Such a step is retried up to
three times, waiting longer each time (exponential backoff) with a random spread (jitter) so that
runs that failed together do not all come back at the same moment. With a 5 s base the waits are
about 5 s, 15 s and 35 s (each ± 5 s).

A wrong input file fails the same way on every attempt, so retrying only delays the alert by the
sum of the waits: such errors are raised as `deterministic_failure`, which Dagster never retries
whatever the policy says.
"""

from collections.abc import Mapping
from typing import Any

from dagster import Backoff, Failure, Jitter, RetryPolicy

MAX_RETRIES = 3
BASE_DELAY_SECONDS = 5.0

SPARK_RETRY_POLICY = RetryPolicy(
    max_retries=MAX_RETRIES,
    delay=BASE_DELAY_SECONDS,
    backoff=Backoff.EXPONENTIAL,
    jitter=Jitter.PLUS_MINUS,
)


def deterministic_failure(description: str, metadata: Mapping[str, Any] | None = None) -> Failure:
    """A step failure that bypasses the retry policy: the next attempt would fail the same way."""
    return Failure(description=description, metadata=dict(metadata or {}), allow_retries=False)
