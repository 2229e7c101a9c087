"""deploy/grafana/saga-orchestrator.json: a Grafana dashboard Grafana can import, over the
series the service serves and the alerts read.

Structure: valid JSON, unique panel ids, a grid position each, panels inside the 24-column
grid and not overlapping, every panel on the `datasource` variable. Queries: every target's
PromQL parses (promtool checks them as recording rules, Grafana's variables replaced), reads
only served metric names, and together they show every metric the service and the alerts
use.
"""

import json
from pathlib import Path

import pytest
import yaml

from tests.unit.test_alert_rules import alerts, promtool, series_names, served_metric_names

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "saga-orchestrator.json"
GRID_COLUMNS = 24
# Grafana's variables as a query would see them: every job, a five-minute rate window.
VARIABLES = {"$__rate_interval": "5m", "$job": ".*"}


def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


def panels() -> list[dict]:
    """Every panel, those inside collapsed rows included."""
    found = []
    for panel in dashboard()["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


def queries() -> list[str]:
    return [target["expr"] for panel in panels() for target in panel.get("targets", [])]


def as_prometheus_sees_it(expr: str) -> str:
    for variable, value in VARIABLES.items():
        expr = expr.replace(variable, value)
    assert "$" not in expr, f"unknown variable in {expr}"
    return expr


def test_the_dashboard_is_importable_json_with_unique_ids():
    board = dashboard()
    assert board["uid"] == "saga-orchestrator" and board["title"]
    assert isinstance(board["schemaVersion"], int)
    ids = [panel["id"] for panel in panels()]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    assert all(isinstance(panel_id, int) for panel_id in ids)
    variables = {variable["name"]: variable for variable in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert set(variables) == {"datasource", "job"}


def test_panels_fill_the_grid_without_overlapping():
    taken: set[tuple[int, int]] = set()
    for panel in panels():
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["w"] > 0 and grid["x"] + grid["w"] <= GRID_COLUMNS
        cells = {
            (x, y)
            for x in range(grid["x"], grid["x"] + grid["w"])
            for y in range(grid["y"], grid["y"] + grid["h"])
        }
        assert not cells & taken, f"panel {panel['title']!r} overlaps another"
        taken |= cells


@pytest.mark.parametrize(
    "panel", [p for p in panels() if p["type"] != "row"], ids=lambda p: p["title"]
)
def test_each_panel_queries_prometheus_through_the_variable(panel):
    assert panel["title"] and panel["targets"]
    assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    ref_ids = [target["refId"] for target in panel["targets"]]
    assert len(ref_ids) == len(set(ref_ids))
    for target in panel["targets"]:
        assert target["datasource"] == panel["datasource"]
        assert 'job=~"$job"' in target["expr"], "every query follows the job picked"
        unknown = series_names(target["expr"]) - served_metric_names()
        assert not unknown, f"{panel['title']!r} reads series nobody serves: {unknown}"


def test_every_query_is_valid_promql(tmp_path):
    """promtool parses each query as a recording rule's expression."""
    rules = [
        {"record": f"dashboard:query_{n}", "expr": as_prometheus_sees_it(expr)}
        for n, expr in enumerate(queries())
    ]
    path = tmp_path / "dashboard_queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    checked = promtool("check", "rules", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"SUCCESS: {len(rules)} rules found" in checked.stdout


def test_the_dashboard_shows_every_series_the_alerts_read_and_the_service_serves():
    shown = set().union(*(series_names(expr) for expr in queries()))
    alerted = set().union(*(series_names(rule["expr"]) for rule in alerts()))
    assert alerted <= shown, f"alerts read series no panel shows: {alerted - shown}"
    served = served_metric_names()
    assert served <= shown, f"served series no panel shows: {served - shown}"
