"""The multiprocess metrics directory: default, off, and the start-up clean."""

import os
import subprocess
import sys

from saga_orchestrator import prometheus


def test_default_is_under_the_project(monkeypatch):
    monkeypatch.delenv(prometheus.ENV, raising=False)
    assert prometheus.multiproc_dir() == str(prometheus.DEFAULT_DIR)


def test_empty_means_off(monkeypatch):
    monkeypatch.setenv(prometheus.ENV, "")
    assert prometheus.multiproc_dir() is None
    assert prometheus.multiproc_dir_prepare() is None
    # Still set (empty): child processes stay off too.
    assert os.environ[prometheus.ENV] == ""


def test_prepare_creates_and_exports(monkeypatch, tmp_path):
    target = tmp_path / "metrics"
    monkeypatch.setenv(prometheus.ENV, str(target))
    assert prometheus.multiproc_dir_prepare() == str(target)
    assert target.is_dir()


def test_clean_removes_only_this_hosts_dead_processes(tmp_path):
    dead_pid = _a_dead_pid()
    dead = prometheus.process_identifier(dead_pid)
    alive = prometheus.process_identifier(os.getpid())
    names = [
        f"counter_{dead}.db",
        f"histogram_{dead}.db",
        f"gauge_livesum_{dead}.db",
        f"counter_{alive}.db",
        f"counter_otherhost-{dead_pid}.db",
    ]
    for name in names:
        (tmp_path / name).write_bytes(b"")
    removed = prometheus.multiproc_dir_clean(str(tmp_path))
    assert sorted(removed) == sorted(names[:3])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names[3:])


def _a_dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid
