"""Where the CPU goes, from py-spy's collapsed stacks (`make bench BENCH_ARGS=--profile`).

    python bench/profile_summary.py /tmp/saga-bench-*/profile-worker-*.txt

Prints, for the files given together, the share of samples by layer (each sample counted
once, for the innermost frame that belongs to a layer: what the time was spent doing), the
share under each project function (inclusive) and the functions that were on the CPU
themselves (leaves), busiest first. With `make bench`'s `--gil` sampling these are shares
of on-CPU Python time.
"""

import argparse
import collections
import re
from pathlib import Path

FRAME = re.compile(r"^(?P<func>.+?) \((?P<file>[^:()]+)(?::\d+)?\)$")
# Layers by where a frame's file lives; the innermost frame that matches one names the
# layer of a sample (a standard-library helper such as uuid or re counts for its caller).
LAYERS = (
    ("database driver and Django's db layer", ("psycopg2/", "django/db/")),
    ("JSON encoding and parsing", ("json/",)),
    ("logging", ("logging/", "pythonjsonlogger/", "saga_orchestrator/logging.py")),
    (
        "HTTP to participants",
        ("http/client.py", "email/", "sagas/engine/connections.py", "sagas/engine/participants.py"),
    ),
    ("Redis client", ("redis/",)),
    ("metrics", ("prometheus_client/", "sagas/observability/")),
    ("threads, locks and queues", ("threading.py", "queue.py", "concurrent/")),
    (
        "Gunicorn, Django's request handling, DRF",
        ("gunicorn/", "django/", "rest_framework/", "asgiref/"),
    ),
    ("project code (its own frames)", ("sagas/", "saga_orchestrator/")),
)


def layer_of(frames: list[tuple[str, str]]) -> str:
    for _, file in reversed(frames):
        for name, places in LAYERS:
            if any(place in file for place in places):
                return name
    return "other"


def frames_of(stack: str) -> list[tuple[str, str]]:
    frames = []
    for part in stack.split(";"):
        match = FRAME.match(part)
        if match:
            frames.append((match["func"], match["file"]))
        else:
            frames.append((part, ""))
    return frames


def summarize(paths: list[Path], top: int, prefixes: tuple[str, ...]) -> str:
    inclusive: collections.Counter = collections.Counter()
    leaves: collections.Counter = collections.Counter()
    layers: collections.Counter = collections.Counter()
    total = 0
    for path in paths:
        for line in path.read_text().splitlines():
            stack, _, count = line.rpartition(" ")
            if not count.isdigit():
                continue
            samples = int(count)
            total += samples
            frames = frames_of(stack)
            layers[layer_of(frames)] += samples
            seen = set()
            for func, file in frames:
                name = f"{func} ({file})"
                if file.startswith(prefixes) and name not in seen:
                    seen.add(name)
                    inclusive[name] += samples
            func, file = frames[-1]
            leaves[f"{func} ({file})"] += samples
    lines = [f"{total} samples in {len(paths)} files", "by layer:"]
    lines += [f"  {n / total:6.1%}  {name}" for name, n in layers.most_common()]
    lines.append("inclusive (project code):")
    lines += [f"  {n / total:6.1%}  {name}" for name, n in inclusive.most_common(top)]
    lines.append("on the CPU (leaves):")
    lines += [f"  {n / total:6.1%}  {name}" for name, n in leaves.most_common(top)]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--prefix",
        action="append",
        default=None,
        help="files counted as project code (default: sagas/, saga_orchestrator/)",
    )
    args = parser.parse_args()
    prefixes = tuple(args.prefix or ("sagas/", "saga_orchestrator/"))
    print(summarize(args.files, args.top, prefixes))


if __name__ == "__main__":
    main()
