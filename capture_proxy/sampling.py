"""Which requests are captured: ``capture.sampling_percentage`` decided per request.

With an inference id the verdict is a hash of the id (BLAKE2b, 64 bits, compared with the
percentage as a fraction of 2**64), so a retried request, another worker process or another
proxy instance samples the same id alike. Without an id the verdict is random.

The inference id comes from the client, so with a plain hash a client can pick ids that are
always (or never) sampled. With a ``key`` (``capture.sampling_key_env`` names the environment
variable holding it) the hash is keyed (BLAKE2b's MAC mode): without the secret nobody can
tell which ids are sampled; ids are sampled alike only by processes that share the secret.
Pure logic: no I/O, cheap enough for the request path (about a microsecond).
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
    key : bytes, optional
        A secret for the hash of inference ids (a longer one than 64 bytes is hashed first).

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
    >>> keyed = [Sampler(50.0, key=k).sample(f"id-{i}") for k in (b"a", b"b") for i in range(64)]
    >>> keyed[:64] != keyed[64:]  # another secret, other ids sampled
    True
    """

    __slots__ = ("_key", "_random", "_threshold", "percentage")

    def __init__(
        self, percentage: float, rng: random.Random | None = None, key: bytes | None = None
    ) -> None:
        if not 0.0 <= percentage <= 100.0:
            raise ValueError(f"sampling percentage must be within 0-100, got {percentage!r}")
        self.percentage = float(percentage)
        # An id is sampled when its 64-bit hash is below the threshold; 100 % maps past the
        # largest hash so that it is exact, 0 % to 0 so nothing is below it.
        self._threshold = _SPACE if percentage >= 100.0 else int(percentage / 100.0 * _SPACE)
        self._random = (rng if rng is not None else random.Random()).random
        self._key = (key if len(key) <= 64 else blake2b(key).digest()) if key else b""

    def sample(self, inference_id: str | None) -> bool:
        """True when the request is to be captured."""
        if self._threshold == 0:
            return False
        if self._threshold == _SPACE:
            return True
        if inference_id is None:
            return self._random() * _SPACE < self._threshold
        digest = blake2b(
            inference_id.encode("utf-8", "surrogatepass"), digest_size=8, key=self._key
        ).digest()
        return int.from_bytes(digest, "big") < self._threshold
