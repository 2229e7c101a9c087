"""Memory and CPU of the service's processes: the `/metrics` collector and the status figures.

Which processes: in multiprocess mode, every process that marked itself in the metrics
directory (saga_orchestrator/prometheus.py: Gunicorn workers as `api` at fork, saga workers
as `worker` at start). A process of this host is read live from `/proc` at the scrape; a
process of another host (a container sharing the volume) by the usage it wrote into its
marker (API workers at most once a minute on a request, saga workers every heartbeat),
with its host's limits, while that is fresh. With multiprocess mode off, this process
alone, as `api`.
"""

import os
import threading
import time
from pathlib import Path
from typing import NamedTuple

from saga_orchestrator import process_usage, prometheus
from saga_orchestrator.process_usage import Usage

prometheus.multiproc_dir_prepare()  # before prometheus_client's import (it is idempotent)

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily  # noqa: E402

# A marker written by another host counts while younger than this (3 touch intervals).
MARKER_FRESH_SECONDS = 3 * prometheus.MARKER_TOUCH_SECONDS
# The status page's CPU figure is a rate: over the time since this process's previous
# look when that is between these bounds, else over a short sample taken on the spot.
CPU_WINDOW_MIN_SECONDS = 1.0
CPU_WINDOW_MAX_SECONDS = 600.0
CPU_SAMPLE_SECONDS = 0.2


class Seen(NamedTuple):
    host: str  # the host directory's name; "" with multiprocess mode off
    role: str
    pid: int
    usage: Usage


def process_usages() -> list[Seen]:
    """Every live process of the service, with its usage."""
    base = prometheus.multiproc_dir()
    if base is None:
        own = process_usage.usage(os.getpid())
        return [Seen("", "api", os.getpid(), own)] if own else []
    found = []
    here = prometheus.host_dir_name()
    for host, pid, role, marker in prometheus.process_marks(base):
        # A pid of this host is read now (None when gone); another host's from its marker.
        current = process_usage.usage(pid) if host == here else _reported(marker)
        if current is not None:
            found.append(Seen(host, role, pid, current))
    return found


def host_limits(host: str) -> tuple[int, float]:
    """(memory bytes, CPU cores) a host's processes are measured against: this host's read
    now, another host's as its processes wrote them into their markers."""
    base = prometheus.multiproc_dir()
    if base is None or host == prometheus.host_dir_name():
        return process_usage.memory_limit_bytes(), process_usage.cpu_limit_cores()
    for marker in Path(base, host).iterdir():
        fields = _marker_fields(marker)
        if fields is not None and len(fields) == 4:
            return int(fields[2]), float(fields[3])
    return process_usage.memory_limit_bytes(), process_usage.cpu_limit_cores()


def _reported(marker: Path) -> Usage | None:
    fields = _marker_fields(marker)
    if fields is None or len(fields) < 2:
        return None
    return Usage(int(fields[0]), float(fields[1]))


def _marker_fields(marker: Path) -> list[str] | None:
    """A fresh marker's `<resident bytes> <cpu seconds> <memory limit> <cpu limit>`."""
    try:
        if time.time() - marker.stat().st_mtime > MARKER_FRESH_SECONDS:
            return None
        return marker.read_text().split()
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
        for seen in process_usages():
            memory.add_metric([seen.role, str(seen.pid)], seen.usage.resident_bytes)
            cpu.add_metric([seen.role, str(seen.pid)], seen.usage.cpu_seconds)
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
    """Memory and CPU use for the status page, per host (container) against that host's
    limits; the host with the highest ratio is shown (the one an alert is about).

    `memory_ratio`: resident memory of the host's service processes / its memory limit;
    `cpu_ratio`: their CPU seconds per second / its CPU limit.
    """
    seen = process_usages()
    hosts = {s.host for s in seen} or {prometheus.host_dir_name()}
    limits = {host: host_limits(host) for host in hosts}
    memory = {host: sum(s.usage.resident_bytes for s in seen if s.host == host) for host in hosts}
    worst_memory = max(hosts, key=lambda host: memory[host] / limits[host][0])
    cpu = _cpu_ratios(seen, limits)
    worst_cpu = max(hosts, key=lambda host: cpu.get(host, 0.0))
    return {
        "processes": len(seen),
        "memory_bytes": memory[worst_memory],
        "memory_limit_bytes": limits[worst_memory][0],
        "memory_ratio": round(memory[worst_memory] / limits[worst_memory][0], 4),
        "cpu_limit_cores": limits[worst_cpu][1],
        "cpu_ratio": round(cpu.get(worst_cpu, 0.0), 4),
    }


def _cpu_ratios(seen: list[Seen], limits: dict) -> dict[str, float]:
    """Per host: CPU seconds per second of its processes over its CPU limit, over the time
    since this process's previous look (1 s to 10 min ago), else over a short sample."""
    now, seconds = time.monotonic(), _cpu_by_process(seen)
    with _previous_lock:
        then, before = _previous.get("at"), _previous.get("cpu", {})
        _previous.update(at=now, cpu=seconds)
    # No look before (the monotonic clock starts at boot, so 0 would pass for one on a
    # box up less than the window), or one too recent or too old: sample now.
    if then is None or not CPU_WINDOW_MIN_SECONDS <= now - then <= CPU_WINDOW_MAX_SECONDS:
        time.sleep(CPU_SAMPLE_SECONDS)
        then, before = now, seconds
        now, seconds = time.monotonic(), _cpu_by_process(process_usages())
        with _previous_lock:
            _previous.update(at=now, cpu=seconds)
    used: dict[str, float] = {}
    # Only processes seen both times: a recycled worker's whole life is not one interval.
    for key in seconds.keys() & before.keys():
        used[key[0]] = used.get(key[0], 0.0) + max(seconds[key] - before[key], 0.0)
    return {host: used[host] / (now - then) / limits[host][1] for host in used if host in limits}


def _cpu_by_process(seen: list[Seen]) -> dict[tuple[str, int], float]:
    return {(s.host, s.pid): s.usage.cpu_seconds for s in seen}


_previous: dict = {}
_previous_lock = threading.Lock()
