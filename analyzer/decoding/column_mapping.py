"""Matching captured columns to the baseline's feature names (pure, no I/O).

A headerless CSV request (or a JSON list) has no column names: the codecs name its fields
``_c0 … _cN`` by position, as SageMaker does. A baseline built from a training CSV with a
header has real names. When the config does not name the input columns, the captured fields
are matched to the baseline's features **by position** (field 0 is the baseline's first
feature, …), as SageMaker users expect; the status says so (``column_mapping``).

Examples
--------
>>> positional_mapping(["_c0", "_c1"], ["alcohol", "malic_acid"], ())
{'_c0': 'alcohol', '_c1': 'malic_acid'}
>>> positional_mapping(["age", "income"], ["age", "income"], ()) is None
True
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence

__all__ = [
    "BY_NAME",
    "BY_POSITION",
    "baseline_name_warnings",
    "is_positional",
    "mapping_note",
    "positional_mapping",
    "positional_note",
]

BY_NAME, BY_POSITION = "by_name", "by_position"
_POSITIONAL = re.compile(r"_c(\d+)")


def is_positional(name: str) -> bool:
    """``_c{i}``: the name a field without a column name gets."""
    return _POSITIONAL.fullmatch(name) is not None


def _feature_names(baseline: Sequence[str], predictions: Collection[str]) -> list[str]:
    return [name for name in baseline if name not in predictions]


def positional_mapping(
    captured: Sequence[str], baseline: Sequence[str], predictions: Collection[str]
) -> dict[str, str] | None:
    """``_c{i}`` → the baseline's i-th feature, or None when the names match as they are.

    Applies only when every captured input name is positional, none of them is a baseline
    name and the baseline has real names. Baseline columns that are predictions (named like
    a captured output column) are skipped. Fields beyond the baseline's width keep their
    ``_c{i}`` name (an extra column); baseline features beyond the captured width stay missing.
    """
    names = _feature_names(baseline, predictions)
    if not captured or not names or all(is_positional(n) for n in names):
        return None
    if not all(is_positional(n) for n in captured) or set(captured) & set(names):
        return None
    mapping: dict[str, str] = {}
    for name in captured:
        match = _POSITIONAL.fullmatch(name)
        index = int(match.group(1)) if match else len(names)
        if index < len(names):
            mapping[name] = names[index]
    return mapping or None


def mapping_note(mapping: Mapping[str, str], n_captured: int, n_baseline: int) -> str:
    """One sentence for the log and the status: what was mapped to what."""
    pairs = list(mapping.items())
    shown = ", ".join(f"{a} → {b}" for a, b in pairs[:3])
    if len(pairs) > 4:
        shown += f", …, {pairs[-1][0]} → {pairs[-1][1]}"
    elif len(pairs) == 4:
        shown += f", {pairs[-1][0]} → {pairs[-1][1]}"
    note = (
        "the captured input has no column names (no analyzer.payload.input.columns): its "
        f"{n_captured} fields are matched to the baseline's {n_baseline} features by position "
        f"({shown})"
    )
    if n_captured != n_baseline:
        note += (
            f"; the widths differ ({n_captured} captured fields, {n_baseline} baseline "
            "features), so the rest show as missing or extra columns"
        )
    return note + "; set analyzer.payload.input.columns to name them explicitly"


def baseline_name_warnings(
    features: Sequence[str], config_columns: Sequence[str], input_format: str
) -> list[str]:
    """What ``modelmon baseline`` warns about: baseline names that captured data will not match.

    ``features`` are the baseline's feature names (column order), ``config_columns`` the
    config's ``analyzer.payload.input.columns``, ``input_format`` its ``payload.input.format``.
    """
    out: list[str] = []
    if config_columns:
        missing = [n for n in features if n not in config_columns]
        unknown = [n for n in config_columns if n not in features]
        if missing or unknown:
            parts = []
            if unknown:
                parts.append(
                    f"analyzer.payload.input.columns names {_list(unknown)}, which the "
                    "baseline does not have (reported as extra columns)"
                )
            if missing:
                parts.append(
                    f"the baseline has {_list(missing)}, which the config does not name "
                    "(reported as missing columns)"
                )
            out.append(
                "; ".join(parts) + ": make analyzer.payload.input.columns the baseline's names, "
                "in the order the model receives them"
            )
        elif list(config_columns) != [n for n in features if n in config_columns]:
            out.append(
                "analyzer.payload.input.columns lists the baseline's names in another order; "
                "that is fine if it is the order the model receives them"
            )
    return out


def positional_note(
    features: Sequence[str], config_columns: Sequence[str], input_format: str
) -> str | None:
    """What will happen to unnamed captured fields against a baseline with names, or None."""
    named = [n for n in features if not is_positional(n)]
    if config_columns or not named or input_format not in ("csv", "tfserving"):
        return None
    first = ", ".join(f"field {i} → {n}" for i, n in enumerate(named[:3]))
    return (
        f"the baseline has column names and analyzer.payload.input.columns is empty: captured "
        f"{input_format} rows without names will be matched to the baseline's {len(named)} "
        f"features by position ({first}, …); if the model receives them in another order, set "
        "analyzer.payload.input.columns"
    )


def _list(names: Sequence[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
