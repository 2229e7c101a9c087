"""Memory and CPU of the service's processes: /proc, cgroup v2 limits, markers of other hosts."""

import os
import subprocess
import sys
import time

from saga_orchestrator import process_usage, prometheus
from saga_orchestrator.process_usage import Usage
from sagas.observability import process_metrics


def test_usage_of_a_real_process_grows_with_its_work():
    child = subprocess.Popen(
        [sys.executable, "-c", "import sys; b = bytearray(64 * 2**20); sys.stdin.read()"],
        stdin=subprocess.PIPE,
    )
    try:
        time.sleep(1.0)
        usage = process_usage.usage(child.pid)
        assert usage.resident_bytes > 64 * 2**20  # the buffer is touched: resident
        assert usage.cpu_seconds >= 0
    finally:
        child.communicate(b"")
    assert process_usage.usage(child.pid) is None  # gone (and reaped)


def test_cpu_seconds_count_user_and_system_time():
    before = process_usage.usage(os.getpid()).cpu_seconds
    deadline = time.process_time() + 0.3
    while time.process_time() < deadline:
        pass
    assert process_usage.usage(os.getpid()).cpu_seconds - before >= 0.25


def test_limits_from_cgroup_v2_files(tmp_path, monkeypatch):
    monkeypatch.setattr(process_usage, "CGROUP", tmp_path)
    (tmp_path / "memory.max").write_text("536870912\n")
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert process_usage.memory_limit_bytes() == 512 * 2**20
    assert process_usage.cpu_limit_cores() == 1.5
    # "max": no limit → the host's memory and CPU count.
    (tmp_path / "memory.max").write_text("max\n")
    (tmp_path / "cpu.max").write_text("max 100000\n")
    meminfo = open("/proc/meminfo").readline().split()
    assert process_usage.memory_limit_bytes() == int(meminfo[1]) * 1024
    assert process_usage.cpu_limit_cores() == os.cpu_count()


def test_processes_of_this_host_live_of_other_hosts_by_their_fresh_marker(tmp_path, monkeypatch):
    monkeypatch.setenv(prometheus.ENV, str(tmp_path))
    prometheus.multiproc_dir_prepare()
    own = tmp_path / prometheus.host_dir_name()
    (own / f"{os.getpid()}.api").write_text("")
    (own / f"{_a_dead_pid()}.api").write_text("")  # gone: not reported
    other = tmp_path / "host-worker-container"
    other.mkdir()
    (other / "77.worker").write_text("123456789 12.5 1073741824 1.5")
    (other / "78.worker").write_text("99 1.0")
    stale = time.time() - process_metrics.MARKER_FRESH_SECONDS - 5
    os.utime(other / "78.worker", (stale, stale))  # a worker that stopped reporting

    found = {(s.role, s.pid): s for s in process_metrics.process_usages()}

    assert set(found) == {("api", os.getpid()), ("worker", 77)}
    assert found[("worker", 77)].usage == Usage(123456789, 12.5)
    assert found[("worker", 77)].host == "host-worker-container"
    assert found[("api", os.getpid())].usage.resident_bytes > 10 * 2**20
    # Each host against its own limits: the worker container's from its marker.
    assert process_metrics.host_limits("host-worker-container") == (2**30, 1.5)
    here = prometheus.host_dir_name()
    assert process_metrics.host_limits(here) == (
        process_usage.memory_limit_bytes(),
        process_usage.cpu_limit_cores(),
    )
    # The worker container uses 115% of its memory: the status page shows that host.
    (other / "77.worker").write_text(f"{int(1.15 * 2**30)} 12.5 1073741824 1.5")
    figures = process_metrics.resource_figures()
    assert figures["memory_ratio"] == 1.15
    assert figures["memory_limit_bytes"] == 2**30


def test_a_worker_reports_its_usage_into_its_marker(tmp_path, monkeypatch):
    monkeypatch.setenv(prometheus.ENV, str(tmp_path))
    prometheus.multiproc_dir_prepare()
    prometheus.process_mark("worker")
    marker = tmp_path / prometheus.host_dir_name() / f"{os.getpid()}.worker"
    resident, cpu, memory_limit, cpu_limit = marker.read_text().split()
    assert int(resident) > 10 * 2**20 and float(cpu) > 0
    assert int(memory_limit) == process_usage.memory_limit_bytes()
    assert float(cpu_limit) == process_usage.cpu_limit_cores()
    prometheus.process_finished(os.getpid(), str(tmp_path))
    assert not marker.exists()


def _a_dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid
