"""whylogs profiles of two CSV files and its drift scores (run with the whylogs venv's Python).

Usage: ``/work/whylogs-venv/bin/python bench/whylogs_profile.py REFERENCE.csv CURRENT.csv``

Imports nothing from modelmon: it runs in its own virtualenv (``pip install 'whylogs[viz]'
'pandas<3'``). Reads each CSV in chunks of ``CHUNK`` rows (whylogs' streaming use: one profile
per chunk, merged), then computes whylogs' drift scores of the current profile against the
reference one (``calculate_drift_scores``: KS on the KLL sketches for numbers, chi-square on
the frequent items for categories). Prints the rows and the number of drifted columns, so the
work cannot be skipped.
"""

from __future__ import annotations

import sys

import pandas as pd
import whylogs as why

CHUNK = 500_000


def profile(path: str) -> tuple[int, object]:
    merged = None
    rows = 0
    for chunk in pd.read_csv(path, chunksize=CHUNK):
        view = why.log(chunk).view()
        merged = view if merged is None else merged.merge(view)
        rows += len(chunk)
    return rows, merged


def main() -> None:
    from whylogs.viz.drift.column_drift_algorithms import calculate_drift_scores

    _, reference = profile(sys.argv[1])
    rows, current = profile(sys.argv[2])
    scores = calculate_drift_scores(
        target_view=current, reference_view=reference, with_thresholds=True
    )
    drifted = sum(
        1 for s in scores.values() if s and s.get("drift_category") in ("DRIFT", "POSSIBLE_DRIFT")
    )
    print(f"whylogs: {rows:,} rows, {drifted} drifted columns of {len(scores)}")


if __name__ == "__main__":
    main()
