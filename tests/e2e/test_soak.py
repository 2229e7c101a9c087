"""`make soak`, short (~100 sagas, about a minute and a half): the real Gunicorn, two saga
workers, a throwaway Redis, random participant faults and chaos kills — no invariant of
bench/soak_checks.py may be broken."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.e2e


def test_short_soak_breaks_no_invariant():
    # A database name of this run's own (make test gives each helper/CI job a DB_NAME).
    db_name = f"soak_{os.environ.get('DB_NAME') or 'saga_db'}"
    argv = [sys.executable, "-m", "bench.soak", "--sagas", "100", "--rate", "6"]
    argv += ["--chaos-every", "3", "--settle-timeout", "90", "--db-name", db_name]
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=400)
    lines = result.stdout.strip().splitlines()
    report = result.stdout[-6000:] + result.stderr[-2000:]
    assert lines, report
    assert re.fullmatch(r"\d+ passed, 0 failed", lines[-1]), report
    assert result.returncode == 0, report
