"""The report of one monitoring pass: its three SageMaker documents and a readable summary.

Pure: documents in, documents and text out. ``statistics.json`` is the window's statistics,
``constraints.json`` the constraints the window was checked against (as read, so a report
says what it applied), ``constraint_violations.json`` the violations.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from analyzer.monitors.data_quality.checks import CheckResult, FeatureResult, violations_json

__all__ = ["REPORT_FILES", "report_documents", "summary_text"]

REPORT_FILES = ("statistics.json", "constraints.json", "constraint_violations.json")


def report_documents(
    statistics: Mapping[str, Any], constraints: Mapping[str, Any], result: CheckResult
) -> dict[str, Any]:
    """File name → JSON document, in the order of :data:`REPORT_FILES`."""
    return {
        "statistics.json": dict(statistics),
        "constraints.json": dict(constraints),
        "constraint_violations.json": violations_json(result),
    }


_NAME_WIDTH = 48


def _num(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}"


def _verdict(fr: FeatureResult, checks: list[str]) -> str:
    if checks:
        return "VIOLATION " + ",".join(c.removesuffix("_check") for c in checks)
    return {"warning": "near threshold", "alert": "violation"}.get(fr.state, "ok")


def summary_text(
    result: CheckResult,
    *,
    rows: int,
    files: int,
    window: tuple[datetime, datetime] | None,
    bad_records: Mapping[str, int] | None = None,
    out_dir: str | None = None,
) -> str:
    """A terminal summary: the window, one line per feature, then the violations."""
    lines: list[str] = []
    if window is not None:
        lines.append(f"window   {window[0].isoformat()} .. {window[1].isoformat()}")
    bad = sum((bad_records or {}).values())
    bad_text = ""
    if bad:
        reasons = ", ".join(f"{k}: {v}" for k, v in sorted((bad_records or {}).items()))
        bad_text = f", {bad} records skipped ({reasons})"
    lines.append(f"data     {rows:,} rows from {files} files{bad_text}")
    if result.alpha_per_feature is not None:
        lines.append(
            f"drift    {result.n_features_tested} features tested, false-alarm rate "
            f"{result.alpha_per_feature * max(1, result.n_features_tested):g} per window "
            f"(Bonferroni: {result.alpha_per_feature:.2g} each)"
        )
    by_feature: dict[str, list[str]] = {}
    for v in result.violations:
        by_feature.setdefault(v["feature_name"], []).append(v["constraint_check_type"])
    # The name column is as wide as the longest name up to _NAME_WIDTH; a longer name is
    # printed whole on a line of its own, its numbers on the next (never cut).
    width = min(max([len("feature"), *map(len, result.features)]), _NAME_WIDTH)
    header = (
        f"{'feature':<{width}} {'rows':>8} {'distance':>9} {'margin':>8} {'thresh':>7} "
        f"{'PSI':>7} {'JS':>7} {'W/std':>7}  verdict"
    )
    lines += ["", header, "-" * len(header)]
    for name, fr in result.features.items():
        if len(name) > width:
            lines.append(name)
        lines.append(
            f"{name if len(name) <= width else '':<{width}} {int(fr.n_current):>8,} "
            f"{_num(fr.distance):>9} "
            f"{_num(fr.decision_margin):>8} {_num(fr.threshold, 3):>7} {_num(fr.psi, 3):>7} "
            f"{_num(fr.js, 3):>7} {_num(fr.wasserstein, 3):>7}  "
            f"{_verdict(fr, by_feature.get(name, []))}"
        )
    lines.append("")
    if result.violations:
        lines.append(f"{len(result.violations)} violation(s):")
        lines += [
            f"  {v['feature_name']}: {v['constraint_check_type']}: {v['description']}"
            for v in result.violations
        ]
    else:
        lines.append("no violations")
    if out_dir:
        lines.append(f"reports  {out_dir}")
    return "\n".join(lines)
