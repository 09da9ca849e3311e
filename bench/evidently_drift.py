"""Evidently's default data-drift report on two CSV files (run with the Evidently venv's Python).

Usage: ``/work/evidently-venv/bin/python bench/evidently_drift.py REFERENCE.csv CURRENT.csv``

Imports nothing from modelmon: it runs in its own virtualenv (evidently 0.7.x, pandas < 3).
Prints the number of columns Evidently calls drifted, so the work cannot be skipped.
"""

from __future__ import annotations

import sys

import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset


def main() -> None:
    reference = pd.read_csv(sys.argv[1])
    current = pd.read_csv(sys.argv[2])
    snapshot = Report([DataDriftPreset()]).run(current_data=current, reference_data=reference)
    drifted = 0
    for metric in snapshot.dict()["metrics"]:
        if metric["config"]["type"].endswith("DriftedColumnsCount"):
            drifted = metric["value"]["count"]
    print(f"evidently: {len(current):,} rows, {drifted} drifted columns")


if __name__ == "__main__":
    main()
