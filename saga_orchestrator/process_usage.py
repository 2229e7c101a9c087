"""Resident memory and CPU time of a process, and the limits they are measured against.

Read straight from `/proc` and cgroup v2 files (Linux; no psutil): each call costs a few
file reads, so the scrape and the status page read them, never the hot path. No Django
import here: gunicorn.conf.py's hooks use it through saga_orchestrator/prometheus.py.
"""

import os
from pathlib import Path
from typing import NamedTuple

PROC = Path("/proc")
CGROUP = Path("/sys/fs/cgroup")
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")
_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


class Usage(NamedTuple):
    resident_bytes: int
    cpu_seconds: float


def usage(pid: int) -> Usage | None:
    """The process's resident memory and user+system CPU time; None when it is gone."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
        statm = (PROC / str(pid) / "statm").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = stat.rpartition(")")[2].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return Usage(int(statm.split()[1]) * _PAGE_BYTES, ticks / _TICKS_PER_SECOND)


def memory_limit_bytes() -> int:
    """cgroup v2 `memory.max` when a limit is set, else the host's MemTotal."""
    limit = _cgroup_value(CGROUP / "memory.max")
    if limit is not None:
        return int(limit[0])
    for line in (PROC / "meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no MemTotal in meminfo")


def cpu_limit_cores() -> float:
    """cgroup v2 `cpu.max` quota / period when a quota is set, else os.cpu_count()."""
    limit = _cgroup_value(CGROUP / "cpu.max")
    if limit is not None and len(limit) == 2:
        return int(limit[0]) / int(limit[1])
    return float(os.cpu_count() or 1)


def _cgroup_value(path: Path) -> list[str] | None:
    """The file's fields, None when absent or "max" (no limit)."""
    try:
        fields = path.read_text().split()
    except OSError:
        return None
    return None if not fields or fields[0] == "max" else fields
