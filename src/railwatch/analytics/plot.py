"""Charts for the brief: the timeline (counts, range band, baseline, events, onsets) and
the class mix by period. matplotlib with the Agg back-end; PNG or SVG by the suffix."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from railwatch.errors import InputError

if TYPE_CHECKING:
    from railwatch.analytics.mix import MixComparison
    from railwatch.analytics.timeline import TimelineResult

_FORMATS = {".png": "png", ".svg": "svg"}
_EVENT_COLOR = "#7a5195"
_COUNT_COLOR = "#1f4e79"
_ALERT_COLOR = "#c0392b"
_CLASS_COLORS = {
    "boxcar": "#8c564b", "tank": "#404040", "hopper": "#d4a017", "flatcar": "#2ca02c",
    "locomotive": "#1f77b4", "passenger": "#9467bd", "other": "#aaaaaa",
}


def _figure() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: str | Path) -> Path:
    path = Path(path)
    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise InputError("plot file must end in .png or .svg", path)
    if not path.parent.exists():
        raise InputError("folder does not exist", path.parent)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    import matplotlib

    try:
        with matplotlib.rc_context({"svg.fonttype": "none"}):  # SVG text stays text
            fig.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight",
                        metadata={"Software": "railwatch"} if fmt == "png" else None)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def plot_timeline(
    result: TimelineResult, path: str | Path, *, sites: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """Draw each site's counts with their range band, partial images as hollow markers
    (lower bounds), the trailing baseline maximum, named events, onsets and unprecedented
    counts; write PNG or SVG by ``path``'s suffix (atomically)."""
    plt = _figure()
    s, b = result.series, result.base
    names = list(sites) if sites else s.sites
    most = max([sum(o.site == n for o in result.onsets) for n in names] or [0])
    fig, axes = plt.subplots(len(names), 1, figsize=(12, (4.8 + 0.2 * most) * len(names)),
                             squeeze=False, sharex=True,
                             gridspec_kw={"hspace": 0.25 + (0.1 + 0.05 * most if most else 0)})
    for ax, site in zip(axes[:, 0], names, strict=True):
        m = s.site == site
        idx = np.flatnonzero(m)
        dates = s.date[idx].astype("datetime64[D]").astype(object)
        tot = s.total[idx].astype(float)
        comp = b.complete[idx]
        cd = dates[comp]
        if comp.any():
            ax.fill_between(cd, b.count_low[idx][comp], b.count_high[idx][comp],
                            color=_COUNT_COLOR, alpha=0.18, linewidth=0,
                            label="count range", zorder=2)
            ax.plot(cd, tot[comp], "-o", color=_COUNT_COLOR, ms=3.5, lw=1.2,
                    label="railcars (complete image)", zorder=4)
        if (~comp).any():
            ax.plot(dates[~comp], tot[~comp], "o", mfc="white", mec=_COUNT_COLOR, mew=1.3,
                    ms=6, ls="none", label="partial image: lower bound", zorder=5)
        ax.step(dates, b.baseline_max[idx], where="post", color="#888888", lw=1.0, ls="--",
                label=f"max of previous {result.window_years:g} years")
        unp = b.unprecedented[idx]
        if unp.any():
            ax.plot(dates[unp], tot[unp], "*", color=_ALERT_COLOR, ms=14, mec="black",
                    mew=0.5, ls="none", label="unprecedented", zorder=6)
            j = int(np.flatnonzero(unp)[0])  # the first one is the headline
            ax.annotate(
                f"{int(tot[j])} on {dates[j]}: unprecedented\n"
                f"(previous {result.window_years:g}-year max {b.baseline_max[idx][j]:.0f})",
                (dates[j], tot[j]), xytext=(-28, 34), textcoords="offset points",
                fontsize=8, color=_ALERT_COLOR, ha="right", zorder=7,
                arrowprops={"arrowstyle": "-", "color": _ALERT_COLOR, "lw": 0.7})
        top = float(np.nanmax(np.concatenate([b.count_high[idx], tot]))) if len(idx) else 1.0
        ax.set_ylim(0, top * 1.3 + 1)
        for ev in result.events.get(site, []):
            x = np.datetime64(ev.date, "D").astype(object)
            if len(dates) and dates.min() <= x <= dates.max():
                ax.axvline(x, color=_EVENT_COLOR, lw=0.9, ls=":", zorder=1)
                ax.text(x, top * 1.28 + 1, f"{ev.name} ", rotation=90, va="top", ha="right",
                        fontsize=7, color=_EVENT_COLOR, zorder=2)
        site_onsets = [on for on in result.onsets if on.site == site]
        lines = []
        for k, on in enumerate(site_onsets, start=1):
            ax.axvspan(on.date_low, on.date_high, color="#f39c12", alpha=0.18, lw=0, zorder=0)
            ax.plot([on.date], [0], marker="^" if on.direction == "up" else "v", ms=9,
                    color="#e67e22", mec="black", mew=0.4, clip_on=False, zorder=8)
            ax.annotate(str(k), (on.date, 0), xytext=(0, 9), textcoords="offset points",
                        ha="center", fontsize=7.5, fontweight="bold", color="#b35900")
            word = {("ramp", "up"): "steady rise", ("ramp", "down"): "steady fall",
                    ("step", "up"): "jump", ("step", "down"): "drop"}[(on.kind, on.direction)]
            text = f"{k}  {word} from {on.date} ({on.before_level:.0f} → {on.after_level:.0f})"
            if on.days_after_event is not None:
                text += f", {on.days_after_event} d after {on.event_date}"
            lines.append(text)
        if lines:
            ax.text(0.0, -0.09, "Onsets (▲▼ on the time axis; shaded: the date interval)\n"
                    + "\n".join(lines), transform=ax.transAxes, va="top", ha="left",
                    fontsize=7.5, color="#8a4500", linespacing=1.4,
                    bbox={"boxstyle": "round,pad=0.4", "fc": "#fff8ee", "ec": "#f0c080",
                          "lw": 0.6})
        ax.set_ylabel("railcars in AOI")
        ax.set_title(f"{site}", loc="left", fontsize=10, fontweight="bold")
        ax.grid(axis="y", alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
        ax.legend(loc="upper left", fontsize=7.5, frameon=True, framealpha=0.9,
                  edgecolor="none", ncol=1)
        ax.tick_params(axis="x", labelbottom=True)
    fig.suptitle(title or "Railcars per image, with range, baseline, events and onsets",
                 fontsize=11, x=0.01, ha="left")
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)


def plot_mix(comparison: MixComparison, path: str | Path, *, title: str | None = None) -> Path:
    """Class-mix stacked bars (share of railcars) by period, with the per-period image and
    car counts; classes that rose / fell significantly are marked in the legend."""
    plt = _figure()
    classes = list(comparison.classes)
    shares = np.array([p.shares for p in comparison.periods])  # (P, C)
    fig, ax = plt.subplots(figsize=(7.5, 4.2))
    bottom = np.zeros(len(comparison.periods))
    labels = [f"{p.name}\n{p.n_images} images, {p.n_cars} cars" for p in comparison.periods]
    for c, cls in enumerate(classes):
        if not shares[:, c].any():
            continue
        res = comparison.result(cls)
        tag = ""
        if res is not None and res.significant:
            tag = " ▲" if res.difference > 0 else " ▼"
        ax.bar(labels, shares[:, c], bottom=bottom, color=_CLASS_COLORS.get(cls, "#cccccc"),
               label=f"{cls}{tag}", edgecolor="white", linewidth=0.6)
        for k, v in enumerate(shares[:, c]):
            if v >= 0.06:
                ax.text(k, bottom[k] + v / 2, f"{v:.0%}", ha="center", va="center",
                        fontsize=8, color="white")
        bottom += shares[:, c]
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of railcars")
    ax.yaxis.set_major_formatter(lambda v, _: f"{v:.0%}")
    ax.legend(loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False, fontsize=8,
              title="class (▲▼ significant)", title_fontsize=8)
    ax.spines[["top", "right"]].set_visible(False)
    ax.set_title(title or f"Class mix by period — {comparison.site}", loc="left", fontsize=10)
    fig.tight_layout()
    try:
        return _save(fig, path)
    finally:
        plt.close(fig)
