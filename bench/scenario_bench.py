"""Scenario benchmark: load + traffic process + plan (no rendering), then render the
2023-09-14..2023-10-05 Tumangang images of the built-in scenario through
``simulate_scenario`` and report images per minute.

    .venv/bin/python bench/scenario_bench.py
"""

from __future__ import annotations

import statistics
import tempfile
import time

from railwatch.simulate.scenario import load_scenario, plan_images, simulate_scenario
from railwatch.simulate.traffic import build_traffic


def main() -> None:
    t = time.perf_counter()
    spec = load_scenario("tumangang-khasan")
    t_load = time.perf_counter() - t
    times = []
    for seed in range(3):
        t = time.perf_counter()
        traffic = build_traffic(spec, seed)
        times.append(time.perf_counter() - t)
    t = time.perf_counter()
    plan = plan_images(spec, 0)
    t_plan = time.perf_counter() - t
    print(
        f"load {t_load:.2f} s; traffic process median {statistics.median(times):.2f} s "
        f"({len(traffic.visits)} visits); plan {t_plan * 1000:.1f} ms ({len(plan)} images)"
    )
    per_image: list[tuple[str, float]] = []
    last = [time.perf_counter()]

    def tick(done: int, total: int, name: str) -> None:
        now = time.perf_counter()
        per_image.append((name, now - last[0]))
        last[0] = now

    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        simulate_scenario(
            "tumangang-khasan",
            out,
            seed=0,
            start="2023-09-14",
            end="2023-10-05",
            sites=["tumangang"],
            progress=tick,
        )
        total = time.perf_counter() - t
    for name, s in per_image:
        print(f"  {name}  {s:.2f} s")
    print(
        f"{len(per_image)} images in {total:.1f} s -> {len(per_image) / total * 60:.1f} images/min"
    )


if __name__ == "__main__":
    main()
