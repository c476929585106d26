"""Shared benchmark plumbing: corpora made once per session, and a ratio summary.

Benchmarks run once as plain tests by default (``--benchmark-disable`` in pyproject).
Timing runs: ``python -m pytest benchmarks --benchmark-enable --benchmark-json=out.json``.
Within each group, a benchmark with ``benchmark.extra_info["baseline"] = True`` is the
reference: the session summary prints every member's median time as a ratio to it (also
written to the JSON file under ``"dctnet_ratios"``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from jpeg_fixtures import photos, variants  # noqa: E402,F401  (shared fixtures)


def _ratio_rows(benchmarks) -> list[dict]:
    groups: dict[str, list] = {}
    for bench in benchmarks:
        if bench.stats is None or not getattr(bench.stats, "rounds", 0):
            continue
        groups.setdefault(bench.group or "", []).append(bench)
    rows = []
    for group, members in sorted(groups.items()):
        base = [b for b in members if b.extra_info.get("baseline")]
        for b in members:
            median = b.stats.median
            items = b.extra_info.get("items")
            row = {"group": group, "name": b.name, "median_s": median,
                   "items_per_s": items / median if items else None,
                   "mpix_per_s": b.extra_info.get("mpix", 0) / median if b.extra_info.get("mpix") else None,
                   "ratio_to_baseline": median / base[0].stats.median if base else None,
                   "baseline": base[0].name if base else None}
            rows.append(row)
    return rows


def pytest_benchmark_update_json(config, benchmarks, output_json):
    output_json["dctnet_ratios"] = _ratio_rows(benchmarks)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    session = getattr(config, "_benchmarksession", None)
    if session is None or session.disabled:
        return
    rows = _ratio_rows(session.benchmarks)
    if not rows:
        return
    tr = terminalreporter
    tr.section("dctnet: time ratios to each group's baseline (median; smaller is faster)")
    current = None
    for r in rows:
        if r["group"] != current:
            current = r["group"]
            tr.write_line(f"[{current}]  baseline: {r['baseline']}")
        extra = f"{r['mpix_per_s']:8.1f} MP/s" if r["mpix_per_s"] else ""
        extra += f"{r['items_per_s']:9.1f} items/s" if r["items_per_s"] else ""
        ratio = f"{r['ratio_to_baseline']:.3f}" if r["ratio_to_baseline"] is not None else "  -  "
        tr.write_line(f"  {r['name']:<60} {ratio:>7}  {extra}")
