"""Run a command and measure it: wall time, CPU time of its whole process tree, the peak resident
memory of its Python and JVM processes, and the command lines its JVMs were started with.

CPU time (user + system) is reported beside the wall time because it moves much less than wall
time when other work shares the machine. It is the kernel's account, not a sample: this process
makes itself the "subreaper" of what it starts (Linux ``PR_SET_CHILD_SUBREAPER``), so a descendant
whose parent exits first (a JVM that outlives its Python driver) is handed to it rather than to
init; after the command exits it waits for those too, and the CPU time is the growth of its
children's resource usage (``getrusage(RUSAGE_CHILDREN)``), which holds every process of the tree
once reaped, the short-lived ones (spark-submit's shell scripts, the launcher JVM) and each
process's last moments included. Where that is not available the CPU time is summed from the
samples instead (``cpu_source`` says which), which misses up to a sampling interval per process.

Memory is sampled every 0.2 s with psutil over the process tree, as are the JVMs' command lines,
from which bench.py reads the settings each JVM was really given (`spark_settings.launched_conf`).
"""

import contextlib
import ctypes
import os
import resource
import subprocess
import threading
import time
from dataclasses import dataclass, field

import psutil

_PR_SET_CHILD_SUBREAPER = 36
# How long to wait, after the command exits, for descendants that outlived it.
_ORPHAN_WAIT_SECONDS = 60.0


@dataclass
class Measurement:
    name: str
    seconds: float
    peak_python_mb: float
    peak_jvm_mb: float
    returncode: int
    cpu_seconds: float = 0.0
    cpu_source: str = "sampled"
    # The command line of each JVM seen in the tree, by process id.
    jvm_commands: dict[int, list[str]] = field(default_factory=dict)
    # Descendants still running when the wait for them ended (their CPU time is not counted).
    left_running: int = 0


def _tree(root: psutil.Process) -> list[psutil.Process]:
    try:
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def _kind(process: psutil.Process) -> str | None:
    name = process.name()
    if "java" in name:
        return "java"
    if "python" in name or "dagster" in name:
        return "python"
    return None


_subreaper: bool | None = None


def _become_subreaper() -> bool:
    """Make this process the one that orphaned descendants are handed to (once per process)."""
    global _subreaper
    if _subreaper is None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            _subreaper = libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
        except (OSError, AttributeError):
            _subreaper = False
    return _subreaper


def _reap_exited(wait_seconds: float) -> int:
    """Reap the children of this process that have exited, waiting up to ``wait_seconds`` for
    those still running; returns how many are still running then."""
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return 0
        if pid:
            continue
        if time.monotonic() >= deadline:
            return len(psutil.Process().children())
        time.sleep(0.05)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_measured(
    name: str,
    command: list[str],
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    log_path: str | None = None,
) -> Measurement:
    """Run ``command`` to its end and measure it. The caller runs nothing else meanwhile: every
    child this process reaps while measuring counts towards the command's CPU time."""
    exact = _become_subreaper()
    if exact:
        _reap_exited(0)  # what earlier commands left behind is not this one's
    cpu_before = _children_cpu()
    peaks = {"python": 0, "java": 0}
    cpu: dict[int, float] = {}
    jvm_commands: dict[int, list[str]] = {}
    start = time.perf_counter()
    with contextlib.ExitStack() as stack:
        log = stack.enter_context(open(log_path, "w")) if log_path else subprocess.DEVNULL
        process = subprocess.Popen(
            command, env=env or dict(os.environ), cwd=cwd, stdout=log, stderr=subprocess.STDOUT
        )
        root = psutil.Process(process.pid)
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                for proc in _tree(root):
                    try:
                        times = proc.cpu_times()
                        cpu[proc.pid] = times.user + times.system
                        kind = _kind(proc)
                        if kind:
                            peaks[kind] = max(peaks[kind], proc.memory_info().rss)
                        if kind == "java" and proc.pid not in jvm_commands:
                            jvm_commands[proc.pid] = proc.cmdline()
                    except psutil.Error:
                        pass
                done.wait(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        returncode = process.wait()
        seconds = time.perf_counter() - start
        done.set()
        sampler.join()
    left_running = _reap_exited(_ORPHAN_WAIT_SECONDS) if exact else 0
    return Measurement(
        name,
        seconds,
        peaks["python"] / 2**20,
        peaks["java"] / 2**20,
        returncode,
        cpu_seconds=_children_cpu() - cpu_before if exact else sum(cpu.values()),
        cpu_source="rusage" if exact else "sampled",
        jvm_commands=jvm_commands,
        left_running=left_running,
    )
