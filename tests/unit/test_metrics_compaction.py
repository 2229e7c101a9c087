"""Metrics files of dead processes are compacted into one archive, no count lost or doubled.

Real prometheus_client multiprocess files, written by real short-lived processes
(tests/metrics_forks.py forks them as Gunicorn recycles its workers).
"""

import os
import subprocess
import sys
import time
from pathlib import Path

from prometheus_client.multiprocess import MultiProcessCollector

from saga_orchestrator import prometheus

FORKS = Path(__file__).resolve().parent.parent / "metrics_forks.py"


def recycle(base: Path, children: int, *, compact: bool) -> None:
    args = [sys.executable, str(FORKS), str(base), str(children), "1" if compact else "0"]
    subprocess.run(args, check=True, timeout=300)


def totals(base: Path) -> dict[tuple, float]:
    """What a scrape shows: every file summed, histograms accumulated."""
    merged = MultiProcessCollector.merge(prometheus.metric_files(str(base)))
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for metric in merged
        for sample in metric.samples
    }


def expected(children: int) -> dict[tuple, float]:
    return {
        ("demo_calls_total", (("phase", "action"),)): children,
        ("demo_calls_total", (("phase", "compensation"),)): 2 * children,
        ("demo_seconds_count", ()): children,
        ("demo_seconds_sum", ()): 0.5 * children,
        ("demo_seconds_bucket", (("le", "0.1"),)): 0,
        ("demo_seconds_bucket", (("le", "1.0"),)): children,
        ("demo_seconds_bucket", (("le", "+Inf"),)): children,
    }


def own_files(base: Path) -> list[str]:
    return sorted(os.listdir(base / prometheus.host_dir_name()))


def test_a_thousand_recycles_leave_the_archive_and_exact_counts(tmp_path):
    recycle(tmp_path, 1000, compact=True)
    # One file of the (now finished) forking parent, the archive: not 2,000 files.
    assert own_files(tmp_path) == [f for f in own_files(tmp_path) if f.startswith("histogram_")]
    assert len(own_files(tmp_path)) == 1
    archive = sorted(os.listdir(tmp_path / "archive"))
    assert archive == ["counter_archive.db", "histogram_archive.db"]
    assert totals(tmp_path) == expected(1000)


def test_compaction_changes_no_count(tmp_path):
    recycle(tmp_path, 60, compact=False)
    assert len(own_files(tmp_path)) == 2 * 60 + 1  # counter and histogram per child
    before = totals(tmp_path)
    assert before == expected(60)
    merged = prometheus.compact(str(tmp_path))
    assert len(merged) == 2 * 60 + 1
    assert own_files(tmp_path) == []
    assert totals(tmp_path) == before
    # More processes later: they add to the archive, nothing counted twice.
    recycle(tmp_path, 40, compact=False)
    prometheus.compact(str(tmp_path))
    assert totals(tmp_path) == expected(100)
    # A second compaction with nothing dead changes nothing.
    assert prometheus.compact(str(tmp_path)) == []
    assert totals(tmp_path) == expected(100)


def test_live_processes_files_stay(tmp_path):
    recycle(tmp_path, 5, compact=False)
    # One child's counter file, as if its process were still alive (this test's pid).
    own = tmp_path / prometheus.host_dir_name()
    live = own / f"counter_{os.getpid()}.db"
    next(own.glob("counter_*.db")).rename(live)
    prometheus.compact(str(tmp_path))
    assert own_files(tmp_path) == [live.name]
    assert totals(tmp_path) == expected(5)


def test_files_of_a_gone_host_are_archived_a_live_hosts_stay(tmp_path):
    recycle(tmp_path, 10, compact=False)
    gone, live = tmp_path / "host-gone-container", tmp_path / "host-live-container"
    (tmp_path / prometheus.host_dir_name()).rename(gone)
    recycle(tmp_path, 3, compact=False)
    (tmp_path / prometheus.host_dir_name()).rename(live)
    (gone / "1.api").write_text("1000 1.0")
    (live / "1.worker").write_text("1000 1.0")
    an_hour_ago = time.time() - prometheus.HOST_GONE_SECONDS - 60
    for entry in gone.iterdir():
        os.utime(entry, (an_hour_ago, an_hour_ago))
    before = totals(tmp_path)
    assert before == expected(13)

    prometheus.compact(str(tmp_path))
    assert not gone.exists()  # archived, marker and all
    assert len(os.listdir(live)) == 2 * 3 + 1 + 1  # pids of another host are not ours to judge
    assert totals(tmp_path) == before


def test_start_up_compacts_a_previous_runs_files_and_markers(tmp_path):
    recycle(tmp_path, 4, compact=False)
    own = tmp_path / prometheus.host_dir_name()
    dead_pid = _a_dead_pid()
    (own / f"{dead_pid}.api").write_text("")
    (own / f"{os.getpid()}.worker").write_text("")
    (own / f"gauge_livesum_{dead_pid}.db").write_bytes(b"")
    merged = prometheus.multiproc_dir_clean(str(tmp_path))
    assert f"gauge_livesum_{dead_pid}.db" in merged  # a dead process's gauge: removed
    assert own_files(tmp_path) == [f"{os.getpid()}.worker"]
    assert totals(tmp_path) == expected(4)


def _a_dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_files_of_the_release_before_are_archived_at_start(tmp_path):
    """The flat `<kind>_<host>-<pid>.db` names of before: this host's dead processes' and
    other hosts' untouched for an hour move into the archive; a live one's stay."""
    recycle(tmp_path, 6, compact=False)
    own = tmp_path / prometheus.host_dir_name()
    host = prometheus.host_dir_name()[len(prometheus.HOST_PREFIX) :]
    files = sorted(own.glob("*.db"))
    counters = [f for f in files if f.name.startswith("counter_")]
    histograms = [f for f in files if f.name.startswith("histogram_")]
    dead_pid = _a_dead_pid()
    counters[0].rename(tmp_path / f"counter_{host}-{dead_pid}.db")
    counters[1].rename(tmp_path / f"counter_{host}-{os.getpid()}.db")  # alive: stays
    counters[2].rename(tmp_path / f"counter_old-container-{dead_pid}.db")
    an_hour_ago = time.time() - prometheus.HOST_GONE_SECONDS - 60
    os.utime(tmp_path / f"counter_old-container-{dead_pid}.db", (an_hour_ago, an_hour_ago))
    counters[3].rename(tmp_path / f"counter_busy-container-{dead_pid}.db")  # recent: stays
    for file in counters[4:] + histograms:
        file.unlink()

    prometheus.multiproc_dir_clean(str(tmp_path))

    assert sorted(p.name for p in tmp_path.glob("*.db")) == [
        f"counter_busy-container-{dead_pid}.db",
        f"counter_{host}-{os.getpid()}.db",
    ]
    archived = MultiProcessCollector.merge([str(tmp_path / "archive" / "counter_archive.db")])
    values = {s.labels["phase"]: s.value for m in archived for s in m.samples}
    assert values == {"action": 2, "compensation": 4}  # the two archived processes' counts
