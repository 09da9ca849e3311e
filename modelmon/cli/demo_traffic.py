"""Traffic for ``modelmon demo``: rows like the shipped baseline, then rows that drift.

Normal rows are drawn (seeded, with replacement) from the baseline table shipped in
``modelmon/cli/demo_data/baseline.csv``, so they follow the baseline's distribution exactly.
Drifted rows are the same draws with ``income`` ×1.5 and the ``state`` mix moved (TX to 35%,
CA to 6%): the covariate shift of the reference ``current_covariate.csv``, made a little
stronger so that a 30-second window turns to ``alert`` within seconds of the change; and
``utilization`` +0.3, which moves the toy model's scores towards 0.5, where it is less sure:
its accuracy falls, first in the label-free estimate, then in the realized metric.

Each request is one row with an ``X-Inference-Id``; the true label of each row is drawn
(seeded) from the toy model's own probability, so the model is calibrated in both phases and
only its inputs move. :class:`Labeller` posts the labels late (``delay_s`` after the
answer), in SageMaker's ground-truth format, to ``POST /monitor/ground-truth``.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections import deque
from dataclasses import dataclass, field
from importlib import resources

import aiohttp
import numpy as np

from modelmon.cli.demo_model import score_row

__all__ = [
    "DRIFTED_FEATURES",
    "DRIFT_DESCRIPTION",
    "Labeller",
    "RowSource",
    "TrafficStats",
    "baseline_csv_text",
    "send_traffic",
]

INCOME_FACTOR = 1.5
UTILIZATION_SHIFT = 0.3
DRIFTED_STATE_SHARE = {"TX": 0.35, "CA": 0.06}
DRIFTED_FEATURES = ("income", "state", "utilization")
DRIFT_DESCRIPTION = "income ×1.5, state mix moved (TX 15% → 35%, CA 22% → 6%), utilization +0.3"


def baseline_csv_text() -> str:
    """The shipped baseline table (with its header line) as text."""
    return resources.files("modelmon.cli").joinpath("demo_data/baseline.csv").read_text("utf-8")


class RowSource:
    """Seeded rows drawn from the baseline table, optionally drifted.

    Examples
    --------
    >>> source = RowSource(baseline_csv_text(), seed=7)
    >>> source.columns
    ['age', 'income', 'credit_score', 'utilization', 'state', 'plan']
    >>> normal, drifted = source.rows(2000, False), source.rows(2000, True)
    >>> mean = lambda rows: sum(float(r.split(",")[1]) for r in rows) / len(rows)
    >>> 1.4 < mean(drifted) / mean(normal) < 1.6
    True
    """

    def __init__(self, table: str, seed: int = 0) -> None:
        reader = csv.reader(io.StringIO(table))
        self.columns = next(reader)
        self._rows = [row for row in reader if row]
        self._income = self.columns.index("income")
        self._state = self.columns.index("state")
        self._utilization = self.columns.index("utilization")
        self._rng = np.random.default_rng(seed)
        states = sorted({row[self._state] for row in self._rows})
        counts = np.array([sum(row[self._state] == s for row in self._rows) for s in states])
        share = counts / counts.sum()
        rest = 1.0 - sum(DRIFTED_STATE_SHARE.values())
        others = [i for i, s in enumerate(states) if s not in DRIFTED_STATE_SHARE]
        moved = np.array([DRIFTED_STATE_SHARE.get(s, 0.0) for s in states])
        moved[others] = share[others] / share[others].sum() * rest
        self._states = states
        self._drifted_share = moved

    def rows(self, count: int, drifted: bool) -> list[str]:
        """``count`` headerless CSV lines; drifted ones carry the covariate shift."""
        picks = self._rng.integers(0, len(self._rows), size=count)
        out = []
        new_states = (
            self._rng.choice(len(self._states), size=count, p=self._drifted_share)
            if drifted
            else None
        )
        for i, pick in enumerate(picks):
            row = list(self._rows[pick])
            if new_states is not None:
                row[self._income] = f"{float(row[self._income]) * INCOME_FACTOR:.2f}"
                row[self._state] = self._states[new_states[i]]
                utilization = float(row[self._utilization]) + UTILIZATION_SHIFT
                row[self._utilization] = f"{utilization:.4f}"
            out.append(",".join(row))
        return out


@dataclass
class TrafficStats:
    """What the sender did: rows and requests by phase, failures with the last reason."""

    rows_normal: int = 0
    rows_drifted: int = 0
    requests: int = 0
    failures: int = 0
    last_failure: str = ""
    statuses: dict[int, int] = field(default_factory=dict)


class Labeller:
    """The true labels of answered requests, posted late in SageMaker's ground-truth format."""

    def __init__(self, url: str, delay_s: float, seed: int = 0) -> None:
        self.url = url
        self.delay_s = delay_s
        self._rng = np.random.default_rng(seed)
        self._due: deque[tuple[float, str, int]] = deque()
        self.posted = 0
        self.failures = 0

    def answered(self, inference_id: str, row: str, now: float) -> None:
        """A row was answered: its label (drawn from the model's own probability) is due later."""
        label = int(self._rng.random() < score_row(row.split(",")))
        self._due.append((now + self.delay_s, inference_id, label))

    async def post_due(self, session: aiohttp.ClientSession, now: float) -> None:
        """POST every label whose time has come (one body)."""
        lines = []
        while self._due and self._due[0][0] <= now:
            _, inference_id, label = self._due.popleft()
            record = {
                "groundTruthData": {"data": str(label), "encoding": "CSV"},
                "eventMetadata": {"eventId": inference_id},
                "eventVersion": "0",
            }
            lines.append(json.dumps(record))
        if not lines:
            return
        try:
            async with session.post(self.url, data="\n".join(lines) + "\n") as response:
                await response.read()
                if response.status == 200:
                    self.posted += len(lines)
                else:
                    self.failures += 1
        except (aiohttp.ClientError, TimeoutError):
            self.failures += 1


async def send_traffic(
    url: str,
    source: RowSource,
    drifted: asyncio.Event,
    stop: asyncio.Event,
    stats: TrafficStats,
    requests_per_s: float = 100.0,
    labeller: Labeller | None = None,
) -> None:
    """POST one ``text/csv`` row per request to ``url`` at a steady pace until ``stop`` is set.

    Rows are normal until ``drifted`` is set. Each request carries ``X-Inference-Id:
    demo-{n}``; an answered one is handed to ``labeller``, whose due labels are posted as
    the traffic goes. Failures are counted, never raised: the demo keeps going and reports
    them.
    """
    interval = 1.0 / requests_per_s
    loop = asyncio.get_running_loop()
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        next_at = loop.time()
        while not stop.is_set():
            is_drifted = drifted.is_set()
            row = source.rows(1, is_drifted)[0]
            inference_id = f"demo-{stats.requests}"
            headers = {"Content-Type": "text/csv", "X-Inference-Id": inference_id}
            try:
                async with session.post(url, data=row + "\n", headers=headers) as response:
                    await response.read()
                    stats.statuses[response.status] = stats.statuses.get(response.status, 0) + 1
                    if response.status != 200:
                        stats.failures += 1
                        stats.last_failure = f"HTTP {response.status}"
                    elif labeller is not None:
                        labeller.answered(inference_id, row, loop.time())
            except (aiohttp.ClientError, TimeoutError) as exc:
                stats.failures += 1
                stats.last_failure = f"{type(exc).__name__}: {exc}"
            else:
                if is_drifted:
                    stats.rows_drifted += 1
                else:
                    stats.rows_normal += 1
            stats.requests += 1
            if labeller is not None and stats.requests % 50 == 0:
                await labeller.post_due(session, loop.time())
            next_at = max(next_at + interval, loop.time())
            try:
                await asyncio.wait_for(stop.wait(), max(0.0, next_at - loop.time()))
            except TimeoutError:
                pass
