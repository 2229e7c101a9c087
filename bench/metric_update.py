"""Microbenchmark: the hot-path cost of one metric update (a call attempt: counter + histogram).

`.venv/bin/python bench/metric_update.py [--multiprocess DIR]`: prints ns per
`record_participant_call`, best of 5 runs of 200,000 calls (issue 13 point 6: before/after).
"""

import argparse
import os
import sys
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--multiprocess", default="", help="metrics directory; empty = off")
    parser.add_argument("--calls", type=int, default=200_000)
    args = parser.parse_args()
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = args.multiprocess
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "saga_orchestrator.settings")
    os.environ.setdefault("SECRET_KEY", "bench")
    import django

    django.setup()
    from sagas.observability import metrics

    def update():
        metrics.record_participant_call(phase="action", outcome="succeeded", duration_s=0.01)

    best = min(timeit.repeat(update, number=args.calls, repeat=5))
    mode = "multiprocess" if args.multiprocess else "single-process"
    print(f"{mode}: {best / args.calls * 1e9:.0f} ns per record_participant_call")


if __name__ == "__main__":
    main()
