"""A chunk of capture lines decoded: its bucket profiles, good and bad records, predictions.

The work of the service's ingest that needs nothing but the lines (no file, no database): the
ingest thread does it, or a process of its own (:mod:`analyzer.ingest.decode_process`), with
the same :class:`ChunkDecoder` built from the same :class:`DecodeSpec`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from analyzer.decoding.codecs import DecodedBatch, PayloadDecoder
from analyzer.decoding.inference_time import parse_inference_time
from analyzer.ingest.chunk_buckets import lines_by_bucket, lines_by_time
from analyzer.monitors.data_quality.cardinality import FeatureLimit
from analyzer.monitors.data_quality.profile import DatasetProfile
from analyzer.monitors.model_quality.predictions import Extracted, PredictionExtractor
from modelmon.config import ModelmonConfig, ModelQualityConfig, PayloadConfig

__all__ = ["ChunkDecoder", "DecodeSpec", "Decoded", "bucket_records"]

# a chunk's bucket profiles by start, its good records, its bad ones by reason, and (with
# model quality on) its predictions
Decoded = tuple[dict[int, DatasetProfile], int, Counter[str], Extracted | None]


@dataclass(frozen=True)
class DecodeSpec:
    """All a chunk's decode depends on (picklable: it goes to the decoding process)."""

    payload: PayloadConfig
    limit: FeatureLimit
    bucket_s: int
    kll_k: int
    quality: ModelQualityConfig | None

    @classmethod
    def of(cls, config: ModelmonConfig, limit: FeatureLimit) -> DecodeSpec:
        analyzer = config.analyzer
        return cls(analyzer.payload, limit, analyzer.bucket_s, analyzer.kll_k,
                   analyzer.model_quality)  # fmt: skip


def bucket_records(
    lines: Iterable[bytes], bucket_s: int
) -> tuple[dict[int | None, list[Any]], Counter[str]]:
    """Parse JSON lines once and group the records by the time bucket of their inferenceTime.

    Lines that are not JSON are counted as ``not_json``; records without a readable time go
    under ``None`` (the decoder then counts them by reason). Blank lines are skipped.
    """
    groups: dict[int | None, list[Any]] = {}
    bad: Counter[str] = Counter()
    for line in lines:
        if not line or line.isspace():
            continue
        try:
            record = orjson.loads(line)
        except orjson.JSONDecodeError:
            bad["not_json"] += 1
            continue
        key: int | None
        try:
            moment = parse_inference_time(record["eventMetadata"]["inferenceTime"])
            key = int(moment.timestamp()) // bucket_s * bucket_s
        except (KeyError, TypeError, ValueError, AttributeError):
            key = None
        groups.setdefault(key, []).append(record)
    return groups, bad


class ChunkDecoder:
    """Decodes chunks of capture lines for one :class:`DecodeSpec`."""

    def __init__(self, spec: DecodeSpec) -> None:
        self.spec = spec
        self.decoder = PayloadDecoder(spec.payload, spec.limit)
        self._bucket_s = spec.bucket_s
        self._kll_k = spec.kll_k
        self._limit = spec.limit
        self._predictions = (
            PredictionExtractor(spec.quality, spec.payload.output) if spec.quality else None
        )

    def decode(self, chunk: list[bytes]) -> Decoded:
        """Bucket profiles of a chunk, its good records, its bad ones by reason, and (with
        model quality on) its predictions.

        Most chunks fall in one bucket: they are decoded once as a whole. A chunk that spans
        buckets is grouped by bucket and each group decoded on its own: by the times the
        lines show when its first and last lines show two buckets and every group decodes
        into its own (:func:`lines_by_time`: the chunk is decoded once); by
        :func:`bucket_records` when those groups held bad records and good ones in two
        buckets or more; else by the whole chunk's decoded times when every line gave one
        record (the lines are then split, not parsed by :func:`bucket_records`), else by
        :func:`bucket_records`.
        """
        bucket_s = self._bucket_s
        extract = self._predictions.extract if self._predictions is not None else None
        guessed = self._decoded_by_time(chunk)
        if isinstance(guessed, list):
            return self._grouped(guessed, Counter(), extract)
        if guessed is None:
            batch = self.decoder.decode_lines(chunk)
            stamps = list(map(datetime.timestamp, batch.inference_times))
            keys = [int(stamp) // bucket_s * bucket_s for stamp in stamps]
            starts = set(keys)
            if len(starts) <= 1:
                extracted = extract(batch, stamps) if extract is not None else None
                if not starts:
                    return {}, 0, Counter(batch.bad), extracted
                profile = DatasetProfile(self._kll_k, self._limit)
                profile.update(batch)
                return {starts.pop(): profile}, batch.n_records, Counter(batch.bad), extracted
            lines = lines_by_bucket(chunk, keys, stamps) if not batch.bad else None
            if lines is not None:
                batches = (
                    (key, self.decoder.decode_lines(group), times)
                    for key, (group, times) in lines.items()
                )
                return self._grouped(batches, Counter(), extract)
        groups, bad = bucket_records(chunk, bucket_s)  # bad records, good ones in 2+ buckets
        records = ((key, self.decoder.decode_records(group), None) for key, group in groups.items())
        return self._grouped(records, bad, extract)

    def _decoded_by_time(
        self, chunk: list[bytes]
    ) -> list[tuple[int | None, DecodedBatch, list[float] | None]] | bool | None:
        """The chunk's groups by :func:`lines_by_time`, each decoded, when every group's
        lines each gave one record in its bucket (as a split by the decoded times would
        have grouped them). Else True when the groups held bad records and good ones in two
        buckets or more: the whole chunk's decode would show the same (a line decodes alike
        in any batch), and send it to :func:`bucket_records`; else None (decode it whole)."""
        groups = lines_by_time(chunk, self._bucket_s)
        if groups is None:
            return None
        decoded: list[tuple[int | None, DecodedBatch, list[float] | None]] = []
        starts: set[int] = set()
        bad = False
        fits = True
        for key, group in groups.items():
            batch = self.decoder.decode_lines(group)
            stamps = list(map(datetime.timestamp, batch.inference_times))
            buckets = {int(stamp) // self._bucket_s * self._bucket_s for stamp in stamps}
            starts |= buckets
            bad = bad or bool(batch.bad)
            fits = fits and not batch.bad and len(stamps) == len(group) and buckets <= {key}
            decoded.append((key, batch, stamps))
        if fits:
            return decoded
        return True if bad and len(starts) >= 2 else None

    def _grouped(
        self,
        batches: Iterable[tuple[int | None, DecodedBatch, list[float] | None]],
        bad: Counter[str],
        extract: Callable[[DecodedBatch, list[float] | None], Extracted] | None,
    ) -> Decoded:
        """The profiles of a chunk's groups (each a bucket's), with their bad records added
        to ``bad`` and their predictions."""
        bucket_s = self._bucket_s
        profiles: dict[int, DatasetProfile] = {}
        records = 0
        extracted = Extracted() if extract is not None else None
        for key, batch, times in batches:
            bad.update(batch.bad)
            if extract is not None and extracted is not None:  # refused records too
                extracted.add(extract(batch, times))
            if not batch.n_records:
                continue
            records += batch.n_records
            start = key
            if start is None:  # not reached: both read times with parse_inference_time
                start = int(batch.inference_times[0].timestamp()) // bucket_s * bucket_s
            into = profiles.get(start)
            if into is None:
                into = profiles[start] = DatasetProfile(self._kll_k, self._limit)
            into.update(batch)
        return profiles, records, bad, extracted
