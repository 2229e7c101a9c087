"""The bench's arithmetic (bench/figures.py): commits taken out, ratios and targets."""

import math

import pytest

from bench.figures import Target, percentile, service_commits, service_cpu_ms, targets


def phase(**figures):
    base = {
        "p50_ms": 8.0,
        "sagas_per_second": 150.0,
        "cpu_ms_per_saga": {"api": 4.0, "workers": 5.0, "postgres": 3.0, "redis": 0.5},
        "db_commits_per_saga": 7.5,
    }
    base["cpu_ms_per_saga"] |= figures.pop("cpu", {})
    return base | figures


def bare(**figures):
    return {"p50_ms": 4.0, "sagas_per_second": 600.0, "cpu_ms_per_saga": {"total": 2.0}} | figures


def test_the_bench_own_queries_and_the_idle_looks_of_the_quiet_wait_are_taken_out():
    commits = service_commits(
        before=1_000, after=23_500, bench_queries=400, idle_per_second=8.0, quiet_seconds=10.5
    )
    assert commits == 23_500 - 1_000 - 400 - 84


def test_without_bench_queries_or_idle_looks_every_commit_is_the_service():
    commits = service_commits(
        before=10, after=310, bench_queries=0, idle_per_second=0.0, quiet_seconds=10.5
    )
    assert commits == 300


def test_service_cpu_is_api_workers_postgres_and_redis_not_nginx_or_the_load_generator():
    cpu = {"api": 4.0, "workers": 5.0, "postgres": 3.0, "redis": 0.5, "nginx": 9.0, "client": 9.0}
    assert service_cpu_ms(cpu) == 12.5


def test_the_four_targets_are_our_figures_over_the_bare_reference():
    found = targets(latency=phase(), throughput=phase(), bare_c1=bare(), bare_c32=bare())
    assert [(t.label, round(t.value, 3), t.goal, t.met) for t in found] == [
        ("completed sagas/s at C=32 ÷ bare", 0.25, 0.40, False),
        ("service CPU per saga at C=32 ÷ bare's", 6.25, 2.5, False),
        ("p50 created→finished at C=1 ÷ bare's", 2.0, 1.5, False),
        ("DB commits per saga at C=32", 7.5, 3, False),
    ]


def test_targets_are_met_at_their_bounds():
    cpu = {"api": 1.5, "workers": 2.0, "postgres": 1.0, "redis": 0.5}
    throughput = phase(sagas_per_second=240.0, db_commits_per_saga=3.0, cpu=cpu)
    latency = phase(p50_ms=6.0)
    found = targets(latency=latency, throughput=throughput, bare_c1=bare(), bare_c32=bare())
    assert [round(t.value, 3) for t in found] == [0.4, 2.5, 1.5, 3.0]
    assert all(t.met for t in found)


def test_a_target_line_says_the_bound_and_whether_it_is_met():
    above = Target("x ÷ bare", 0.5, 0.4, at_most=False)
    assert above.line() == "x ÷ bare: 0.50 (target ≥ 0.4, met)"
    assert Target("y", 3.25, 3, at_most=True).line() == "y: 3.25 (target ≤ 3, NOT met)"


@pytest.mark.parametrize(
    ("q", "expected"), [(50, 5.0), (90, 9.0), (99, 10.0), (100, 10.0), (1, 1.0)]
)
def test_percentile_is_nearest_rank(q, expected):
    assert percentile([float(v) for v in range(1, 11)], q) == expected


def test_percentile_of_nothing_is_nan():
    assert math.isnan(percentile([], 50))
