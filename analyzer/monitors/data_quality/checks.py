"""The six data-quality checks of SageMaker Model Monitor, as a pure function.

``run_checks(baseline, constraints, current)`` compares a window's profile with the baseline
statistics and constraints and returns SageMaker ``constraint_violations.json`` entries plus a
per-feature result (distance, threshold, the decision margin, PSI, Jensen–Shannon,
Wasserstein). Readings where SageMaker leaves room (documented in ``docs/drift.md``):

- ``data_type_check``: the share of *present* values of the expected type; Integral values
  match Fractional (an integer is a valid number), a String column matches only values that
  are not numbers. Fires when the share is below ``datatype_check_threshold``.
- ``completeness_check``: present / (present + missing) below the constraint's completeness.
- ``categorical_values_check``: the share of present values inside ``domains`` below
  ``domain_content_threshold``.
- ``missing_column_check`` / ``extra_column_check``: a baseline column absent from the window
  (or without a single value in it: CSV rows with fewer fields) / a window column with values
  that the baseline does not know (one entry per column, named, for the first 20; then one
  entry named ``(more extra columns)`` with their count, the names left out by
  ``analyzer.max_features`` and a sample of names).
- ``baseline_drift_check``: :mod:`analyzer.monitors.data_quality.drift` (``Robust``: the corrected
verdict with the
  window's false-alarm rate split over the features tested; ``Simple``: SageMaker's plain
  ``distance > threshold``).

``evaluate_constraints: Disabled`` turns off all but the drift check; ``perform_comparison:
Disabled`` the drift check. Per-feature ``monitoring_config_overrides`` win over the global
``monitoring_config``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from analyzer.decoding.column_mapping import is_positional
from analyzer.monitors.data_quality.check_inputs import (
    Baseline,
    BaselineColumn,
    ConstraintsLike,
    CurrentColumn,
    CurrentProfile,
    Settings,
    baseline_kll_epsilon,
    current_categories,
    current_items,
    effective_settings,
)
from analyzer.monitors.data_quality.drift import DriftDecision, categorical_drift, numeric_drift
from analyzer.monitors.data_quality.drift_scores import categorical_scores, numeric_scores
from modelmon.config import AnalyzerConfig

__all__ = ["CheckResult", "FeatureResult", "check_options", "run_checks", "violations_json"]


def check_options(config: AnalyzerConfig) -> dict[str, Any]:
    """The keyword arguments of :func:`run_checks` that come from the ``analyzer`` config.

    One place for the batch pass and the service, so both decide alike.
    """
    return {"false_alarm_rate": config.false_alarm_rate, "drift_verdict": config.drift_verdict}


NUMERIC = ("Integral", "Fractional")
# Extra columns named one violation each; the rest (and the untracked ones) share one.
MAX_NAMED_EXTRA = 20
MORE_EXTRA = "(more extra columns)"
STRING = "String"
WARNING_FRACTION = 0.8


@dataclass
class FeatureResult:
    """One feature's drift figures for the window (None where not applicable)."""

    state: str
    distance: float | None
    threshold: float | None
    decision_margin: float | None
    psi: float | None
    js: float | None
    wasserstein: float | None
    method: str | None
    p_value: float | None
    n_baseline: float
    n_current: float
    robust_distance: float | None = None
    completeness: float | None = None


@dataclass
class CheckResult:
    """Everything one window's checks produced."""

    violations: list[dict[str, str]] = field(default_factory=list)
    features: dict[str, FeatureResult] = field(default_factory=dict)
    n_features_tested: int = 0
    alpha_per_feature: float | None = None


def _violation(feature: str, check: str, description: str) -> dict[str, str]:
    return {"feature_name": feature, "constraint_check_type": check, "description": description}


def _value_description(value: float) -> str:
    return f"Value: {value!r} does not meet the constraint requirement! "


def _pct(fraction: float) -> str:
    """A percentage with one decimal, rounded down so that 99.96% never prints as 100.0%."""
    return f"{math.floor(fraction * 1000 + 1e-9) / 10:.1f}%"


def _type_match(expected: str, column: CurrentColumn) -> float | None:
    present = column.num_present
    if present <= 0 or expected not in (*NUMERIC, STRING):
        return None
    counts = column.type_counts
    if expected == "Integral":
        matching = counts.get("Integral", 0)
    elif expected == "Fractional":
        matching = counts.get("Integral", 0) + counts.get("Fractional", 0)
    else:
        matching = counts.get(STRING, 0)
    return float(matching) / float(present)


def _drift(
    name: str,
    base: BaselineColumn,
    cur: CurrentColumn,
    settings: Settings,
    alpha: float,
    verdict: str,
) -> tuple[DriftDecision, tuple[float | None, float | None, float | None], float, float] | None:
    if base.inferred_type in NUMERIC:
        cur_items = current_items(cur)
        if cur_items is None or len(base.cdf_values) == 0:
            return None
        values, weights, eps_cur = cur_items
        base_pair = (np.asarray(base.cdf_values), np.asarray(base.cdf_weights))
        n_base, n_cur = float(np.sum(base_pair[1])), float(np.sum(weights))
        decision = numeric_drift(
            base_pair,
            (values, weights),
            threshold=settings.comparison_threshold,
            method=settings.comparison_method,
            alpha=alpha,
            eps_base=baseline_kll_epsilon(base),
            eps_cur=eps_cur,
            n_base=n_base,
            n_cur=n_cur,
            verdict=verdict,
        )
        scores = numeric_scores(base_pair, (values, weights), base.std_dev)
        return decision, scores, n_base, n_cur
    if base.inferred_type == STRING:
        cats = current_categories(cur)
        if cats is None or not base.categories:
            return None
        counts, eps_cur = cats
        decision = categorical_drift(
            base.categories,
            counts,
            threshold=settings.categorical_comparison_threshold,
            drift_method=settings.categorical_drift_method,
            comparison=settings.comparison_method,
            alpha=alpha,
            eps_cur=eps_cur,
            verdict=verdict,
        )
        psi, js = categorical_scores(base.categories, counts)
        return decision, (psi, js, None), float(sum(base.categories.values())), sum(counts.values())
    return None


def _drift_testable(base: BaselineColumn | None, cur: CurrentColumn) -> bool:
    if base is None or cur.num_present <= 0:
        return False
    if base.inferred_type in NUMERIC:
        return len(base.cdf_values) > 0 and current_items(cur) is not None
    return base.inferred_type == STRING and bool(base.categories) and bool(cur.num_present)


def run_checks(
    baseline: Baseline,
    constraints: ConstraintsLike,
    current: CurrentProfile,
    *,
    n_features_tested: int | None = None,
    false_alarm_rate: float = 0.01,
    drift_verdict: str = "significant",
) -> CheckResult:
    """Run the six checks of one window against the baseline.

    ``n_features_tested`` (default: the features with a drift test in this window) splits
    ``false_alarm_rate`` between the features (Bonferroni), so that the chance of any false
    drift violation in a window stays at most ``false_alarm_rate``. ``drift_verdict`` is
    ``significant`` or ``confident`` (:mod:`analyzer.monitors.data_quality.drift`,
    ``docs/drift.md``).
    """
    result = CheckResult()
    base_cols: Mapping[str, BaselineColumn] = baseline.features
    known = list(constraints.features) + [n for n in base_cols if n not in constraints.features]
    cur_cols: dict[str, CurrentColumn] = dict(current.features)
    # Prediction columns are checked only where the baseline has a column of that name.
    predictions: Mapping[str, CurrentColumn] = getattr(current, "predictions", None) or {}
    cur_cols.update({n: p for n, p in predictions.items() if n in known and n not in cur_cols})
    glob = effective_settings(constraints.monitoring, {})
    tested = [
        n
        for n in known
        if n in cur_cols
        and _drift_testable(base_cols.get(n), cur_cols[n])
        and effective_settings(constraints.monitoring, _overrides(constraints, n)).compare
    ]
    n_tests = n_features_tested if n_features_tested is not None else len(tested)
    alpha = false_alarm_rate / max(1, n_tests)
    result.n_features_tested, result.alpha_per_feature = n_tests, alpha
    out = result.violations

    # absent, or never holding a value (e.g. CSV rows with fewer fields than the baseline)
    missing = [n for n in known if n not in cur_cols or cur_cols[n].num_present == 0]
    if glob.evaluate and missing:
        for name in missing:
            out.append(
                _violation(
                    name,
                    "missing_column_check",
                    _columns_text("missing", name, cur_cols, known),
                )
            )
    extra = [n for n, c in cur_cols.items() if n not in known and c.num_present > 0]
    untracked = getattr(current, "untracked", None) or None
    if glob.evaluate:
        n_current = len(cur_cols) + (untracked.names if untracked is not None else 0)
        for name in extra[:MAX_NAMED_EXTRA]:
            out.append(
                _violation(
                    name,
                    "extra_column_check",
                    _columns_text("extra", name, cur_cols, known, n_current),
                )
            )
        rest = extra[MAX_NAMED_EXTRA:]
        if rest or untracked is not None:
            out.append(
                _violation(
                    MORE_EXTRA,
                    "extra_column_check",
                    _columns_text("extra", None, cur_cols, known, n_current)
                    + _more_text(rest, untracked),
                )
            )

    for name in known:
        if name not in cur_cols:
            continue
        cur = cur_cols[name]
        settings = effective_settings(constraints.monitoring, _overrides(constraints, name))
        constraint = constraints.features.get(name)
        base = base_cols.get(name)
        total = cur.num_present + cur.num_missing
        completeness = cur.num_present / total if total else None
        if settings.evaluate and constraint is not None:
            _constraint_checks(name, constraint, cur, settings, completeness, out)
        fr = FeatureResult(
            "ok",
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            None,
            float(base.num_present) if base else 0.0,
            float(cur.num_present),
            completeness=completeness,
        )
        if base is not None and name in tested:
            drift = _drift(name, base, cur, settings, alpha, drift_verdict)
            if drift is not None:
                decision, (psi, js, w), n_base, n_cur = drift
                fr = FeatureResult(
                    "ok",
                    decision.distance,
                    decision.threshold,
                    decision.margin,
                    psi,
                    js,
                    w,
                    decision.method,
                    decision.p_value,
                    n_base,
                    n_cur,
                    decision.robust,
                    completeness,
                )
                if decision.violation:
                    out.append(_violation(name, "baseline_drift_check", _drift_text(decision)))
        flagged = any(v["feature_name"] == name for v in out)
        near = (
            fr.distance is not None
            and fr.threshold
            and fr.distance >= (WARNING_FRACTION * fr.threshold)
        )
        fr.state = "alert" if flagged else ("warning" if near else "ok")
        result.features[name] = fr
    return result


def _overrides(constraints: ConstraintsLike, name: str) -> Mapping[str, Any]:
    constraint = constraints.features.get(name)
    return constraint.overrides if constraint is not None and constraint.overrides else {}


def _constraint_checks(
    name: str,
    constraint: Any,
    cur: CurrentColumn,
    settings: Settings,
    completeness: float | None,
    out: list[dict[str, str]],
) -> None:
    expected = constraint.inferred_type
    share = _type_match(expected, cur)
    if share is not None and share < settings.datatype_check_threshold:
        out.append(
            _violation(
                name,
                "data_type_check",
                (
                    "Data type match requirement is not met. "
                    f"Expected data type: {expected}, Expected match: "
                    f"{_pct(settings.datatype_check_threshold)}. "
                    f"Observed: Only {_pct(share)} of data is {expected}."
                ),
            )
        )
    required = constraint.completeness
    if required is not None and completeness is not None and completeness < required:
        out.append(_violation(name, "completeness_check", _value_description(completeness)))
    domains = constraint.domains
    if domains and cur.num_present > 0:
        cats = current_categories(cur)
        if cats is not None:
            counts, _ = cats
            allowed = set(domains)
            inside = sum(c for v, c in counts.items() if v in allowed)
            share_in = inside / float(cur.num_present)
            if share_in < settings.domain_content_threshold:
                out.append(
                    _violation(name, "categorical_values_check", _value_description(share_in))
                )


def _columns_text(
    kind: str,
    name: str | None,
    current: Mapping[str, Any],
    known: Sequence[str],
    n_current: int | None = None,
) -> str:
    """SageMaker's description, then which column and why (and what to do when it is names).

    ``n_current`` counts the current columns when some were not profiled (beyond
    ``analyzer.max_features``); ``name`` None: the one violation for the extra columns
    beyond the named ones, whose tail :func:`_more_text` gives.
    """
    count = len(current) if n_current is None else n_current
    text = (
        f"There are {kind} columns in current dataset. Number of columns in current "
        f"dataset: {count}, Number of columns in baseline constraints: {len(known)}"
    )
    if name is None:
        return text
    text += ". "
    if kind == "missing":
        text += f"{name!r} is in the baseline but has no value in the current data"
    else:
        text += f"{name!r} has values in the current data but is not in the baseline"
    unnamed = [n for n in current if is_positional(n)]
    if unnamed and not any(is_positional(n) for n in known):
        text += (
            f" (the current data has {len(unnamed)} unnamed columns, _c0…: set "
            "analyzer.payload.input.columns to the baseline's names, in order)"
        )
    return text + "."


def _more_text(rest: list[str], untracked: Any) -> str:
    """The tail of the one violation for the extra columns beyond the named ones."""
    parts = []
    if rest:
        parts.append(f"{len(rest)} more profiled extra columns")
    if untracked is not None:
        parts.append(
            f"about {untracked.names} more not profiled (beyond analyzer.max_features), "
            f"holding {untracked.values} values"
        )
    sample = (rest + list(untracked.sample if untracked is not None else []))[:10]
    return ". " + " and ".join(parts) + "; e.g. " + ", ".join(sample)


def _drift_text(decision: DriftDecision) -> str:
    if decision.method == "ChiSquared" and decision.p_value is not None:
        return (
            f"Baseline drift p-value: {decision.p_value!r} is below threshold: "
            f"{decision.threshold!r}"
        )
    return (
        f"Baseline drift distance: {decision.distance!r} exceeds threshold: {decision.threshold!r}"
    )


def violations_json(result: CheckResult) -> dict[str, list[dict[str, str]]]:
    """SageMaker's ``constraint_violations.json`` document."""
    return {"violations": [dict(v) for v in result.violations]}
