"""How a Spark step retries, and how an input error refuses to.

A Spark step can fail for reasons that pass on their own: an executor lost, a storage service
throttling or briefly unreachable, a mounted landing share hiccuping. Such a step is retried up to
three times, waiting longer each time (exponential backoff) with a random spread (jitter) so that
runs that failed together do not all come back at the same moment. With a 5 s base the waits are
about 5 s, 15 s and 35 s (each ± 5 s).

A wrong input file fails the same way on every attempt, so retrying only delays the alert by the
sum of the waits: such errors are raised as `deterministic_failure`, which Dagster never retries
whatever the policy says.

An interrupt is not a transient failure either. Dagster 1.13 turns a ``KeyboardInterrupt`` (Ctrl-C
of a run started from a shell) or a ``DagsterExecutionInterruptedError`` (a termination request)
raised inside a step that has a retry policy into a retry (``op_execution_error_boundary`` in
``dagster/_core/execution/plan/utils.py``): the interrupted step would start again a few seconds
later and the run go on to commit and succeed, as if nobody had asked it to stop. Code that runs
Spark work inside a step therefore runs under `interrupts_stop_the_step`, which turns the
interrupt into a failure that is never retried.
"""

import contextlib
import functools
import inspect
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

from dagster import Backoff, DagsterExecutionInterruptedError, Failure, Jitter, RetryPolicy

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


INTERRUPTED = (
    "The run was interrupted (Ctrl-C or a termination request): this step stops here and is not "
    "retried; every table keeps its last committed version."
)


@contextlib.contextmanager
def interrupts_stop_the_step() -> Iterator[None]:
    """Within it, an interrupt fails the step for good instead of being retried (see above)."""
    try:
        yield
    except (KeyboardInterrupt, DagsterExecutionInterruptedError) as interrupt:
        raise deterministic_failure(INTERRUPTED) from interrupt


Fn = TypeVar("Fn", bound=Callable[..., Any])


def stops_when_interrupted(fn: Fn) -> Fn:
    """`interrupts_stop_the_step` around a step's body, a generator's iteration included; the
    signature Dagster reads (its context and inputs) is ``fn``'s."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def generator(*args, **kwargs):
            with interrupts_stop_the_step():
                yield from fn(*args, **kwargs)

        return generator  # type: ignore[return-value]

    @functools.wraps(fn)
    def function(*args, **kwargs):
        with interrupts_stop_the_step():
            return fn(*args, **kwargs)

    return function  # type: ignore[return-value]
