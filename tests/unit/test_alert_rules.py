"""deploy/prometheus/alerts.yml: valid for Prometheus (`promtool check rules`), its unit
tests pass (`promtool test rules`), every alert's `for:` window is tested from both sides,
and each alert names series the service serves and a runbook that exists.

promtool comes from Debian's `prometheus` package (.ci/run installs it); without it these
tests fail rather than skip: the rules would go unchecked.
"""

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.unit.test_docs import heading_anchors

ROOT = Path(__file__).resolve().parents[2]
RULES_DIR = ROOT / "deploy" / "prometheus"
RULES = RULES_DIR / "alerts.yml"
RULES_TEST = RULES_DIR / "alerts_test.yml"
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")
DURATION = re.compile(r"(\d+)([smhd])")
SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def promtool(*args: str) -> subprocess.CompletedProcess:
    binary = shutil.which("promtool")
    assert binary, "promtool is missing: install Debian's prometheus package (.ci/run does)"
    return subprocess.run(
        [binary, *args], cwd=RULES_DIR, capture_output=True, text=True, timeout=60
    )


def alerts() -> list[dict]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def seconds(duration: str) -> int:
    """A Prometheus duration such as `1h30m` or `5m` in seconds."""
    parts = DURATION.findall(duration)
    assert "".join(n + unit for n, unit in parts) == duration, duration
    return sum(int(n) * SECONDS[unit] for n, unit in parts)


DECLARED = re.compile(
    r"\b(Counter|Gauge|Histogram|Summary|(?:Counter|Gauge|Histogram)MetricFamily)"
    r"\(\s*\"(saga_[a-z_]+)\""
)


def served_metric_names() -> set[str]:
    """Every metric the service's source declares (prometheus_client metrics and families)."""
    names = set()
    for source in [*(ROOT / "sagas").rglob("*.py"), *(ROOT / "saga_orchestrator").rglob("*.py")]:
        for kind, name in DECLARED.findall(source.read_text()):
            # A counter `x` is served as `x_total`.
            counter = kind.startswith("Counter") and not name.endswith("_total")
            names.add(f"{name}_total" if counter else name)
    return names


def series_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads, histogram suffixes removed."""
    names = set()
    for name in re.findall(r"\b(saga_[a-z_]+)\b", expr):
        for suffix in HISTOGRAM_SUFFIXES:
            if name.endswith(suffix) and name.removesuffix(suffix) in served_metric_names():
                name = name.removesuffix(suffix)
        names.add(name)
    return names


def test_promtool_accepts_the_rules():
    checked = promtool("check", "rules", str(RULES))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in checked.stdout


def test_promtool_unit_tests_of_the_rules_pass():
    tested = promtool("test", "rules", str(RULES_TEST))
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert "SUCCESS" in tested.stdout


def test_the_guides_thresholds_and_the_operator_states_are_all_there():
    names = {rule["alert"] for rule in alerts()}
    assert names == {
        "SagaSuccessRateLow",
        "SagaCompensationRateHigh",
        "SagaDurationHigh",
        "SagaApiResponseTimeHigh",
        "SagaApiErrorRateHigh",
        "SagaMemoryHigh",
        "SagaCpuHigh",
        "SagaNoWorker",
        "SagaFailedWaiting",
        "SagaPausedTooLong",
        "SagaWebhooksDead",
    }
    thresholds = {rule["alert"]: rule["expr"].split()[-2:] for rule in alerts()}
    assert thresholds["SagaSuccessRateLow"] == ["<", "0.95"]
    assert thresholds["SagaCompensationRateHigh"] == [">", "0.10"]
    assert thresholds["SagaDurationHigh"] == [">", "300"]
    assert thresholds["SagaApiResponseTimeHigh"] == [">", "2"]
    assert thresholds["SagaApiErrorRateHigh"] == [">", "0.05"]
    assert thresholds["SagaMemoryHigh"] == [">", "0.8"]
    assert thresholds["SagaCpuHigh"] == [">", "0.8"]


def checks_of(alertname: str) -> list[list[tuple[int, bool]]]:
    """Per unit-test block: (eval time in seconds, fires?) of each check of `alertname`."""
    blocks = yaml.safe_load(RULES_TEST.read_text())["tests"]
    return [
        [
            (seconds(check["eval_time"]), bool(check.get("exp_alerts")))
            for check in block.get("alert_rule_test", [])
            if check["alertname"] == alertname
        ]
        for block in blocks
    ]


@pytest.mark.parametrize("rule", alerts(), ids=lambda rule: rule["alert"])
def test_each_for_window_is_tested_silent_before_and_firing_after(rule):
    """Within one input, a silent check and a later firing one no further apart than the
    `for:` window: the silence is the pending window, not a condition that did not hold."""
    window = seconds(rule["for"])
    assert window > 0, "an alert without a `for:` fires on one unlucky scrape"
    bracketed = [
        (silent, fired)
        for block in checks_of(rule["alert"])
        for silent, silent_fires in block
        for fired, fires in block
        if not silent_fires and fires and 0 < fired - silent <= window
    ]
    assert bracketed, f"{rule['alert']}: no silent check just before a firing one"


@pytest.mark.parametrize("rule", alerts(), ids=lambda rule: rule["alert"])
def test_each_alert_reads_served_series_and_links_its_runbook(rule):
    unknown = series_names(rule["expr"]) - served_metric_names()
    assert not unknown, f"{rule['alert']} reads series the service does not serve: {unknown}"
    page, _, anchor = rule["annotations"]["runbook"].partition("#")
    assert anchor in heading_anchors(ROOT / page), f"{rule['alert']}: no runbook #{anchor}"
    assert rule["labels"]["severity"] in ("warning", "critical")
