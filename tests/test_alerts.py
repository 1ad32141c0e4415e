"""Alert rules from YAML, evaluated over the store and recorded once."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from typer.testing import CliRunner

from railwatch.analytics.alerts import evaluate, load_rules, parse_rules, run_alerts, stored_alerts
from railwatch.cli.main import app
from railwatch.errors import InputError
from railwatch.store import Store
from railwatch.types import Observation

RULES = """
rules:
  - name: above-max
    kind: total_above_baseline_max
  - name: unprecedented
    kind: unprecedented
  - name: warehouses
    kind: containers_first_seen
    zone: freight_handling
  - name: tarps
    kind: covered_share_above
    threshold: 0.4
    min_total: 10
    sites: [tumangang]
"""


def _obs(site, day, total, covered=0, containers=None, usable=1.0, spread=2):
    return Observation(
        site=site, scene_id=None,
        acquired=dt.datetime.fromisoformat(day).replace(hour=2, tzinfo=dt.UTC),
        counts={"total": total, "boxcar": total, "covered": covered},
        containers_by_zone=containers or {"freight_handling": 0, "station": 0},
        usable_fraction=usable, count_low=max(total - spread, 0), count_high=total + spread,
        partial=usable < 0.95)


def _history():
    return [
        _obs("tumangang", "2023-01-10", 12),
        _obs("tumangang", "2023-02-10", 15),
        _obs("tumangang", "2023-03-10", 14, containers={"freight_handling": 0, "station": 2}),
        _obs("tumangang", "2023-04-10", 16),  # above 15 but within the uncertainty
        _obs("tumangang", "2023-05-10", 90, usable=0.5),  # partial: no alert at all
        _obs("tumangang", "2023-09-22", 22, covered=5),
        _obs("tumangang", "2023-10-05", 73, covered=40,
             containers={"freight_handling": 30, "station": 2}),
    ]


def test_rules_fire_as_specified(tmp_path) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(RULES)
    hits = evaluate(_history(), load_rules(path))
    got = {(a.rule, a.acquired.date().isoformat()) for a in hits}
    assert got == {
        ("above-max", "2023-02-10"), ("above-max", "2023-04-10"),
        ("above-max", "2023-09-22"), ("above-max", "2023-10-05"),
        ("unprecedented", "2023-09-22"), ("unprecedented", "2023-10-05"),
        ("warehouses", "2023-10-05"),
        ("tarps", "2023-10-05"),
    }
    msg = next(a.message for a in hits if a.rule == "warehouses")
    assert "30 shipping containers in freight_handling" in msg
    # the rule is limited to tumangang
    other = [_obs("khasan", o.acquired.date().isoformat(), o.total, o.counts["covered"])
             for o in _history()]
    assert not [a for a in evaluate(other, load_rules(path)) if a.rule == "tarps"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rules: []", "non-empty 'rules' list"),
        ("rules:\n  - kind: nonsense\n", "kind 'nonsense' is not one of"),
        ("rules:\n  - kind: unprecedented\n    colour: red\n", "unknown key(s) colour"),
        ("rules:\n  - {kind: covered_share_above, threshold: 3}\n", "threshold in 0..1"),
        ("rules:\n  - {name: a, kind: unprecedented}\n  - {name: a, kind: unprecedented}\n",
         "duplicate rule name"),
        ("rules: [\n", "not valid YAML"),
    ],
)
def test_bad_rules_file_is_one_line(tmp_path, text, message) -> None:
    path = tmp_path / "rules.yaml"
    path.write_text(text)
    with pytest.raises(InputError) as err:
        load_rules(path)
    assert message in str(err.value) and str(path) in str(err.value)


def test_recorded_once_in_the_store_and_cli(tmp_path) -> None:
    db = tmp_path / "rw.db"
    with Store(db) as store:
        for o in _history():
            store.put_observation(o)
        first = run_alerts(store, "tumangang")
        assert first and all(a.new for a in first)
        again = run_alerts(store, "tumangang")
        assert len(again) == len(first) and not any(a.new for a in again)
        rows = stored_alerts(store, "tumangang")
        assert len(rows) == len(first)
        assert {r["rule"] for r in rows} >= {"unprecedented", "containers-first-seen"}
        store.put_observation(_obs("tumangang", "2023-11-01", 120))
    rules = tmp_path / "rules.yaml"
    rules.write_text(RULES)
    runner = CliRunner()
    res = runner.invoke(app, ["--db", str(db), "alerts", "--rules", str(rules), "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    new = [a for a in out if a["new"]]
    assert {a["rule"] for a in new} >= {"above-max", "unprecedented"}
    assert any(a["acquired"].startswith("2023-11-01") for a in new)
    res = runner.invoke(app, ["--db", str(db), "alerts", "tumangang", "--rules", str(rules)])
    assert res.exit_code == 0 and "NEW" not in res.stdout and "unprecedented" in res.stdout
    res = runner.invoke(app, ["--db", str(db), "alerts", "--rules", str(tmp_path / "no.yaml")])
    assert res.exit_code == 2 and "cannot read" in res.output


def test_default_rules_parse() -> None:
    assert [r.kind for r in load_rules()] == ["total_above_baseline_max", "unprecedented",
                                              "containers_first_seen", "covered_share_above"]
    assert parse_rules([{"kind": "unprecedented", "site": "Khasan"}])[0].sites == ("khasan",)
