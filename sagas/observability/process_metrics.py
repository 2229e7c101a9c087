"""Memory and CPU of the service's processes: the `/metrics` collector and the status figures.

Which processes: in multiprocess mode, every process that marked itself in the metrics
directory (saga_orchestrator/prometheus.py: Gunicorn workers as `api` at fork, saga workers
as `worker` at start). A process of this host is read live from `/proc` at the scrape; a
process of another host (a container sharing the volume) by the usage it wrote into its
marker (API workers at most once a minute on a request, saga workers every heartbeat),
while that is fresh. With multiprocess mode off, this process alone, as `api`.
"""

import logging
import os
import threading
import time
from pathlib import Path

from saga_orchestrator import process_usage, prometheus
from saga_orchestrator.process_usage import Usage

prometheus.multiproc_dir_prepare()  # before prometheus_client's import (it is idempotent)

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily  # noqa: E402

logger = logging.getLogger("sagas.observability.process_metrics")

# A marker written by another host counts while younger than this (3 touch intervals).
MARKER_FRESH_SECONDS = 3 * prometheus.MARKER_TOUCH_SECONDS
# The status page's CPU figure is a rate: over the time since this process's previous
# look when that is between these bounds, else over a short sample taken on the spot.
CPU_WINDOW_MIN_SECONDS = 1.0
CPU_WINDOW_MAX_SECONDS = 600.0
CPU_SAMPLE_SECONDS = 0.2


def process_usages() -> list[tuple[str, int, Usage]]:
    """(role, pid, usage) of every live process of the service."""
    base = prometheus.multiproc_dir()
    if base is None:
        own = process_usage.usage(os.getpid())
        return [("api", os.getpid(), own)] if own else []
    found = []
    here = prometheus.host_dir_name()
    for host_dir, pid, role, marker in prometheus.process_marks(base):
        current = _live(pid) if host_dir == here else _reported(marker)
        if current is not None:
            found.append((role, pid, current))
    return found


def _live(pid: int) -> Usage | None:
    # A pid of this host: read now (None when the process is gone).
    return process_usage.usage(pid)


def _reported(marker: Path) -> Usage | None:
    try:
        if time.time() - marker.stat().st_mtime > MARKER_FRESH_SECONDS:
            return None
        resident, cpu = marker.read_text().split()
        return Usage(int(resident), float(cpu))
    except (OSError, ValueError):
        return None


class ProcessCollector:
    """`saga_process_resident_memory_bytes{role,pid}`, `saga_process_cpu_seconds_total{role,pid}`,
    `saga_memory_limit_bytes`, `saga_cpu_limit_cores`, read at scrape time."""

    def collect(self):
        memory = GaugeMetricFamily(
            "saga_process_resident_memory_bytes",
            "Resident memory of each API (Gunicorn) worker and saga worker process.",
            labels=["role", "pid"],
        )
        cpu = CounterMetricFamily(
            "saga_process_cpu_seconds",
            "User and system CPU time of each API (Gunicorn) worker and saga worker process.",
            labels=["role", "pid"],
        )
        for role, pid, current in process_usages():
            memory.add_metric([role, str(pid)], current.resident_bytes)
            cpu.add_metric([role, str(pid)], current.cpu_seconds)
        yield memory
        yield cpu
        yield GaugeMetricFamily(
            "saga_memory_limit_bytes",
            "The container's memory limit (cgroup v2 memory.max), else the host's MemTotal.",
            value=process_usage.memory_limit_bytes(),
        )
        yield GaugeMetricFamily(
            "saga_cpu_limit_cores",
            "The container's CPU quota in cores (cgroup v2 cpu.max), else the CPU count.",
            value=process_usage.cpu_limit_cores(),
        )


def resource_figures() -> dict:
    """`memory_ratio` (resident memory of all the service's processes / the memory limit)
    and `cpu_ratio` (their CPU time per second / the CPU limit) for the status page."""
    usages = process_usages()
    resident = sum(current.resident_bytes for _, _, current in usages)
    return {
        "processes": len(usages),
        "memory_bytes": resident,
        "memory_limit_bytes": process_usage.memory_limit_bytes(),
        "memory_ratio": round(resident / process_usage.memory_limit_bytes(), 4),
        "cpu_limit_cores": process_usage.cpu_limit_cores(),
        "cpu_ratio": _cpu_ratio(usages),
    }


def _cpu_ratio(usages: list[tuple[str, int, Usage]]) -> float:
    now, seconds = time.monotonic(), _cpu_by_process(usages)
    with _previous_lock:
        then, before = _previous.get("at", 0.0), _previous.get("cpu", {})
        _previous.update(at=now, cpu=seconds)
    if not CPU_WINDOW_MIN_SECONDS <= now - then <= CPU_WINDOW_MAX_SECONDS:
        time.sleep(CPU_SAMPLE_SECONDS)
        then, before = now, seconds
        now, seconds = time.monotonic(), _cpu_by_process(process_usages())
        with _previous_lock:
            _previous.update(at=now, cpu=seconds)
    # Only processes seen both times: a recycled worker's whole life is not one interval.
    used = sum(seconds[key] - before[key] for key in seconds.keys() & before.keys())
    return round(max(used, 0.0) / (now - then) / process_usage.cpu_limit_cores(), 4)


def _cpu_by_process(usages) -> dict[tuple[str, int], float]:
    return {(role, pid): current.cpu_seconds for role, pid, current in usages}


_previous: dict = {}
_previous_lock = threading.Lock()
