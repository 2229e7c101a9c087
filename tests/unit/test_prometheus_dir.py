"""The multiprocess metrics directory: default, off, and the start-up clean."""

import os
from pathlib import Path

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


def test_prepare_points_prometheus_client_at_this_hosts_directory(monkeypatch, tmp_path):
    target = tmp_path / "metrics"
    monkeypatch.setenv(prometheus.ENV, str(target))
    assert prometheus.multiproc_dir_prepare() == str(target)
    host_dir = target / prometheus.host_dir_name()
    assert host_dir.is_dir()
    assert os.environ[prometheus.ENV] == str(host_dir)
    # A child inherits the host directory and finds the same base again.
    assert prometheus.multiproc_dir() == str(target)
    assert prometheus.multiproc_dir_prepare() == str(target)
    assert os.environ[prometheus.ENV] == str(host_dir)


def test_no_private_part_of_prometheus_client_is_touched():
    """Issue 13 point 6: the value class is prometheus_client's own choice (by the
    variable), never assigned by us."""
    root = Path(__file__).resolve().parent.parent.parent
    sources = [root / "gunicorn.conf.py", *root.glob("saga_orchestrator/*.py")]
    sources += root.glob("sagas/**/*.py")
    for source in sources:
        text = source.read_text()
        assert "ValueClass" not in text, source
        assert "values.MultiProcessValue" not in text, source
        assert "._" not in "".join(
            line for line in text.splitlines() if "prometheus_client" in line
        ), source
