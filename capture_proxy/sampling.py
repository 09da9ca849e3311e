"""Which requests are captured: ``capture.sampling_percentage`` decided per request.

With an inference id the verdict is a hash of the id (BLAKE2b, 64 bits, compared with the
percentage as a fraction of 2**64), so a retried request, another worker process or another
proxy instance samples the same id alike. Without an id the verdict is random. Pure logic: no
I/O, cheap enough for the request path (about a microsecond).
"""

from __future__ import annotations

import random
from hashlib import blake2b

__all__ = ["Sampler"]

_SPACE = 1 << 64


class Sampler:
    """Decide whether one request is captured.

    Parameters
    ----------
    percentage : float
        Share of requests captured, 0 to 100. 0 and 100 are exact: never and always.
    rng : random.Random, optional
        Source for requests without an inference id (default: a fresh ``random.Random()``).

    Examples
    --------
    >>> import random
    >>> sampler = Sampler(20.0, rng=random.Random(7))
    >>> sampler.sample("order-1234") == Sampler(20.0).sample("order-1234")
    True
    >>> sum(sampler.sample(None) for _ in range(10_000))
    2016
    >>> Sampler(0.0).sample("x"), Sampler(100.0).sample("x")
    (False, True)
    """

    __slots__ = ("_random", "_threshold", "percentage")

    def __init__(self, percentage: float, rng: random.Random | None = None) -> None:
        if not 0.0 <= percentage <= 100.0:
            raise ValueError(f"sampling percentage must be within 0-100, got {percentage!r}")
        self.percentage = float(percentage)
        # An id is sampled when its 64-bit hash is below the threshold; 100 % maps past the
        # largest hash so that it is exact, 0 % to 0 so nothing is below it.
        self._threshold = _SPACE if percentage >= 100.0 else int(percentage / 100.0 * _SPACE)
        self._random = (rng if rng is not None else random.Random()).random

    def sample(self, inference_id: str | None) -> bool:
        """True when the request is to be captured."""
        if self._threshold == 0:
            return False
        if self._threshold == _SPACE:
            return True
        if inference_id is None:
            return self._random() * _SPACE < self._threshold
        digest = blake2b(inference_id.encode("utf-8", "surrogatepass"), digest_size=8).digest()
        return int.from_bytes(digest, "big") < self._threshold
