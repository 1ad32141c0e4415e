"""Alerts: rules from YAML, evaluated over the store's observations, recorded in the store.

A rules file is a YAML mapping with a ``rules`` list; each rule has a ``name`` (unique),
a ``kind`` and options, and may be limited to some ``sites``::

    rules:
      - name: above-5y-max
        kind: total_above_baseline_max   # total above the trailing max (complete images)
        window_years: 5
      - name: unprecedented
        kind: unprecedented              # clears the max by the combined uncertainty
      - name: containers-in-warehouses
        kind: containers_first_seen      # containers in a zone where none were seen before
        zone: freight_handling           # optional: every zone when left out
      - name: tarps
        kind: covered_share_above
        threshold: 0.3                   # share of railcars with covered loads
        min_total: 10
        sites: [tumangang]

Partial images (lower bounds) raise no alert. Each hit is recorded once per (rule, site,
acquisition time) in the ``alerts`` table (store migration 3); evaluating again records
only new hits.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from railwatch.analytics.timeline import DEFAULT_PARTIAL_THRESHOLD, Series, baselines
from railwatch.errors import InputError
from railwatch.types import Observation

KINDS = ("total_above_baseline_max", "unprecedented", "containers_first_seen",
         "covered_share_above")

DEFAULT_RULES: list[dict[str, Any]] = [
    {"name": "above-5y-max", "kind": "total_above_baseline_max", "window_years": 5},
    {"name": "unprecedented", "kind": "unprecedented", "window_years": 5},
    {"name": "containers-first-seen", "kind": "containers_first_seen"},
    {"name": "covered-share-30pct", "kind": "covered_share_above", "threshold": 0.3,
     "min_total": 10},
]


@dataclass(frozen=True)
class Rule:
    """One alert rule."""

    name: str
    kind: str
    sites: tuple[str, ...] = ()
    window_years: float = 5.0
    threshold: float = 0.3
    min_total: int = 1
    zone: str | None = None

    def applies(self, site: str) -> bool:
        return not self.sites or site in self.sites


@dataclass(frozen=True)
class Alert:
    """A rule that fired on one observation."""

    rule: str
    kind: str
    site: str
    acquired: dt.datetime
    scene_id: int | None
    value: float | None
    message: str
    new: bool = field(default=True, compare=False)


def parse_rules(data: Any, source: str = "<rules>") -> list[Rule]:
    """Validate a rules mapping (as loaded from YAML)."""
    items = data.get("rules") if isinstance(data, Mapping) else data
    if not isinstance(items, list) or not items:
        raise InputError("expected a mapping with a non-empty 'rules' list", source)
    out: list[Rule] = []
    allowed = {"name", "kind", "sites", "site", "window_years", "threshold", "min_total",
               "zone"}
    for k, r in enumerate(items, start=1):
        where = f"rule {k}"
        if not isinstance(r, Mapping):
            raise InputError(f"{where}: expected a mapping", source)
        unknown = set(r) - allowed
        if unknown:
            raise InputError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}", source)
        kind = r.get("kind")
        if kind not in KINDS:
            raise InputError(f"{where}: kind {kind!r} is not one of {', '.join(KINDS)}", source)
        name = str(r.get("name") or f"{kind}-{k}")
        sites = r.get("sites", r.get("site", ()))
        sites = (sites,) if isinstance(sites, str) else tuple(sites or ())
        try:
            rule = Rule(name=name, kind=kind, sites=tuple(s.strip().lower() for s in sites),
                        window_years=float(r.get("window_years", 5.0)),
                        threshold=float(r.get("threshold", 0.3)),
                        min_total=int(r.get("min_total", 1)),
                        zone=str(r["zone"]) if r.get("zone") is not None else None)
        except (TypeError, ValueError) as exc:
            raise InputError(f"{where}: bad value ({exc})", source) from None
        if rule.window_years <= 0 or not 0 <= rule.threshold <= 1:
            raise InputError(f"{where}: window_years must be > 0 and threshold in 0..1", source)
        if name in {x.name for x in out}:
            raise InputError(f"{where}: duplicate rule name {name!r}", source)
        out.append(rule)
    return out


def load_rules(path: str | Path | None = None) -> list[Rule]:
    """Rules from a YAML file, or the built-in `DEFAULT_RULES`."""
    if path is None:
        return parse_rules({"rules": DEFAULT_RULES}, "built-in rules")
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", path) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f":{mark.line + 1}" if mark is not None else ""
        raise InputError(f"{path}{line}: not valid YAML") from None
    return parse_rules(data, str(path))


def evaluate(observations: Sequence[Observation], rules: Iterable[Rule]) -> list[Alert]:
    """Every rule hit over one site's observations (in date order)."""
    obs = sorted(observations, key=lambda o: (o.acquired, o.scene_id or 0))
    if not obs:
        return []
    site = obs[0].site
    series = Series.from_observations(obs)  # same order: sorted by date within one site
    complete = series.complete(DEFAULT_PARTIAL_THRESHOLD)
    out: list[Alert] = []
    for rule in rules:
        if not rule.applies(site):
            continue
        if rule.kind in ("total_above_baseline_max", "unprecedented"):
            b = baselines(series, window_years=rule.window_years)
            for i, o in enumerate(obs):
                if not complete[i] or np.isnan(b.baseline_max[i]):
                    continue
                if rule.kind == "unprecedented" and b.unprecedented[i]:
                    msg = (f"{site} {o.acquired.date()}: {o.total} railcars, unprecedented"
                           f" (previous {rule.window_years:g}-year max {b.baseline_max[i]:.0f},"
                           " cleared by more than the combined uncertainty)")
                    out.append(Alert(rule.name, rule.kind, site, o.acquired, o.scene_id,
                                     float(o.total), msg))
                elif rule.kind == "total_above_baseline_max" and o.total > b.baseline_max[i]:
                    msg = (f"{site} {o.acquired.date()}: {o.total} railcars, above the previous"
                           f" {rule.window_years:g}-year max of {b.baseline_max[i]:.0f}")
                    out.append(Alert(rule.name, rule.kind, site, o.acquired, o.scene_id,
                                     float(o.total), msg))
        elif rule.kind == "containers_first_seen":
            seen: set[str] = set()
            for i, o in enumerate(obs):
                for zone, n in sorted(o.containers_by_zone.items()):
                    if rule.zone is not None and zone != rule.zone:
                        continue
                    # the first image of a site has no "before"
                    if n > 0 and zone not in seen and complete[i] and i > 0:
                        msg = (f"{site} {o.acquired.date()}: {n} shipping containers in"
                               f" {zone}, none seen there in {i} earlier image(s)")
                        out.append(Alert(rule.name, rule.kind, site, o.acquired,
                                         o.scene_id, float(n), msg))
                    if n > 0:
                        seen.add(zone)
        elif rule.kind == "covered_share_above":
            for i, o in enumerate(obs):
                cov = int(o.counts.get("covered", 0))
                if not complete[i] or o.total < max(rule.min_total, 1):
                    continue
                share = cov / o.total
                if share > rule.threshold:
                    msg = (f"{site} {o.acquired.date()}: {cov} of {o.total} railcars"
                           f" ({share:.0%}) carry covered loads (rule: above"
                           f" {rule.threshold:.0%})")
                    out.append(Alert(rule.name, rule.kind, site, o.acquired, o.scene_id,
                                     round(share, 4), msg))
    return sorted(out, key=lambda a: (a.acquired, a.rule))


def record_alerts(store: Any, alerts: Iterable[Alert]) -> list[Alert]:
    """Insert alerts not yet recorded (one per rule, site and time); returns all of them
    with ``new`` set for those inserted now."""
    alerts = list(alerts)
    new = store.add_alerts([
        {"rule": a.rule, "kind": a.kind, "site": a.site, "acquired": a.acquired,
         "scene_id": a.scene_id, "value": a.value, "message": a.message}
        for a in alerts
    ])
    return [Alert(a.rule, a.kind, a.site, a.acquired, a.scene_id, a.value, a.message,
                  new=is_new) for a, is_new in zip(alerts, new, strict=True)]


def stored_alerts(store: Any, site: str | None = None) -> list[dict[str, Any]]:
    """Alerts recorded in the store (of ``site``), oldest first."""
    return store.alerts(site)


def run_alerts(store: Any, site: str | None = None, rules_path: str | Path | None = None,
               ) -> list[Alert]:
    """What ``railwatch alerts`` does: evaluate the rules over every site with
    observations (or just ``site``) and record the hits; returns them (``new`` marked)."""
    from railwatch.sites import get_site, list_sites

    rules = load_rules(rules_path)
    names = [get_site(site, store).name] if site else [s.name for s in list_sites(store)]
    hits: list[Alert] = []
    for name in names:
        hits += evaluate(store.observations(name), rules)
    return record_alerts(store, hits)
