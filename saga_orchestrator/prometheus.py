"""Where Prometheus multiprocess files live, and how each process names its files.

Several Gunicorn workers and saga worker processes each count into their own memory-mapped
files in one directory; `/metrics` sums them (prometheus_client multiprocess mode), so a
scrape sees every process, not one random Gunicorn worker (ECOSYSTEM.md).

PROMETHEUS_MULTIPROC_DIR: unset → `run/prometheus` under the project (shared by the API and
the workers started from this checkout); a path → that directory (docker-compose mounts one
volume there in both containers); empty → off, each process keeps its own counters (tests).

No Django import here: gunicorn.conf.py uses this module in the master process.
"""

import functools
import os
import re
import socket
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"
DEFAULT_DIR = Path(__file__).resolve().parent.parent / "run" / "prometheus"


def multiproc_dir() -> str | None:
    """The configured directory, or None when multiprocess mode is off (empty variable)."""
    value = os.environ.get(ENV)
    if value is None:
        return str(DEFAULT_DIR)
    return value.strip() or None


def process_identifier(pid: int | None = None) -> str:
    """`<host>-<pid>`: containers sharing one metrics volume reuse pids, never hostnames."""
    return f"{_host()}-{pid if pid is not None else os.getpid()}"


def multiproc_dir_prepare() -> str | None:
    """Export the directory for prometheus_client and create it; None when off.

    When off the (empty) variable stays set, so that child processes stay off too;
    sagas/observability/metrics.py then picks the single-process value class itself.
    """
    path = multiproc_dir()
    if path is None:
        return None
    Path(path).mkdir(parents=True, exist_ok=True)
    os.environ[ENV] = path
    return path


def multiproc_dir_clean(path: str) -> list[str]:
    """Delete this host's files of processes that are gone; return the removed names.

    Called when Gunicorn starts. Files of live processes stay (a saga worker on the same
    host keeps counting into them); files of other hosts (other containers on a shared
    volume) are theirs to clean.
    """
    own = re.compile(r".+_" + re.escape(_host()) + r"-(\d+)")
    removed = []
    for file in sorted(Path(path).glob("*.db")):
        match = own.fullmatch(file.stem)
        if match and not _pid_alive(int(match.group(1))):
            file.unlink(missing_ok=True)
            removed.append(file.name)
    return removed


def process_dead_mark(pid: int) -> None:
    """Drop a finished process's live-gauge files (Gunicorn's child_exit hook)."""
    path = multiproc_dir()
    if path is not None:
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(process_identifier(pid), path)


@functools.cache
def _host() -> str:
    # Cached: prometheus_client asks for the identifier on every counter update.
    return socket.gethostname().replace(os.sep, "_") or "host"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
