"""Encoding on the event loop: short runs that let requests in between, and that keep pace."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from capture_proxy import sink as sink_module
from capture_proxy.exchange import Exchange
from capture_proxy.write_batch import Lines

from .sink_support import HOUR_START, exchange, make_sink


def test_a_run_stops_at_its_budget_but_keeps_pace_with_what_arrived(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sink_module, "_LOOP_BUDGET_S", 0.0)  # every run's budget is spent at once
    sink, _ = make_sink(tmp_path)
    part = [exchange(HOUR_START + i) for i in range(10)]
    lines = Lines()
    assert sink._encode_run(part, 0, lines, 0) == 1  # the budget alone: one record
    assert sink._encode_run(part, 1, lines, 5) == 6  # five submitted meanwhile: five at least
    assert sink._encode_run(part, 6, lines, 50) == 10  # never past the slice
    assert lines.count == 10


async def test_encoding_on_the_loop_yields_to_requests_between_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sink_module, "_LOOP_BUDGET_S", 0.0)
    sink, _ = make_sink(tmp_path)
    part = [exchange(HOUR_START + i) for i in range(6)]
    loop = asyncio.get_running_loop()
    turns = 0
    done = False

    def other_work() -> None:  # what a request's callbacks would be
        nonlocal turns
        turns += 1
        if not done:
            loop.call_soon(other_work)

    loop.call_soon(other_work)
    lines = await sink._encoded(part)
    done = True
    assert lines.count == 6
    assert turns >= 5  # one turn of other work between each two runs of one record


async def test_records_submitted_while_encoding_make_the_next_run_longer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sink_module, "_LOOP_BUDGET_S", 0.0)
    sink, _ = make_sink(tmp_path)
    part = [exchange(HOUR_START + i) for i in range(9)]
    loop = asyncio.get_running_loop()
    runs: list[int] = []
    encode_run = sink._encode_run

    def counted(part: list[Exchange], start: int, lines: Lines, at_least: int) -> int:
        end = encode_run(part, start, lines, at_least)
        runs.append(end - start)
        return end

    monkeypatch.setattr(sink, "_encode_run", counted)

    def requests_arrive() -> None:  # two captured requests per turn of the loop
        for _ in range(2):
            assert sink.submit(exchange(HOUR_START + 100))
        if len(runs) < 9:
            loop.call_soon(requests_arrive)

    loop.call_soon(requests_arrive)
    lines = await sink._encoded(part)
    assert lines.count == 9
    assert runs[0] == 1 and all(n >= 2 for n in runs[1:-1]), runs
