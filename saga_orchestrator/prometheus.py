"""Where Prometheus multiprocess files live, which processes own them, and their compaction.

Several Gunicorn workers and saga worker processes each count into their own memory-mapped
files; `/metrics` sums them (prometheus_client multiprocess mode), so a scrape sees every
process, not one random Gunicorn worker (ECOSYSTEM.md).

PROMETHEUS_MULTIPROC_DIR: unset → `run/prometheus` under the project (shared by the API and
the workers started from this checkout); a path → that directory (docker-compose mounts one
volume there in both containers); empty → off, each process keeps its own counters (tests).

Layout of the directory (the base):
- `host-<hostname>/` — one per host (container): prometheus_client's documented mode writes
  `<kind>_<pid>.db` there (this module points the variable at it), and `<pid>.<role>`
  markers name the live processes (role api|worker) for the process metrics. Containers
  sharing one volume reuse pids, never hostnames.
- `archive/counter_archive.db`, `archive/histogram_archive.db` — the counts of every dead
  process, merged (`compact`), so a scrape reads one file per kind for all of them.
- `.lock` — scrapes read under a shared lock, compaction swaps files under an exclusive one:
  a scrape never sees a count both in the archive and in its dead file, or in neither.

No Django import here: gunicorn.conf.py uses this module in the master process.
"""

import contextlib
import fcntl
import functools
import glob
import os
import re
import socket
import time
from pathlib import Path

from saga_orchestrator import process_usage

ENV = "PROMETHEUS_MULTIPROC_DIR"
DEFAULT_DIR = Path(__file__).resolve().parent.parent / "run" / "prometheus"
HOST_PREFIX = "host-"
ARCHIVE = "archive"
# Another host's directory with no marker touched for this long belongs to a container that
# is gone (markers are touched by every live process at least every MARKER_TOUCH_SECONDS);
# its counts move into the archive.
MARKER_TOUCH_SECONDS = 60.0
HOST_GONE_SECONDS = 3600.0
ROLES = ("api", "worker")


def multiproc_dir() -> str | None:
    """The configured base directory, or None when multiprocess mode is off (empty)."""
    value = os.environ.get(ENV)
    if value is None:
        return str(DEFAULT_DIR)
    value = value.strip()
    if not value:
        return None
    # A child process inherits the variable pointed at its parent's host directory.
    path = Path(value)
    return str(path.parent) if path.name == host_dir_name() else value


def host_dir_name() -> str:
    return HOST_PREFIX + _host()


def host_dir(base: str) -> str:
    return os.path.join(base, host_dir_name())


def multiproc_dir_prepare() -> str | None:
    """Point prometheus_client at this host's directory; return the base (None when off).

    Must run before prometheus_client is first imported: it picks its value class from the
    variable at import. When off, the variable is removed for that import (prometheus_client
    reads any set value, even empty, as "on") and put back empty, so that child processes
    stay off too.
    """
    path = multiproc_dir()
    if path is None:
        os.environ.pop(ENV, None)
        import prometheus_client  # noqa: F401  (chooses single-process values now)

        os.environ[ENV] = ""
        return None
    Path(host_dir(path)).mkdir(parents=True, exist_ok=True)
    os.environ[ENV] = host_dir(path)
    return path


def metric_files(base: str) -> list[str]:
    """Every file a scrape sums: each host's processes, the archive, and files left in the
    base by the release before the host directories (until they are archived)."""
    patterns = (HOST_PREFIX + "*/*.db", ARCHIVE + "/*.db", "*.db")
    return [file for pattern in patterns for file in glob.glob(os.path.join(base, pattern))]


@contextlib.contextmanager
def files_locked(base: str, *, exclusive: bool = False):
    """Hold the directory's lock: shared to read the files, exclusive to swap them."""
    with open(os.path.join(base, ".lock"), "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def process_mark(role: str) -> None:
    """Name this process's role (api|worker) for the process metrics; no-op when off."""
    _next_touch[0] = 0.0
    marker_touch(role)


def process_marks(base: str) -> list[tuple[str, int, str, Path]]:
    """(host directory name, pid, role, marker path) of every marked process, all hosts."""
    marks = []
    for marker in Path(base).glob(f"{HOST_PREFIX}*/*"):
        pid, _, role = marker.name.partition(".")
        if role in ROLES and pid.isdigit():
            marks.append((marker.parent.name, int(pid), role, marker))
    return marks


def process_finished(pid: int, base: str | None = None) -> None:
    """A process of this host is done (Gunicorn's child_exit, a saga worker's exit): its
    marker and live gauges go, its counts move into the archive."""
    base = base or multiproc_dir()
    if base is None:
        return
    from prometheus_client import multiprocess

    Path(host_dir(base), f"{pid}.api").unlink(missing_ok=True)
    Path(host_dir(base), f"{pid}.worker").unlink(missing_ok=True)
    multiprocess.mark_process_dead(pid, host_dir(base))
    compact(base, finished={pid})


def compact(base: str, *, finished: set[int] = frozenset()) -> list[str]:
    """Merge the counter and histogram files of this host's dead processes (and `finished`
    ones, which no longer count) and of gone hosts into the archive; delete their files.
    Returns the names of the files merged or removed."""
    with files_locked(base, exclusive=True):
        done = _dead_files(host_dir(base), finished) + _gone_host_files(base)
        done += _legacy_files(base)
        if done:
            _archive_merge(base, done)
            for file in done:
                Path(file).unlink(missing_ok=True)
        for directory in glob.glob(os.path.join(base, HOST_PREFIX + "*")):
            if os.path.basename(directory) != host_dir_name():
                with contextlib.suppress(OSError):
                    os.rmdir(directory)  # only an empty one: a gone host's
        return [os.path.basename(file) for file in done]


def multiproc_dir_clean(base: str) -> list[str]:
    """At Gunicorn's start: compact what processes of a previous run left (their counts
    stay in the archive, so counters survive a restart instead of resetting)."""
    Path(host_dir(base)).mkdir(parents=True, exist_ok=True)
    removed = compact(base)
    for directory, pid, _role, marker in process_marks(base):
        if directory == host_dir_name() and not _pid_alive(pid):
            marker.unlink(missing_ok=True)
    return removed


def dead_files_present(base: str) -> bool:
    """Whether this host's directory holds files of a dead process (cheap: no lock)."""
    return bool(_dead_files(host_dir(base), set()))


def _dead_files(directory: str, finished: set[int]) -> list[str]:
    dead = []
    for file in glob.glob(os.path.join(directory, "*.db")):
        pid = os.path.basename(file)[:-3].rpartition("_")[2]
        if pid.isdigit() and (int(pid) in finished or not _pid_alive(int(pid))):
            dead.append(file)
    return dead


def _legacy_files(base: str) -> list[str]:
    """Files of releases before the per-host directories (`<kind>_<host>-<pid>.db` in the
    base): this host's of dead processes, other hosts' once untouched for HOST_GONE_SECONDS."""
    own = re.compile(r".+_" + re.escape(_host()) + r"-(\d+)")
    legacy = []
    for file in glob.glob(os.path.join(base, "*.db")):
        match = own.fullmatch(os.path.basename(file)[:-3])
        if match:
            if not _pid_alive(int(match.group(1))):
                legacy.append(file)
        elif time.time() - os.stat(file).st_mtime > HOST_GONE_SECONDS:
            legacy.append(file)
    return legacy


def _gone_host_files(base: str) -> list[str]:
    """Files of other hosts none of whose processes touched a marker for HOST_GONE_SECONDS."""
    gone = []
    for directory in glob.glob(os.path.join(base, HOST_PREFIX + "*")):
        if os.path.basename(directory) == host_dir_name():
            continue
        entries = [os.path.join(directory, name) for name in os.listdir(directory)]
        newest = max((os.stat(entry).st_mtime for entry in entries), default=0.0)
        if time.time() - newest > HOST_GONE_SECONDS:
            gone += [entry for entry in entries if entry.endswith(".db")]
            for entry in entries:
                if not entry.endswith(".db"):
                    os.unlink(entry)
    return gone


def _archive_merge(base: str, files: list[str]) -> None:
    """Sum `files` into the archive with prometheus_client's public merge and mmap writer.

    Gauges of dead processes are dropped (a dead process has no current value); counters
    and histograms keep every count: merged with accumulate=False, buckets stay per bucket,
    as prometheus_client writes them.
    """
    from prometheus_client.mmap_dict import MmapedDict
    from prometheus_client.multiprocess import MultiProcessCollector

    archive = Path(base, ARCHIVE)
    archive.mkdir(exist_ok=True)
    for kind in ("counter", "histogram"):
        current = archive / f"{kind}_archive.db"
        sources = [f for f in files if os.path.basename(f).startswith(kind + "_")]
        if not sources:
            continue
        if current.exists():
            sources.append(str(current))
        merged = MultiProcessCollector.merge(sources, accumulate=False)
        fresh = archive / f"{kind}_archive.tmp"
        fresh.unlink(missing_ok=True)
        target = MmapedDict(str(fresh))
        try:
            for metric in merged:
                for sample in metric.samples:
                    target.write_value(_sample_key(metric, sample), sample.value, 0.0)
        finally:
            target.close()
        os.replace(fresh, current)


def _sample_key(metric, sample) -> str:
    """The key prometheus_client's own files use for this sample (public `mmap_key`)."""
    from prometheus_client.mmap_dict import mmap_key

    labels = sorted(sample.labels.items())
    names, values = [name for name, _ in labels], [value for _, value in labels]
    return mmap_key(metric.name, sample.name, names, values, metric.documentation)


def marker_touch(role: str, *, every: float = MARKER_TOUCH_SECONDS) -> None:
    """Rewrite this process's marker with its usage and its host's limits (`<resident
    bytes> <cpu seconds> <memory limit bytes> <cpu limit cores>`), at most once per `every`
    seconds: it keeps the host's directory recognisably alive, and is how a scrape on
    another host (container) sees this process's memory and CPU."""
    now = time.monotonic()
    if now < _next_touch[0]:
        return
    _next_touch[0] = now + every
    base = multiproc_dir()
    current = process_usage.usage(os.getpid())
    if base is not None and current is not None:
        marker = Path(host_dir(base), f"{os.getpid()}.{role}")
        fresh = marker.with_name(marker.name + ".tmp")
        with contextlib.suppress(OSError):
            limits = process_usage.memory_limit_bytes(), process_usage.cpu_limit_cores()
            fresh.write_text(
                f"{current.resident_bytes} {current.cpu_seconds} {limits[0]} {limits[1]}"
            )
            os.replace(fresh, marker)


_next_touch = [0.0]


@functools.cache
def _host() -> str:
    return socket.gethostname().replace(os.sep, "_") or "host"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
