"""Prometheus config, alert rules and Grafana dashboards: valid, tested, and querying real metrics.

promtool (from the `prometheus` OS package, see `make os-packages`) checks the config and the
rules and runs the alert unit tests in deploy/prometheus/alerts_test.yml. The metric names in
every alert and panel expression are parsed out and must be declared in cluster/metrics.py, by
the terminal's prometheus-client metrics, or by a recording rule.
"""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from prometheus_client.metrics_core import Metric

from cluster import metrics
from cluster.config import ROOT
from serve.metrics import TerminalMetrics

PROMETHEUS = ROOT / "deploy" / "prometheus"
GRAFANA = ROOT / "deploy" / "grafana"
RUNBOOK = ROOT / "docs" / "operations.md"


def promtool(*args: str, cwd: Path = PROMETHEUS) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("promtool")
    assert exe, "promtool is missing: install the 'prometheus' OS package (make os-packages)"
    return subprocess.run([exe, *args], capture_output=True, text=True, cwd=cwd, timeout=120, check=False)


# -- PromQL metric names ------------------------------------------------------------------------

_KEYWORDS = frozenset(
    [
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
    ]
)


def promql_metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (functions, keywords, labels and variables left out)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'', '""', expr)  # string literals
    text = re.sub(r"\$\{[^}]*\}|\$\w+", "1", text)  # Grafana variables ($deployment, $__rate_interval)
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # range and subquery windows
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\boffset\s+-?\w+", " ", text)
    text = re.sub(r"(?<![\w:])\d+(?:\.\d+)?(?:e[+-]?\d+)?", " ", text, flags=re.IGNORECASE)  # numbers
    names = set()
    for match in re.finditer(r"[A-Za-z_:][\w:]*", text):
        following = text[match.end() :].lstrip()
        if following.startswith("(") or match.group().lower() in _KEYWORDS:
            continue  # a function, an aggregation or a keyword
        names.add(match.group())
    return names


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        ("up == 0", {"up"}),
        ('sum by (actor) (rate(ray_x_total{actor=~"feed-.*"}[2m])) == 0', {"ray_x_total"}),
        ("histogram_quantile(0.95, sum by (le, venue) (rate(h_bucket[5m]))) > 0.05", {"h_bucket"}),
        ("a / on (actor) group_left (kind) b", {"a", "b"}),
        ("max(a offset 5m) and on () b", {"a", "b"}),
        ('x{deployment=~"$deployment"} * 1e3', {"x"}),
        ("rate(c[$__rate_interval]) * 60", {"c"}),
        ("absent(ray_shardline_actor_healthy)", {"ray_shardline_actor_healthy"}),
        ("vector(1) and on () (day_of_week() >= 1)", set()),
        ('label_replace(m, "dst", "$1", "src", "(.*)")', {"m"}),
        ("sum without (instance) (a:recorded:rule)", {"a:recorded:rule"}),
    ],
)
def test_the_promql_name_parser_finds_exactly_the_selected_metrics(expr: str, names: set[str]) -> None:
    assert promql_metric_names(expr) == names


def terminal_metric_names() -> set[str]:
    """The series names the terminal's own registry exposes, by each family's type."""
    suffixes = {
        "counter": ("_total", "_created"),
        "gauge": ("",),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
    }
    families: list[Metric] = list(TerminalMetrics().registry.collect())
    assert families, "the terminal declares its metrics in serve.metrics.TerminalMetrics"
    return {f.name + suffix for f in families for suffix in suffixes.get(f.type, ("",))}


def recording_rule_names() -> set[str]:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}


def known_metric_names() -> set[str]:
    return (
        set(metrics.exported_names())
        | set(metrics.PROMETHEUS_BUILTIN_METRICS)
        | terminal_metric_names()
        | recording_rule_names()
    )


def test_shardline_and_terminal_metric_names_do_not_collide() -> None:
    assert not set(metrics.exported_names()) & terminal_metric_names()


# -- Prometheus --------------------------------------------------------------------------------


def test_the_prometheus_config_is_valid() -> None:
    done = promtool("check", "config", "prometheus.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_the_prometheus_config_scrapes_rays_discovery_file_and_the_terminal() -> None:
    config = yaml.safe_load((PROMETHEUS / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    ray_files = jobs["ray"]["file_sd_configs"][0]["files"]
    assert ray_files == ["/tmp/ray/prom_metrics_service_discovery.json"]
    terminal = jobs["shardline-terminal"]
    assert terminal["metrics_path"] == "/metrics"
    assert terminal["static_configs"][0]["targets"] == ["127.0.0.1:8000"]
    assert config["rule_files"] == ["alerts.yml"]


def test_the_alert_rules_are_valid() -> None:
    done = promtool("check", "rules", "alerts.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_alerts_fire_on_their_test_histories() -> None:
    done = promtool("test", "rules", "alerts_test.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_the_alert_tests_catch_a_wrong_expectation(tmp_path: Path) -> None:
    """The promtool run above would fail if an alert did not behave as its test says."""
    shutil.copy(PROMETHEUS / "alerts.yml", tmp_path / "alerts.yml")
    text = (PROMETHEUS / "alerts_test.yml").read_text()
    broken = text.replace("router dropped 40 ticks", "router dropped 41 ticks")
    assert broken != text
    (tmp_path / "alerts_test.yml").write_text(broken)
    done = promtool("test", "rules", "alerts_test.yml", cwd=tmp_path)
    assert done.returncode != 0 and "router dropped 40 ticks" in done.stdout + done.stderr


def alert_rules() -> list[dict[str, Any]]:
    rules = yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())
    return [r for g in rules["groups"] for r in g["rules"] if "alert" in r]


REQUIRED_ALERTS = {
    "FeedStalled",
    "TicksDropped",
    "ShardBacklog",
    "ShardLagHigh",
    "OrderRejectsSpike",
    "KillSwitchEngaged",
    "ActorRestartLoop",
    "JournalWriteFailures",
}


def test_the_alerts_cover_what_operations_must_hear_about() -> None:
    names = {r["alert"] for r in alert_rules()}
    assert names >= REQUIRED_ALERTS
    for rule in alert_rules():
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]


def test_every_alert_has_a_firing_test_case() -> None:
    tests = yaml.safe_load((PROMETHEUS / "alerts_test.yml").read_text())["tests"]
    fired = {
        case["alertname"] for t in tests for case in t.get("alert_rule_test", []) if case.get("exp_alerts")
    }
    assert {r["alert"] for r in alert_rules()} <= fired


def test_every_alert_names_its_runbook_section_and_the_section_exists() -> None:
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in RUNBOOK.read_text().splitlines()
        if line.startswith("#")
    }
    for rule in alert_rules():
        link = rule["annotations"]["runbook"]
        path, _, anchor = link.partition("#")
        assert path == "docs/operations.md", rule["alert"]
        assert anchor == rule["alert"].lower(), rule["alert"]
        assert anchor in anchors, f"docs/operations.md has no section for {rule['alert']}"


def test_every_metric_an_alert_uses_is_declared() -> None:
    known = known_metric_names()
    for rule in yaml.safe_load((PROMETHEUS / "alerts.yml").read_text())["groups"]:
        for r in rule["rules"]:
            unknown = promql_metric_names(r["expr"]) - known
            assert not unknown, f"{r.get('alert') or r.get('record')} queries undeclared metrics: {unknown}"


# -- Grafana ------------------------------------------------------------------------------------


def load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("grafana_dashboards", GRAFANA / "dashboards.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def dashboards() -> dict[str, dict[str, Any]]:
    return {p.name: json.loads(p.read_text()) for p in sorted((GRAFANA / "dashboards").glob("*.json"))}


def test_the_dashboard_files_are_what_the_generator_writes() -> None:
    expected = load_generator().rendered()
    on_disk = {p.name: p.read_text() for p in (GRAFANA / "dashboards").glob("*.json")}
    assert on_disk == expected, "run `python deploy/grafana/dashboards.py` and commit the result"


def test_there_are_the_five_dashboards_with_unique_uids_and_panel_ids() -> None:
    boards = dashboards()
    assert set(boards) == {
        "system.json",
        "market-data.json",
        "orders.json",
        "strategies.json",
        "slippage.json",
    }
    uids = [b["uid"] for b in boards.values()]
    assert len(set(uids)) == len(uids) and all(len(u) <= 40 for u in uids)
    for name, board in boards.items():
        ids = [p["id"] for p in board["panels"]]
        assert len(set(ids)) == len(ids), name
        assert sum(1 for p in board["panels"] if p["type"] != "row") >= 5, name


def test_panels_tile_the_grid_without_overlapping() -> None:
    for name, board in dashboards().items():
        cells: set[tuple[int, int]] = set()
        for p in board["panels"]:
            g = p["gridPos"]
            assert g["x"] >= 0 and g["x"] + g["w"] <= 24, (name, p["title"])
            mine = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
            assert not cells & mine, f"{name}: {p['title']!r} overlaps another panel"
            cells |= mine


def test_every_panel_queries_the_provisioned_datasource() -> None:
    provisioned = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yml").read_text())
    uid = provisioned["datasources"][0]["uid"]
    for name, board in dashboards().items():
        for p in board["panels"]:
            if p["type"] == "row":
                continue
            assert p["datasource"]["uid"] == uid, (name, p["title"])
            assert p["targets"], (name, p["title"])
        for variable in board["templating"]["list"]:
            assert variable["datasource"]["uid"] == uid


def test_every_metric_a_panel_queries_is_declared() -> None:
    known = known_metric_names()
    checked = 0
    for name, board in dashboards().items():
        queries = [(p["title"], t["expr"]) for p in board["panels"] for t in p.get("targets", [])]
        queries += [(v["name"], v["definition"]) for v in board["templating"]["list"]]
        for title, expr in queries:
            if expr.startswith("label_values("):
                expr = expr.removeprefix("label_values(").rpartition(",")[0]
            selected = promql_metric_names(expr)
            assert selected, f"{name}: {title!r} selects no metric: {expr}"
            assert not selected - known, f"{name}: {title!r} queries undeclared {selected - known}"
            checked += 1
    assert checked >= 60


def test_the_dashboards_between_them_show_every_shardline_metric() -> None:
    used = {n for board in dashboards().values() for p in board["panels"] for t in p.get("targets", [])
            for n in promql_metric_names(t["expr"])}  # fmt: skip
    missing = {spec.name for spec in metrics.ALL_METRICS if not set(spec.exported_names) & used}
    assert not missing, f"declared but on no dashboard: {sorted(missing)}"


def test_the_dashboard_provider_loads_the_folder_grafana_is_given() -> None:
    provider = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "shardline.yml").read_text())
    (entry,) = provider["providers"]
    assert entry["type"] == "file"
    assert entry["options"]["path"] == "/var/lib/grafana/dashboards/shardline"
    compose = yaml.safe_load((ROOT / "deploy" / "compose.yaml").read_text())
    mounts = compose["services"]["grafana"]["volumes"]
    assert any(m.endswith(":/var/lib/grafana/dashboards/shardline:ro") for m in mounts)
    assert any(m.endswith(":/etc/grafana/provisioning:ro") for m in mounts)
