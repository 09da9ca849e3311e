"""The terminal summary of ``analyze --once``: feature names are shown whole."""

from __future__ import annotations

import random

from analyzer.monitors.data_quality.checks import run_checks
from analyzer.monitors.data_quality.profile import profile_rows
from analyzer.monitors.data_quality.report_format import summary_text
from analyzer.monitors.data_quality.statistics_format import statistics_json, suggest_constraints
from analyzer.monitors.data_quality.statistics_readers import parse_constraints, parse_statistics

SHORT = "age"
MEDIUM = "customer_lifetime_value_usd"  # 27 characters: was cut at 20
LONG = "a_feature_name_longer_than_any_terminal_column_should_be_" + "x" * 40


def _summary() -> str:
    rng = random.Random(7)
    table = {name: [str(rng.gauss(50, 10)) for _ in range(400)] for name in (SHORT, MEDIUM, LONG)}
    base = profile_rows(table)
    stats, cons = statistics_json(base), suggest_constraints(base)
    current = profile_rows(table)
    result = run_checks(parse_statistics(stats), parse_constraints(cons), current)
    return summary_text(result, rows=400, files=1, window=None)


def test_feature_names_are_never_cut() -> None:
    lines = _summary().splitlines()
    header = next(line for line in lines if line.startswith("feature"))
    (medium,) = [line for line in lines if line.startswith(MEDIUM)]
    assert medium.split()[0] == MEDIUM
    rows_end = header.index("rows") + len("rows")
    assert medium[:rows_end].endswith(" 400")  # the column widened: numbers stay aligned
    assert LONG in lines  # longer than the column: whole, on a line of its own
    numbers = lines[lines.index(LONG) + 1]
    assert numbers[:rows_end].endswith(" 400") and not numbers[: len(MEDIUM)].strip()
