"""A cap on the features tracked, against feature names chosen by clients.

Feature names come from traffic (JSON keys, extra CSV columns), so a client could make the
analyzer track any number of them. A :class:`FeatureLimit` tracks every name in ``keep`` (the
baseline's features and the configured payload columns) and at most ``max_features`` others,
first come first served, per decoded batch, per bucket and per window. The names beyond go to
an :class:`Untracked` tally instead of a profile: how many values they held, an HLL estimate of
how many distinct names there were, and a bounded sample of them (the checks report them as one
``extra_column_check`` violation).

Examples
--------
>>> limit = FeatureLimit(2, frozenset({"age"}))
>>> [limit.admits(name, others) for name, others in [("age", 5), ("x", 1), ("y", 2)]]
[True, True, False]
>>> tally = Untracked()
>>> tally.add("y", 3); tally.add("z", 1)
>>> (tally.values, tally.names, tally.sample)
(4, 2, ['y', 'z'])
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import datasketches as ds

from analyzer.monitors.data_quality.sketches import merge_hll, new_hll

__all__ = ["SAMPLE_NAMES", "SAMPLE_NAME_CHARS", "FeatureLimit", "Untracked", "baseline_names"]

SAMPLE_NAMES = 10
SAMPLE_NAME_CHARS = 100


@dataclass(frozen=True)
class FeatureLimit:
    """Track every name in ``keep`` and at most ``max_features`` others."""

    max_features: int
    keep: frozenset[str] = field(default_factory=frozenset)

    def admits(self, name: str, others: int) -> bool:
        """May ``name`` get a profile when ``others`` names outside ``keep`` already have one?"""
        return name in self.keep or others < self.max_features


def baseline_names(statistics: Iterable[str], constraints: Iterable[str] = ()) -> list[str]:
    """The names a limit always keeps for a baseline: its features (from ``statistics.json``
    and ``constraints.json``) and the positional names ``_c0 …`` of as many fields (matched to
    them by position)."""
    names = list(statistics)
    return [*names, *(f"_c{i}" for i in range(len(names))), *constraints]


def _short(name: str) -> str:
    return name if len(name) <= SAMPLE_NAME_CHARS else name[: SAMPLE_NAME_CHARS - 1] + "…"


class Untracked:
    """Names left out by a :class:`FeatureLimit`: values, distinct names (HLL), a sample."""

    def __init__(self) -> None:
        self.values = 0
        self.sample: list[str] = []
        self.hll: Any = None

    def __bool__(self) -> bool:
        return self.hll is not None

    @property
    def names(self) -> int:
        """Distinct names left out (exact while few, an HLL estimate beyond)."""
        return 0 if self.hll is None else round(self.hll.get_estimate())

    def add(self, name: str, values: int) -> None:
        if self.hll is None:
            self.hll = new_hll()
        self.hll.update(name)
        self.values += values
        short = _short(name)
        if len(self.sample) < SAMPLE_NAMES and short not in self.sample:
            self.sample.append(short)

    def add_counts(self, counts: Mapping[str, int]) -> None:
        for name, values in counts.items():
            self.add(name, values)

    def merge(self, other: Untracked) -> None:
        if other.hll is None:
            return
        self.hll = other.hll if self.hll is None else merge_hll(self.hll, other.hll)
        self.values += other.values
        for name in other.sample:
            if len(self.sample) < SAMPLE_NAMES and name not in self.sample:
                self.sample.append(name)

    def to_json(self) -> dict[str, Any] | None:
        if self.hll is None:
            return None
        return {
            "values": self.values,
            "sample": self.sample,
            "hll": bytes(self.hll.serialize_compact()).hex(),
        }

    @classmethod
    def from_json(cls, doc: Any) -> Untracked:
        """Read :meth:`to_json` (None: nothing left out); ValueError when it is not one."""
        out = cls()
        if doc is None:
            return out
        values, sample = doc["values"], doc["sample"]
        if type(values) is not int or values < 0 or not isinstance(sample, list):
            raise ValueError("a bad untracked-features tally")
        out.values = values
        out.sample = [_short(str(name)) for name in sample[:SAMPLE_NAMES]]
        out.hll = ds.hll_sketch.deserialize(bytes.fromhex(doc["hll"]))
        return out
