"""Failed sign-ins are throttled: token buckets per client address and one for everyone.

Each failed ``POST /monitor/login`` takes a token from the bucket of its client address and from
the global bucket. A bucket holds at most ``burst`` tokens and gains ``per_s`` of them a
second. While either bucket of a request is empty, the request is refused (429 with
``Retry-After``) before its token is even compared, so guessing gets no answer; a successful
sign-in takes nothing. Buckets of at most ``max_addresses`` addresses are kept, the least
recently seen going first (a full bucket is the same as none), so memory is bounded whatever
the number of addresses; the global bucket bounds guesses from many addresses.

Behind the capture proxy every browser has the proxy's address, so there the per-address bucket
is shared too (the bearer token of the API is never throttled).

Examples
--------
>>> throttle = LoginThrottle(burst=2, per_s=0.5)
>>> throttle.wait("a", 0.0)
0.0
>>> throttle.failed("a", 0.0); throttle.failed("a", 0.0)
>>> throttle.wait("a", 0.0), throttle.wait("b", 0.0), throttle.wait("a", 2.0)
(2.0, 0.0, 0.0)
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

from prometheus_client.core import CounterMetricFamily
from prometheus_client.registry import Collector

__all__ = [
    "ADDRESSES",
    "BURST",
    "GLOBAL_BURST",
    "GLOBAL_PER_S",
    "PER_S",
    "LoginThrottle",
    "ThrottleCollector",
]

BURST = 10  # failed sign-ins an address may make at once
PER_S = 1 / 6  # then one every 6 s (10 a minute)
GLOBAL_BURST = 100  # failed sign-ins from all addresses at once
GLOBAL_PER_S = 1.0  # then one a second
ADDRESSES = 10_000  # addresses whose buckets are kept


@dataclass
class _Bucket:
    tokens: float
    at: float

    def refill(self, now: float, burst: float, per_s: float) -> None:
        self.tokens = min(burst, self.tokens + max(0.0, now - self.at) * per_s)
        self.at = now

    def wait(self, per_s: float) -> float:
        """Seconds until a token is there (0: there is one)."""
        return 0.0 if self.tokens >= 1 - 1e-9 else (1 - self.tokens) / per_s  # 1e-9: rounding


class LoginThrottle:
    """Token buckets of failed sign-ins per address (LRU-bounded) and for all addresses."""

    def __init__(
        self,
        *,
        burst: int = BURST,
        per_s: float = PER_S,
        global_burst: int = GLOBAL_BURST,
        global_per_s: float = GLOBAL_PER_S,
        max_addresses: int = ADDRESSES,
    ) -> None:
        self.burst, self.per_s = float(burst), per_s
        self.global_burst, self.global_per_s = float(global_burst), global_per_s
        self.max_addresses = max_addresses
        self._addresses: OrderedDict[str, _Bucket] = OrderedDict()
        self._global: _Bucket | None = None
        self.throttled = 0  # requests refused

    def __len__(self) -> int:
        """Addresses whose buckets are kept."""
        return len(self._addresses)

    def _buckets(self, address: str, now: float) -> tuple[_Bucket, _Bucket]:
        if self._global is None:
            self._global = _Bucket(self.global_burst, now)
        self._global.refill(now, self.global_burst, self.global_per_s)
        bucket = self._addresses.get(address)
        if bucket is None:
            bucket = self._addresses[address] = _Bucket(self.burst, now)
            if len(self._addresses) > self.max_addresses:
                self._addresses.popitem(last=False)
        else:
            self._addresses.move_to_end(address)
            bucket.refill(now, self.burst, self.per_s)
        return bucket, self._global

    def wait(self, address: str, now: float) -> float:
        """Seconds ``address`` must wait before its next try (0: it may try now); a refusal is
        counted."""
        mine, everyone = self._buckets(address, now)
        seconds = max(mine.wait(self.per_s), everyone.wait(self.global_per_s))
        if seconds > 0:
            self.throttled += 1
        return seconds

    def failed(self, address: str, now: float) -> None:
        """A failed sign-in from ``address``: one token less in its bucket and the global one."""
        mine, everyone = self._buckets(address, now)
        mine.tokens -= 1
        everyone.tokens -= 1


class ThrottleCollector(Collector):
    """``modelmon_login_throttled_total``: sign-ins refused with 429."""

    def __init__(self, throttle: LoginThrottle) -> None:
        self.throttle = throttle

    def collect(self) -> Iterator[CounterMetricFamily]:
        yield CounterMetricFamily(
            "modelmon_login_throttled",
            "Sign-ins refused (429) after too many failed ones, per address or from all",
            value=float(self.throttle.throttled),
        )
