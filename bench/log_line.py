"""Microbenchmark: CPU per JSON log line, as the service writes a `SAGA` event.

One record with a saga event's fields goes through the service's own logging
configuration (`logging_config`: the request-id and secret filters, the JSON formatter,
stdout and file handlers), with both streams pointed at /dev/null. Prints the median of
--repeats runs of --lines lines each, in microseconds per line; compare two versions back
to back on the same box (`python bench/log_line.py` in each checkout, alternated).
"""

import argparse
import logging
import logging.config
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from saga_orchestrator.logging import logging_config  # noqa: E402

EVENT = {
    "event": "step",
    "definition": "checkout",
    "saga_id": "9f1c2b1e-8f5a-4d2e-9a51-3f1d2c4b5a6e",
    "request_id": "5b7c0a3e-2d4f-4c1a-8e9b-7a6f5d4c3b2a",
    "status": "running",
    "step": "reserve_inventory",
    "phase": "forward",
    "attempt": 1,
    "outcome": "succeeded",
    "duration_ms": 3.214,
    "error": None,
}


def configured_logger(log_file: str) -> logging.Logger:
    config = logging_config("INFO", log_file)
    config["handlers"]["stdout"]["stream"] = open(os.devnull, "w")  # noqa: SIM115
    logging.config.dictConfig(config)
    return logging.getLogger("sagas.engine.bench")


def run(logger: logging.Logger, lines: int) -> float:
    started = time.process_time()
    for _ in range(lines):
        logger.info("SAGA step checkout 9f1c reserve_inventory forward #1 succeeded", extra=EVENT)
    return (time.process_time() - started) / lines * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    logger = configured_logger(os.devnull)
    run(logger, 1000)  # warm-up
    figures = [run(logger, args.lines) for _ in range(args.repeats)]
    print(
        f"{statistics.median(figures):.2f} µs per line (median of {args.repeats} × "
        f"{args.lines}; min {min(figures):.2f}, max {max(figures):.2f})"
    )


if __name__ == "__main__":
    main()
