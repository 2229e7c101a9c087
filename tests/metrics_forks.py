"""Simulated worker recycling for the metrics compaction tests (and bench/metrics_files.py).

`python tests/metrics_forks.py BASE N COMPACT`: forks N short-lived children that each
count once into prometheus_client's multiprocess files under BASE, as a recycled Gunicorn
worker does, then exit; with COMPACT=1 the parent calls the same hook as Gunicorn's
child_exit after each. Each child adds: demo_calls_total{phase=action} +1,
{phase=compensation} +2, demo_seconds.observe(0.5).
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main(base: str, children: int, compact: bool) -> None:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = base
    from saga_orchestrator import prometheus

    prometheus.multiproc_dir_prepare()
    from prometheus_client import Counter, Histogram

    calls = Counter("demo_calls_total", "Calls.", ["phase"])
    seconds = Histogram("demo_seconds", "Seconds.", buckets=(0.1, 1.0))
    for _ in range(children):
        pid = os.fork()
        if pid == 0:
            calls.labels("action").inc()
            calls.labels("compensation").inc(2)
            seconds.observe(0.5)
            os._exit(0)
        os.waitpid(pid, 0)
        if compact:
            prometheus.process_finished(pid)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1")
