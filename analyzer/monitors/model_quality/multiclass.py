"""Multiclass metrics from class codes: no Python object a row.

Pure numpy. The batch readers keep a multiclass label or prediction as a 2-byte code into the
run's class names (``Encoder.class_names``); :func:`multiclass_metrics_of_codes` gives what
``with_standard_deviation(multiclass_metrics, [names, names])`` gives on the same rows as
strings, to the bit (the same confusion matrices go through the same
:func:`~.metrics.multiclass_from_matrix`), without the two lists of a row it took to get there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from analyzer.monitors.model_quality.metrics import (
    multiclass_from_matrix,
    with_standard_deviation,
)

__all__ = ["multiclass_metrics_of_codes"]


def _metrics(
    truth: Any,
    guess: Any,
    names: Sequence[str],
    mask: npt.NDArray[np.bool_] | None,
    scalars_only: bool = False,
) -> dict[str, Any]:
    """``multiclass_metrics`` of the rows ``mask`` keeps (all without it): the classes seen
    in them, sorted as strings, and their confusion matrix."""
    if mask is not None:
        truth, guess = truth[mask], guess[mask]
    seen = np.zeros(len(names), dtype=np.bool_)
    seen[truth] = True
    seen[guess] = True
    present = np.flatnonzero(seen).tolist()
    classes = sorted(names[code] for code in present)
    position = {name: i for i, name in enumerate(classes)}
    rank = np.zeros(len(names), dtype=np.int32)  # k² < 2³¹: k ≤ MAX_CLASSES
    rank[present] = [position[names[code]] for code in present]
    k = len(classes)
    cells = rank[truth] * np.int32(k) + rank[guess]
    matrix = np.bincount(cells, minlength=k * k).reshape(k, k)
    return multiclass_from_matrix(matrix, classes, scalars_only=scalars_only)


def _codes(values: Any) -> Any:
    """Integer codes as they are (2 bytes a row from the readers); others (a table's float
    codes) as int32."""
    array = np.asarray(values)
    return array if array.dtype.kind in "iu" else array.astype(np.int32)


def multiclass_metrics_of_codes(
    truth: Any, guess: Any, names: Sequence[str], *, seed: int = 0
) -> dict[str, Any]:
    """SageMaker's multiclass metrics with their standard deviations from codes into
    ``names``: ``with_standard_deviation(multiclass_metrics, [names[truth], names[guess]])``.

    Examples
    --------
    >>> m = multiclass_metrics_of_codes(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]),
    ...                                 ["b", "a", "c"])
    >>> m["accuracy"]["value"], list(m["confusion_matrix"])
    (0.75, ['a', 'b', 'c'])
    """
    truth, guess = _codes(truth), _codes(guess)
    return with_standard_deviation(
        lambda *_: _metrics(truth, guess, names, None),
        [truth],
        seed=seed,
        scalars=lambda mask: _metrics(truth, guess, names, mask, scalars_only=True),
    )
