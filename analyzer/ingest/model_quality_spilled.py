"""A window joined on disk (:class:`~.model_quality_spill.Spilled`), evaluated in blocks.

The passes of the spill path (docs/model-quality.md, "The batch join"): the pairs in
prediction order, a block at a time, into the metrics' accumulators
(:mod:`analyzer.monitors.model_quality.streaming`: each pair's subsamples drawn as the
in-memory path draws them), the binary window's labelled scores written beside them and
sorted on disk (:func:`~.model_quality_spill.sorted_segments`) for the AUC and the curves,
and every prediction's score sorted likewise for the estimate's ranks; for ``modelmon
baseline``, a bounded sample of the labelled pairs for the calibrator
(:func:`calibration_pairs`). What is held: a block of at most ``batch_memory_rows`` rows at
a time (and the sample: at most half as many pairs).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from analyzer.ingest.model_quality_spill import (
    RANKED_TYPE,
    SCORE_TYPE,
    Segment,
    Spilled,
    append,
    read,
    sorted_segments,
)
from analyzer.monitors.model_quality.calibration_sample import SEED, PairSample
from analyzer.monitors.model_quality.estimate import (
    NORMAL_ABOVE,
    Calibrator,
    Estimate,
    SumsWalk,
    estimate_binary,
    estimate_from_sums,
)
from analyzer.monitors.model_quality.evaluate import Baseline, WindowResult, judge
from analyzer.monitors.model_quality.metrics import MAX_CURVE_POINTS, SUBSAMPLES
from analyzer.monitors.model_quality.ranking import AucWalk, CurveWalk, run_count, tie_blocks
from analyzer.monitors.model_quality.streaming import (
    BinaryStream,
    MulticlassStream,
    RegressionStream,
    SubsampleFlags,
    curves_of,
)
from modelmon.config import ModelQualityConfig

__all__ = ["calibration_pairs", "estimate_spilled", "evaluate_spilled"]


def _blocks(records: Any, by_difference: bool) -> Iterator[Any]:
    """A sorted segment's records in blocks cut between unequal keys."""
    keys = records["key"]
    for lo, hi in tie_blocks(keys.size, lambda a, b: keys[a:b], by_difference=by_difference):
        yield records[lo:hi]


def _walk(segments: Sequence[Segment], budget: int, walks: Sequence[Any]) -> int:
    """Feed the walks (the window's, then each subsample's) the labelled scores in
    descending order; returns how many runs of equal scores the window has."""
    runs = 0
    for segment in segments:
        if segment.constant:
            rows, hits = np.zeros(SUBSAMPLES + 1, np.int64), np.zeros(SUBSAMPLES + 1, np.int64)
            for chunk in segment.chunks(budget):
                hit = chunk["hit"].astype(bool)
                rows[0] += hit.size
                hits[0] += int(np.count_nonzero(hit))
                for j in range(SUBSAMPLES):
                    kept = (chunk["flags"] & np.uint8(1 << j)) != 0
                    rows[j + 1] += int(np.count_nonzero(kept))
                    hits[j + 1] += int(np.count_nonzero(hit & kept))
            for walk, r, h in zip(walks, rows.tolist(), hits.tolist(), strict=False):
                walk.run(r, h)
            runs += 1
            continue
        for block in _blocks(segment.read(), by_difference=True):
            hit, score = block["hit"], block["key"]  # −score: the same runs, descending
            walks[0].block(hit, score)
            runs += run_count(score)
            for j, walk in enumerate(walks[1:]):
                kept = (block["flags"] & np.uint8(1 << j)) != 0
                if np.any(kept):
                    walk.block(hit[kept], score[kept])
    return runs


def _binary(spilled: Spilled, has_scores: bool, seed: int) -> tuple[BinaryStream, dict[str, Any]]:
    n = spilled.counts.matched
    stream = BinaryStream()
    flags_of = SubsampleFlags(n, seed)
    ranked = spilled.spill.file("ranked") if has_scores else None
    for block in spilled.pair_blocks():
        flags = flags_of.next(block.size)
        stream.add(block["label"], block["prediction"], flags)
        if ranked is not None:
            records = np.empty(block.size, RANKED_TYPE)
            records["key"] = np.negative(block["probability"])
            records["hit"] = block["label"]
            records["flags"] = flags if flags is not None else 0
            append(ranked, records)
    auc: list[float] | None = None
    curves = None
    if ranked is not None:
        auc = [float("nan")] * (SUBSAMPLES + 1)
        if n:
            segments = sorted_segments(spilled.spill, ranked, RANKED_TYPE, n)
            walks = [AucWalk() for _ in range(SUBSAMPLES + 1)]
            runs = _walk(segments, spilled.spill.range_rows, walks)
            auc = [walk.value() for walk in walks]
            curve = CurveWalk(runs, MAX_CURVE_POINTS - 1)
            _walk(segments, spilled.spill.range_rows, [curve])
            curves = curves_of(curve)
    return stream, stream.metrics(auc, curves)


def evaluate_spilled(
    mq: ModelQualityConfig,
    spilled: Spilled,
    constraints: Mapping[str, tuple[float, str]],
    baseline: Baseline | None,
    *,
    false_alarm_rate: float,
    classes: Sequence[str] | None,
    seed: int = 0,
) -> WindowResult:
    """``evaluate_window`` of the joined pairs on disk: the same metrics (AUC, curves,
    counts to the bit; regression's label spread to ~1e-15) and the same verdict."""
    n = spilled.counts.matched
    problem = mq.problem_type
    stream: Any
    if problem == "BinaryClassification":
        stream, metrics = _binary(spilled, mq.probability_attribute is not None, seed)
    elif problem == "MulticlassClassification":
        stream = MulticlassStream(classes or [])
        flags_of = SubsampleFlags(n, seed)
        for block in spilled.pair_blocks():
            stream.add(block["label"], block["prediction"], flags_of.next(block.size))
        metrics = stream.metrics()
    else:
        stream = RegressionStream(mq.r2_convention)
        for second in (False, True):  # the labels' mean, then their spread around it
            flags_of = SubsampleFlags(n, seed)
            for block in spilled.pair_blocks():
                flags = flags_of.next(block.size)
                add = stream.second if second else stream.add
                add(block["label"], block["prediction"], flags)
        metrics = stream.metrics()
    return judge(
        problem,
        n,
        metrics,
        constraints,
        baseline,
        false_alarm_rate=false_alarm_rate,
        min_labels=mq.min_labels,
        seed=seed,
        positives=lambda: int(stream.positives),
        regression_errors=lambda values: stream.standard_errors(values),
    )


def estimate_spilled(spilled: Spilled, calibrator: Calibrator | None) -> dict[str, Estimate] | None:
    """The label-free estimate over every prediction of the window, its scores sorted on
    disk for their ranks (the sums in blocks: ~1e-15 relative from the in-memory path's)."""
    rows = spilled.predictions
    if calibrator is None or spilled.scores is None or rows == 0:
        return None
    if rows <= NORMAL_ABOVE:  # its Bernoulli draws hold the rows: a fixed number of them
        records = read(spilled.scores, SCORE_TYPE, rows)
        return estimate_binary(np.ascontiguousarray(records["key"]), records["value"], calibrator)
    sums = SumsWalk(calibrator)
    before = 0
    for segment in sorted_segments(spilled.spill, spilled.scores, SCORE_TYPE, rows):
        if segment.constant:
            predicted = 0
            score = 0.0
            for chunk in segment.chunks(spilled.spill.range_rows):
                predicted += int(np.count_nonzero(chunk["value"]))
                score = float(chunk["key"][0])
            sums.run(score, segment.rows, predicted, before + (segment.rows + 1) / 2.0)
            before += segment.rows
            continue
        for block in _blocks(segment.read(), by_difference=False):
            ordered = block["key"]
            starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
            ends = np.r_[starts[1:], ordered.size]
            mean_rank = (before + starts + before + ends + 1) / 2.0
            ranks = np.repeat(mean_rank, ends - starts)
            sums.block(np.ascontiguousarray(ordered), block["value"], ranks)
            before += ordered.size
    return estimate_from_sums(sums, calibrator)


def calibration_pairs(
    spilled: Spilled, size: int, seed: int = SEED
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]:
    """The labelled scores and labels to fit the calibrator on: a uniform sample of at most
    ``size`` of the joined pairs (:class:`~.calibration_sample.PairSample`), in prediction
    order; all of them, as the in-memory path has them, when there are at most ``size``."""
    sample = PairSample(size, seed)
    for block in spilled.pair_blocks():
        sample.add(block["probability"], block["label"])
    return sample.pairs()
