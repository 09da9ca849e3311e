"""Mergeable per-feature profiles on Apache DataSketches: the analyzer's unit of state.

A :class:`FeatureProfile` holds exact counts (present, missing, per inferred type), the exact
moments of its numbers (count, sum, population variance merged with Chan et al.'s formula, min,
max), a KLL sketch of the numbers, and for string values a frequent-items sketch (exact counts
while the feature has at most 3072 distinct values) and an HLL distinct count. Memory is bounded
by the sketches, never by the number of rows. Profiles merge (associative and commutative on
the exact parts, within the sketches' error on the rest) and serialize to bytes.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(7)
>>> x = rng.normal(size=1000)
>>> left = profile_rows({"x": x[:400]})
>>> left.merge(profile_rows({"x": x[400:]}))
>>> f = left.features["x"]
>>> (f.count, bool(np.isclose(f.std, x.std())), f.inferred_type)
(1000, True, 'Fractional')
"""

from __future__ import annotations

import struct
import zlib
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import orjson

from analyzer.decoding.contract import DecodedBatch
from analyzer.decoding.value_types import FRACTIONAL, INTEGRAL, STRING, UNKNOWN, PreSplit
from analyzer.monitors.data_quality.cardinality import FeatureLimit, Untracked
from analyzer.monitors.data_quality.feature_profile import FeatureProfile, ProfileError
from analyzer.monitors.data_quality.sketches import DEFAULT_KLL_K

__all__ = [
    "FRACTIONAL",
    "INTEGRAL",
    "STRING",
    "UNKNOWN",
    "DatasetProfile",
    "FeatureLimit",
    "FeatureProfile",
    "ProfileError",
    "profile_rows",
]

_DATASET_MAGIC = b"MMD1"
Column = Sequence[Any] | PreSplit


def _present(values: Column | np.ndarray) -> int:
    """How many values of a column chunk are present (for the untracked tally)."""
    if isinstance(values, PreSplit):
        return values.n - values.split.missing
    if isinstance(values, list):
        return len(values) - values.count(None) - values.count("")
    return len(values)


class _Group:
    """Features of one side (inputs or predictions) with their row count."""

    def __init__(self, k: int, limit: FeatureLimit | None = None) -> None:
        self.k = k
        self.rows = 0
        self.features: dict[str, FeatureProfile] = {}
        self.limit = limit
        self.untracked = Untracked()
        self._others = 0  # tracked features outside limit.keep

    def _admit(self, name: str) -> bool:
        """Whether a name without a profile yet gets one (counted when it does)."""
        limit = self.limit
        if limit is None:
            return True
        if not limit.admits(name, self._others):
            return False
        self._others += name not in limit.keep
        return True

    def set_limit(self, limit: FeatureLimit | None) -> None:
        """Apply ``limit`` from now on; features over it move to the untracked tally."""
        self.limit, self._others = limit, 0
        if limit is None:
            return
        for name in list(self.features):
            if not self._admit(name):
                self.untracked.add(name, self.features.pop(name).num_present)

    def update(self, columns: Mapping[str, Column], n_rows: int, padding: int) -> None:
        """Add ``n_rows`` rows, of which ``padding`` (all ``None``) are not data."""
        before = self.rows
        for name, values in columns.items():
            feature = self.features.get(name)
            if feature is None:
                if not self._admit(name):
                    self.untracked.add(name, _present(values))
                    continue
                feature = self.features[name] = FeatureProfile(name, self.k)
                feature.num_missing += before
            feature.update(values)
            feature.num_missing -= padding
        for name, feature in self.features.items():
            if name not in columns:
                feature.num_missing += n_rows - padding
        self.rows += n_rows - padding

    def merge(self, other: _Group) -> None:
        for name, feature in self.features.items():
            if name not in other.features:
                feature.num_missing += other.rows
        for name, theirs in other.features.items():
            mine = self.features.get(name)
            if mine is None:
                if not self._admit(name):
                    self.untracked.add(name, theirs.num_present)
                    continue
                mine = self.features[name] = FeatureProfile(name, theirs.k)
                mine.num_missing += self.rows
            mine.merge(theirs)
        self.untracked.merge(other.untracked)
        self.rows += other.rows


class DatasetProfile:
    """Profiles of all features (and predictions) of a dataset or a time window."""

    def __init__(self, k: int = DEFAULT_KLL_K, limit: FeatureLimit | None = None) -> None:
        self.k = k
        self._inputs = _Group(k, limit)
        self._outputs = _Group(k, limit)
        self.column_counts: Counter[int] = Counter()
        self.renamed = False  # set by rename_features

    def set_limit(self, limit: FeatureLimit | None) -> None:
        """Track at most ``limit`` features per side from now on
        (:mod:`analyzer.monitors.data_quality.cardinality`);
        features already over it move to the untracked tally."""
        self._inputs.set_limit(limit)
        self._outputs.set_limit(limit)

    @property
    def untracked(self) -> Untracked:
        """Input feature names left out by the limit (values, distinct names, a sample)."""
        return self._inputs.untracked

    @property
    def untracked_predictions(self) -> Untracked:
        return self._outputs.untracked

    @property
    def item_count(self) -> int:
        """Rows with an input side (the dataset's ``item_count``)."""
        return self._inputs.rows

    @property
    def features(self) -> dict[str, FeatureProfile]:
        """Input features in column order."""
        return self._inputs.features

    @property
    def predictions(self) -> dict[str, FeatureProfile]:
        """Output (prediction) columns; compared only where a baseline has the same name."""
        return self._outputs.features

    @property
    def prediction_count(self) -> int:
        """Rows with an output side."""
        return self._outputs.rows

    def update(self, batch: DecodedBatch) -> None:
        """Add a decoded batch of capture records (from any path of
        :mod:`analyzer.decoding.contract`)."""
        self._inputs.update(batch.columns, batch.n_rows, batch.rows_without_input)
        self._outputs.update(batch.predictions, batch.n_rows, batch.rows_without_output)
        self._inputs.untracked.add_counts(batch.untracked)
        self._outputs.untracked.add_counts(batch.untracked_predictions)
        self.column_counts.update(batch.field_counts)

    def update_columns(
        self, columns: Mapping[str, Sequence[Any]], n_rows: int, field_counts: Counter[int] | None
    ) -> None:
        """Add a table chunk: ``columns`` hold ``n_rows`` values each."""
        self._inputs.update(columns, n_rows, 0)
        if field_counts:
            self.column_counts.update(field_counts)

    def rename_features(self, names: Mapping[str, str]) -> None:
        """Rename input features in place (``old -> new``), keeping their column order."""
        renamed: dict[str, FeatureProfile] = {}
        for name, feature in self._inputs.features.items():
            new = names.get(name, name)
            feature.name = new
            renamed[new] = feature
        self._inputs.features = renamed
        self.renamed = True

    def merge(self, other: DatasetProfile) -> None:
        self._inputs.merge(other._inputs)
        self._outputs.merge(other._outputs)
        self.column_counts.update(other.column_counts)

    def __iadd__(self, other: DatasetProfile) -> DatasetProfile:
        self.merge(other)
        return self

    def to_bytes(self) -> bytes:
        blobs: list[bytes] = []
        sides = []
        for group in (self._inputs, self._outputs):
            side: dict[str, Any] = {"rows": group.rows, "n": len(group.features)}
            untracked = group.untracked.to_json()
            if untracked is not None:
                side["untracked"] = untracked
            sides.append(side)
            blobs.extend(f.to_bytes() for f in group.features.values())
        header = orjson.dumps(
            {
                "k": self.k,
                "sides": sides,
                "column_counts": {str(k): v for k, v in self.column_counts.items()},
                "sizes": [len(b) for b in blobs],
                "crc32": zlib.crc32(b"".join(blobs)),
            }
        )
        return b"".join([_DATASET_MAGIC, struct.pack("<I", len(header)), header, *blobs])

    @classmethod
    def from_bytes(cls, data: bytes) -> DatasetProfile:
        """Read :meth:`to_bytes`; :class:`ProfileError` when the bytes are not a valid profile."""
        if data[:4] != _DATASET_MAGIC:
            raise ProfileError("not a serialized DatasetProfile")
        try:
            (size,) = struct.unpack_from("<I", data, 4)
            head = orjson.loads(data[8 : 8 + size])
            profile = cls(head["k"])
            profile.column_counts = Counter(
                {int(k): int(v) for k, v in head["column_counts"].items()}
            )
            offset = 8 + size
            crc = head.get("crc32")  # profiles written before the checksum have none
            if crc is not None and crc != zlib.crc32(memoryview(data)[offset:]):
                raise ProfileError("a DatasetProfile whose bytes do not match their checksum")
            sizes = iter(head["sizes"])
            sides = zip((profile._inputs, profile._outputs), head["sides"], strict=True)
            for group, side in sides:
                group.rows = int(side["rows"])
                group.untracked = Untracked.from_json(side.get("untracked"))
                for _ in range(side["n"]):
                    blob_size = next(sizes)
                    feature = FeatureProfile.from_bytes(data[offset : offset + blob_size])
                    group.features[feature.name] = feature
                    offset += blob_size
        except ProfileError:
            raise
        except (
            struct.error,
            orjson.JSONDecodeError,
            KeyError,
            TypeError,
            ValueError,
            AttributeError,
            StopIteration,
            RuntimeError,
            IndexError,
            OverflowError,
            MemoryError,
        ) as exc:
            raise ProfileError(f"a corrupt DatasetProfile: {exc!r}") from exc
        if offset != len(data):
            raise ProfileError("a serialized DatasetProfile of the wrong length")
        return profile


def profile_rows(columns: Mapping[str, Sequence[Any]], k: int = DEFAULT_KLL_K) -> DatasetProfile:
    """A profile of a table given as columns of equal length (lists or numpy arrays)."""
    profile = DatasetProfile(k)
    lengths = {len(values) for values in columns.values()}
    if len(lengths) > 1:
        raise ValueError(f"columns of different lengths: {sorted(lengths)}")
    n_rows = lengths.pop() if lengths else 0
    profile.update_columns(columns, n_rows, Counter({len(columns): n_rows}) if n_rows else None)
    return profile
