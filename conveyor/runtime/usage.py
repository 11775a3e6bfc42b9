"""Resource accounting: what one step attempt used (wall, CPU, peak memory, artifact bytes, GPU).

Measured where the attempt runs and handed back with its result, so the driver records them in the
transaction that records the step run's end (the one attempt of a step run that completed the first
time in the step run's own row, the others as ``step_attempts`` rows). Two ways to measure:

- ``thread``: the attempt's own thread (``getrusage(RUSAGE_THREAD)`` on Linux, ``time.thread_time``
  elsewhere); peak RSS is the whole process's high-water mark, shared with every other thread of it.
- ``process``: a forked child that runs only the attempt; ``getrusage`` of the child and of the
  processes it started and waited for, and the child's own peak RSS.

GPU time and peak memory are read only when ``pynvml`` imports and finds a device; ``None`` otherwise.
"""

from __future__ import annotations

import resource
import sys
import time
from dataclasses import dataclass
from typing import Any

from conveyor.store.artifacts.tally import Tally, begin, end

# ru_maxrss is in kilobytes on Linux, in bytes on macOS
_RSS_UNIT = 1 if sys.platform == "darwin" else 1024


@dataclass(slots=True)
class AttemptUsage:
    """One attempt of a step call and what it used (``None``: not measured)."""

    attempt: int
    status: str                       # completed | failed | preempted | timeout | cancelled
    started_at: float
    ended_at: float
    cpu_s: float | None = None
    peak_rss_bytes: int | None = None
    bytes_read: int = 0
    bytes_written: int = 0
    gpu_s: float | None = None
    gpu_peak_bytes: int | None = None
    error: str | None = None
    host: str | None = None

    @property
    def wall_s(self) -> float:
        return max(0.0, self.ended_at - self.started_at)


@dataclass(slots=True)
class Measures:
    """What one attempt used, before it knows its number and status."""

    cpu_s: float | None = None
    peak_rss_bytes: int | None = None
    bytes_read: int = 0
    bytes_written: int = 0
    gpu_s: float | None = None
    gpu_peak_bytes: int | None = None


def process_cpu() -> float:
    """CPU seconds (user + system) of this process and of the children it waited for."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def process_peak_rss() -> int:
    """The high-water mark of this process's resident memory, or of a child it waited for, in bytes."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return max(me.ru_maxrss, kids.ru_maxrss) * _RSS_UNIT


# Linux: one getrusage(RUSAGE_THREAD) gives this thread's CPU and the process's peak RSS (the
# thread's memory is the process's), for less than thread_time() plus getrusage(RUSAGE_SELF),
# which adds up every thread of the process.
_RUSAGE_THREAD = getattr(resource, "RUSAGE_THREAD", None) if sys.platform.startswith("linux") else None


def _thread_cpu() -> float:
    if _RUSAGE_THREAD is None:
        return time.thread_time()
    r = resource.getrusage(_RUSAGE_THREAD)
    return r.ru_utime + r.ru_stime


class ThreadMeter:
    """Measures an attempt that runs in the calling thread, with the artifact bytes of its context."""

    __slots__ = ("cpu0", "tally", "token")

    def __init__(self) -> None:
        self.tally = Tally()
        self.token = begin(self.tally)
        self.cpu0 = _thread_cpu()

    def stop(self, extra_cpu: float = 0.0) -> Measures:
        """End the measure; ``extra_cpu``: CPU of a thread the attempt ran in besides this one."""
        if _RUSAGE_THREAD is not None:
            r = resource.getrusage(_RUSAGE_THREAD)
            cpu, peak = r.ru_utime + r.ru_stime, r.ru_maxrss
        else:
            cpu, peak = time.thread_time(), resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        end(self.token)
        gpu_s, gpu_peak = gpu_usage() if _nvml is not False else (None, None)
        return Measures(cpu - self.cpu0 + extra_cpu, peak * _RSS_UNIT, self.tally.read, self.tally.written,
                        gpu_s, gpu_peak)


class ProcessMeter:
    """Measures an attempt that runs alone in this (forked) process."""

    __slots__ = ("cpu0", "tally")

    def __init__(self, tally: Tally) -> None:
        self.tally = tally
        self.cpu0 = process_cpu()

    def stop(self) -> Measures:
        gpu_s, gpu_peak = gpu_usage()
        return Measures(process_cpu() - self.cpu0, process_peak_rss(), self.tally.read, self.tally.written,
                        gpu_s, gpu_peak)


def stopped_child_usage(pid: int) -> Measures:
    """What a child that is about to be stopped used so far, read from ``/proc`` (Linux; empty elsewhere)."""
    import os

    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            fields = fh.read().rsplit(b")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        cpu = (int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])) / ticks
        peak = None
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"VmHWM:"):
                    peak = int(line.split()[1]) * 1024
                    break
        return Measures(cpu, peak)
    except (OSError, ValueError, IndexError):
        return Measures()


# --- GPU: only with pynvml and a device ---------------------------------------------------------

_nvml: Any = None   # None: not looked at yet; False: no pynvml or no device; else the module


def _gpu() -> Any:
    global _nvml
    if _nvml is None:
        try:
            import pynvml  # type: ignore[import-not-found]

            pynvml.nvmlInit()
            _nvml = pynvml if pynvml.nvmlDeviceGetCount() > 0 else False
        except Exception:   # not installed, no driver, no device
            _nvml = False
    return _nvml


def gpu_usage() -> tuple[float | None, int | None]:
    """(GPU seconds, peak GPU memory in bytes) of this process so far, or (None, None) without a GPU.

    Memory is what the driver reports for this process now; time needs the driver's accounting
    mode (``nvidia-smi -am 1``) and is None without it.
    """
    nvml = _gpu()
    if not nvml:
        return None, None
    import os

    pid, used, seconds = os.getpid(), 0, None
    try:
        for i in range(nvml.nvmlDeviceGetCount()):
            handle = nvml.nvmlDeviceGetHandleByIndex(i)
            for proc in nvml.nvmlDeviceGetComputeRunningProcesses(handle):
                if proc.pid == pid and proc.usedGpuMemory:
                    used += int(proc.usedGpuMemory)
            try:
                stats = nvml.nvmlDeviceGetAccountingStats(handle, pid)
                seconds = (seconds or 0.0) + stats.time / 1000.0
            except Exception:   # accounting mode off, or this process never used the device
                pass
    except Exception:
        return None, None
    return seconds, used or None


def status_of(exc: BaseException | None) -> str:
    """The ``step_attempts`` status of an attempt that raised ``exc`` (None: it completed)."""
    if exc is None:
        return "completed"
    from conveyor.errors import RunCancelled, StepPreempted, StepTimeout

    if isinstance(exc, StepPreempted):
        return "preempted"
    if isinstance(exc, StepTimeout):
        return "timeout"
    if isinstance(exc, RunCancelled):
        return "cancelled"
    return getattr(exc, "attempt_status", "failed")
