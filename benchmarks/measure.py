"""Run a command and measure it: wall time, CPU time, and the peak resident memory of its Python
and JVM processes (the whole process tree, sampled every 0.2 s with psutil).

CPU time (user + system, summed over the tree's processes as last sampled) is reported beside the
wall time because it moves much less than wall time when other work shares the machine.
"""

import contextlib
import os
import subprocess
import threading
import time
from dataclasses import dataclass

import psutil


@dataclass
class Measurement:
    name: str
    seconds: float
    peak_python_mb: float
    peak_jvm_mb: float
    returncode: int
    cpu_seconds: float = 0.0


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


def run_measured(
    name: str,
    command: list[str],
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    log_path: str | None = None,
) -> Measurement:
    peaks = {"python": 0, "java": 0}
    cpu: dict[int, float] = {}
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
                    except psutil.Error:
                        pass
                done.wait(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        returncode = process.wait()
        seconds = time.perf_counter() - start
        done.set()
        sampler.join()
    return Measurement(
        name,
        seconds,
        peaks["python"] / 2**20,
        peaks["java"] / 2**20,
        returncode,
        cpu_seconds=sum(cpu.values()),
    )
