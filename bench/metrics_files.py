"""Scrape cost against worker recycles: metric files and merge time, without and with compaction.

`.venv/bin/python bench/metrics_files.py [--recycles 1000]`: forks that many short-lived
processes that each count into prometheus_client multiprocess files (tests/metrics_forks.py,
as recycled Gunicorn workers do), once leaving their files behind (no compaction, the old
behaviour) and once compacted at each exit (Gunicorn's child_exit hook); prints the files a
scrape reads and the time to merge them (best of 5), the file part of a `/metrics` scrape.
"""

import argparse
import subprocess
import sys
import tempfile
import timeit
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from prometheus_client.multiprocess import MultiProcessCollector  # noqa: E402

from saga_orchestrator import prometheus  # noqa: E402


def measure(recycles: int, compact: bool) -> tuple[int, float]:
    with tempfile.TemporaryDirectory() as base:
        forks = [sys.executable, str(ROOT / "tests" / "metrics_forks.py"), base, str(recycles)]
        subprocess.run([*forks, "1" if compact else "0"], check=True)
        files = prometheus.metric_files(base)
        best = min(timeit.repeat(lambda: MultiProcessCollector.merge(files), number=1, repeat=5))
        return len(files), best


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--recycles", type=int, default=1000)
    args = parser.parse_args()
    for compact in (False, True):
        files, seconds = measure(args.recycles, compact)
        label = "compacted" if compact else "left behind"
        print(f"{args.recycles} recycles, {label}: {files} files, merge {seconds * 1000:.2f} ms")


if __name__ == "__main__":
    main()
