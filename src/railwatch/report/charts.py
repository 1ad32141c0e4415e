"""The brief's two charts as PNG bytes: the count time series and the class mix by period."""

from __future__ import annotations

import datetime as dt
import io
from collections.abc import Mapping, Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.dates as mdates
import matplotlib.pyplot as plt

from railwatch.report.annotate import class_hex
from railwatch.report.findings import Row
from railwatch.types import RAILCAR_CLASSES, Event


def _naive(t: dt.datetime) -> dt.datetime:
    """UTC wall time without tzinfo (matplotlib and event dates are naive)."""
    return t.astimezone(dt.UTC).replace(tzinfo=None) if t.tzinfo else t


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def timeline_png(
    rows: Sequence[Row],
    events: Sequence[Event] = (),
    onsets: Sequence[Mapping[str, Any]] = (),
    title: str = "",
    baseline_years: int = 5,
) -> bytes:
    """Railcar count per image with its range band, the trailing N-year maximum,
    events (dashed grey) and onsets (red arrows); lower-bound counts as hollow markers."""
    fig, ax = plt.subplots(figsize=(9.5, 3.6))
    if rows:
        d = [_naive(r.acquired) for r in rows]
        ax.fill_between(d, [r.low for r in rows], [r.high for r in rows], color="#9ecae1",
                        alpha=0.6, label="count range", linewidth=0)
        ax.plot(d, [r.total for r in rows], color="#08519c", lw=1.2, label="railcars")
        full = [r for r in rows if not r.partial]
        part = [r for r in rows if r.partial]
        ax.plot([_naive(r.acquired) for r in full], [r.total for r in full], "o", ms=3,
                color="#08519c")
        if part:
            ax.plot([_naive(r.acquired) for r in part], [r.total for r in part], "o", ms=5,
                    mfc="none", color="#d95f0e", label="lower bound (partial view)")
        base = _trailing_max(rows, baseline_years)
        if any(b is not None for b in base):
            ax.plot(d, [b if b is not None else float("nan") for b in base], color="#636363",
                    lw=1, ls=":", drawstyle="steps-post", label=f"previous {baseline_years}-yr max")
        lo, hi = min(d) - dt.timedelta(days=30), max(d)
        top = max(r.high for r in rows) or 1
        for e in events:
            t = dt.datetime.combine(e.date, dt.time())
            if lo <= t <= hi:
                ax.axvline(t, color="#969696", ls="--", lw=0.8)
                ax.text(t, top * 1.5, " " + e.name[:30], rotation=90, fontsize=6.5, va="top",
                        ha="right", color="#525252")
        for o in onsets:
            t = dt.datetime.fromisoformat(str(o["date"])[:10])
            if lo <= t <= hi:
                up = str(o.get("direction", "up")) == "up"
                ax.annotate("onset", xy=(t, 0), xytext=(t, top * 0.4), fontsize=7,
                            color="#cb181d", ha="center",
                            arrowprops={"arrowstyle": "->", "color": "#cb181d"} if up else None)
        ax.set_ylim(0, top * 1.5)
    else:
        ax.text(0.5, 0.5, "no images", transform=ax.transAxes, ha="center")
    ax.set_ylabel("railcars in image")
    ax.set_title(title, fontsize=10, loc="left")
    loc = mdates.AutoDateLocator(minticks=4, maxticks=10)
    ax.xaxis.set_major_locator(loc)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(loc))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", ncol=2, framealpha=0.9)
    return _png(fig)


def _trailing_max(rows: Sequence[Row], years: int) -> list[float | None]:
    out: list[float | None] = []
    for i, r in enumerate(rows):
        if r.baseline_max is not None:
            out.append(r.baseline_max)
            continue
        start = r.date - dt.timedelta(days=round(365.25 * years))
        prev = [x.total for x in rows[:i] if x.date >= start and not x.partial and x.usable]
        out.append(float(max(prev)) if prev else None)
    return out


def mix_png(mix: Mapping[str, Mapping[str, Any]], title: str = "") -> bytes:
    """Stacked bars: share of each railcar class per period."""
    fig, ax = plt.subplots(figsize=(6.5, 3.0))
    labels = list(mix)
    left = [0.0] * len(labels)
    for c in RAILCAR_CLASSES:
        vals = [float(mix[k]["share_pct"].get(c, 0.0)) for k in labels]
        if not any(vals):
            continue
        ax.barh(labels, vals, left=left, color=class_hex(c), label=c, edgecolor="white")
        for i, v in enumerate(vals):
            if v >= 7:
                ax.text(left[i] + v / 2, i, f"{v:.0f}%", ha="center", va="center", fontsize=7)
        left = [a + b for a, b in zip(left, vals, strict=True)]
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels([f"{k}\n({mix[k]['railcars']} cars, {mix[k]['images']} images)"
                        for k in labels], fontsize=8)
    ax.set_xlim(0, 100)
    ax.set_xlabel("share of railcars seen (%)")
    ax.set_title(title, fontsize=10, loc="left")
    ax.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.28), frameon=False)
    return _png(fig)
