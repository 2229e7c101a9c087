"""The bench's arithmetic, kept pure so the unit tests can check it: percentiles, the
commits the service made in a phase, and our figures as ratios to the bare reference."""

from dataclasses import dataclass

SERVICE_GROUPS = ("api", "workers", "postgres", "redis")


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile of sorted `values`."""
    if not values:
        return float("nan")
    index = min(len(values) - 1, max(0, round(q / 100 * len(values) + 0.4999) - 1))
    return values[index]


def service_commits(
    *, before: int, after: int, bench_queries: int, idle_per_second: float, quiet_seconds: float
) -> float:
    """The service's own commits between two readings of the database's `xact_commit`.

    The difference also holds the bench's own queries (its finish watcher's polls and the
    read of the figures, each one committed read-only transaction, and the start of their
    two connections, which PostgreSQL counts as one commit each; counted exactly) and the
    service's idle looks during the quiet wait that lets every backend publish its
    statistics: both are taken out, the idle looks at the rate measured while the service
    had nothing to do.
    """
    return after - before - bench_queries - idle_per_second * quiet_seconds


@dataclass(frozen=True)
class Target:
    label: str
    value: float
    goal: float
    at_most: bool  # True: the figure must stay at or below the goal; False: at or above

    @property
    def met(self) -> bool:
        return self.value <= self.goal if self.at_most else self.value >= self.goal

    def line(self) -> str:
        sign = "≤" if self.at_most else "≥"
        verdict = "met" if self.met else "NOT met"
        return f"{self.label}: {self.value:.2f} (target {sign} {self.goal:g}, {verdict})"


def service_cpu_ms(cpu_ms_per_saga: dict[str, float]) -> float:
    """CPU per saga of the service: API, saga workers, their PostgreSQL backends, Redis."""
    return sum(cpu_ms_per_saga[name] for name in SERVICE_GROUPS)


def targets(*, latency: dict, throughput: dict, bare_c1: dict, bare_c32: dict) -> list[Target]:
    """Issue 9's four targets, each from figures of one run."""
    return [
        Target(
            "completed sagas/s at C=32 ÷ bare",
            throughput["sagas_per_second"] / bare_c32["sagas_per_second"],
            0.40,
            at_most=False,
        ),
        Target(
            "service CPU per saga at C=32 ÷ bare's",
            service_cpu_ms(throughput["cpu_ms_per_saga"]) / bare_c32["cpu_ms_per_saga"]["total"],
            2.5,
            at_most=True,
        ),
        Target(
            "p50 created→finished at C=1 ÷ bare's",
            latency["p50_ms"] / bare_c1["p50_ms"],
            1.5,
            at_most=True,
        ),
        Target("DB commits per saga at C=32", throughput["db_commits_per_saga"], 3, at_most=True),
    ]
