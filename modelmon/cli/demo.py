"""``modelmon demo``: a toy model, the proxy, the analyzer and traffic that drifts, in one command.

The demo writes a work folder (a temporary one unless ``--dir``), builds a baseline from the
table shipped in the package, starts the toy model in this process and the proxy and the
analyzer as supervised children (as ``modelmon up`` does; their logs go to
``logs/modelmon.log``), then sends baseline-like traffic through the proxy until the status
turns ``ok``, then drifted traffic until it turns ``alert`` naming the drifting features. It
prints one status line every few seconds, the way a user would watch it, and at the end where
the report, the metrics and the files are. Exit 0 once the alert was seen, 1 otherwise with
what did not happen.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import signal
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from modelmon.cli.demo_model import start_model
from modelmon.cli.demo_setup import (
    DemoPorts,
    free_ports,
    run_baseline,
    write_config,
    write_quality_baseline,
)
from modelmon.cli.demo_traffic import (
    DRIFT_DESCRIPTION,
    DRIFTED_FEATURES,
    Labeller,
    RowSource,
    TrafficStats,
    baseline_csv_text,
    send_traffic,
)
from modelmon.cli.status import alerting_features, render_status, summary_line
from modelmon.cli.supervisor import ChildSpec, LogFile, Supervisor
from modelmon.cli.up import child_specs
from modelmon.config import ModelmonConfig

__all__ = ["EXPECTED_S", "run_demo"]

EXPECTED_S = 30  # what the demo takes, start to end, on a 2-core machine (README says it too)
_POLL_S = 1.0
_PRINT_EVERY_S = 3.0
_MIN_NORMAL_S = 8.0  # normal traffic shown at least this long before the drift
_REQUESTS_PER_S = 100.0  # one row each, with an X-Inference-Id
_LABEL_DELAY_S = 3.0  # labels come this long after the answer ("late, as in life")
_HOOK_WAIT_S = 5.0
_QUALITY_WAIT_S = 20.0  # after the drift alert, how long to wait for the model-quality one


@dataclass
class _Watch:
    """What the demo has seen so far."""

    document: dict[str, Any] | None = None
    ok_seen: bool = False
    alert_seen: bool = False
    ready: bool = False
    quality_alert_seen: bool = False
    drift_at: float | None = None
    failure: str = ""


def _quality_state(document: dict[str, Any]) -> str | None:
    section = (document.get("monitors") or {}).get("model_quality")
    return section.get("state") if isinstance(section, dict) else None


def quality_line(document: dict[str, Any], metric: str = "accuracy") -> str:
    """One line of the model-quality section: estimated and realized ``metric``, the state.

    >>> print(quality_line({"monitors": {"model_quality": {"state": "alert", "samples": 2400,
    ...     "metrics": {"accuracy": {"value": 0.70, "threshold": 0.763, "state": "alert"}},
    ...     "estimated": {"accuracy": {"value": 0.69, "low": 0.67, "high": 0.71}}}}}))
    ... # doctest: +NORMALIZE_WHITESPACE
    accuracy estimated 0.690 [0.670–0.710] · realized 0.700 on 2,400 labels
    (baseline 0.763) · state alert
    """
    section = (document.get("monitors") or {}).get("model_quality")
    if not isinstance(section, dict):
        return ""
    parts = []
    estimated = (section.get("estimated") or {}).get(metric) or {}
    if estimated.get("value") is not None:
        band = (
            f" [{estimated['low']:.3f}–{estimated['high']:.3f}]"
            if estimated.get("low") is not None and estimated.get("high") is not None
            else ""
        )
        parts.append(f"{metric} estimated {estimated['value']:.3f}{band}")
    realized = (section.get("metrics") or {}).get(metric) or {}
    if realized.get("value") is not None:
        threshold = realized.get("threshold")
        parts.append(
            f"realized {realized['value']:.3f} on {section.get('samples', 0):,} labels"
            + (f" (baseline {threshold:.3f})" if threshold is not None else "")
        )
    else:
        parts.append("no labels yet")
    alerting = [
        str(name)
        for name, entry in (section.get("metrics") or {}).items()
        if isinstance(entry, dict) and entry.get("state") == "alert"
    ]
    state = f"state {section.get('state')}" + (f": {', '.join(alerting)}" if alerting else "")
    return " · ".join([*parts, state])


async def _get_status(session: aiohttp.ClientSession, url: str) -> dict[str, Any] | None:
    try:
        async with session.get(url + "/monitor/status") as response:
            if response.status != 200:
                return None
            document = await response.json()
    except (aiohttp.ClientError, TimeoutError, ValueError):
        return None
    return document if isinstance(document, dict) else None


class _Demo:
    def __init__(self, root: Path, seconds: float, keep: bool) -> None:
        self.root = root
        self.keep = keep
        self.loop = asyncio.get_running_loop()
        self.deadline = self.loop.time() + seconds
        self.started = self.loop.time()
        self.watch = _Watch()
        self.stats = TrafficStats()
        self.drifted = asyncio.Event()
        self.stop_traffic = asyncio.Event()
        self.stop_children = asyncio.Event()
        self.interrupted = asyncio.Event()
        self.hook_received = asyncio.Event()
        self.logs = LogFile(root / "logs" / "modelmon.log")

    def _on_hook(self, body: dict[str, Any]) -> None:
        violations = [v for v in body.get("violations") or [] if isinstance(v, dict)]
        named = ", ".join(
            f"{v.get('feature_name') or v.get('metric_name')} ({v.get('constraint_check_type')})"
            for v in violations
        )
        self.say(
            f"webhook received: {body.get('event')} from {body.get('monitor')}, "
            f"state {body.get('previous_state')} → {body.get('state')}"
            + (f"; {named}" if named else "")
        )
        self.hook_received.set()

    def say(self, message: str) -> None:
        print(f"[{self.loop.time() - self.started:5.1f}s] {message}", flush=True)

    async def run(self) -> int:
        print(
            f"modelmon demo: working in {self.root} (about {EXPECTED_S} s; Ctrl-C stops)",
            flush=True,
        )
        try:
            # the model-quality baseline is fitted here while `modelmon baseline` runs
            baseline_wait = max(5.0, self.deadline - self.loop.time())
            (baseline, _), quality = await asyncio.gather(
                run_baseline(self.root, baseline_wait),
                asyncio.to_thread(write_quality_baseline, self.root),
            )
        except RuntimeError as exc:
            print(f"modelmon demo: FAILED: {exc}", flush=True)
            return 1
        self.say(f"baseline from 5,000 shipped rows → {baseline}/statistics.json, constraints.json")
        self.say(
            f"model-quality baseline (the toy model's labels on those rows) → {quality}/"
            "statistics.json, constraints.json"
        )
        runner, model_port = await start_model(on_hook=self._on_hook)
        try:
            proxy_port, analyzer_port = free_ports(2)
            ports = DemoPorts(model=model_port, proxy=proxy_port, analyzer=analyzer_port)
            columns = RowSource(baseline_csv_text()).columns
            config = write_config(self.root, ports, columns)
            specs = child_specs(self.root / "modelmon.yaml", "INFO")
            return await self._supervised(specs, ports, config)
        finally:
            await runner.cleanup()
            self.logs.close()

    async def _supervised(
        self, specs: list[ChildSpec], ports: DemoPorts, config: ModelmonConfig
    ) -> int:
        proxy_url = f"http://127.0.0.1:{ports.proxy}"
        self.say(
            f"toy model on http://127.0.0.1:{ports.model}/invocations "
            "(its /hook receives the alert webhooks)"
        )
        self.say(
            f"proxy on {proxy_url} (send traffic here), analyzer on 127.0.0.1:{ports.analyzer}"
        )
        self.say(f"proxy and analyzer logs: {self.logs.path}")
        supervisor = Supervisor(specs, self.logs)
        source = RowSource(baseline_csv_text(), seed=20261127)
        async with asyncio.TaskGroup() as group:
            group.create_task(supervisor.run(self.stop_children), name="demo-children")
            try:
                async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as http:
                    if await self._wait_ready(http, proxy_url):
                        self.say(
                            "traffic: baseline-like rows through the proxy "
                            f"({_REQUESTS_PER_S:g} requests/s, one row each, X-Inference-Id); "
                            f"their labels POSTed to /monitor/ground-truth {_LABEL_DELAY_S:g} s "
                            "later"
                        )
                        labeller = Labeller(
                            proxy_url + "/monitor/ground-truth", _LABEL_DELAY_S, seed=11
                        )
                        group.create_task(
                            send_traffic(
                                proxy_url + "/invocations",
                                source,
                                self.drifted,
                                self.stop_traffic,
                                self.stats,
                                _REQUESTS_PER_S,
                                labeller,
                            ),
                            name="demo-traffic",
                        )
                        await self._watch_status(http, proxy_url)
            finally:
                self.stop_traffic.set()
                self.stop_children.set()
        return self._finish(proxy_url, config, supervisor)

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.interrupted.wait(), max(0.0, seconds))

    def _over(self) -> bool:
        return (
            self.interrupted.is_set()
            or self.stop_children.is_set()
            or self.loop.time() >= self.deadline
        )

    async def _wait_ready(self, http: aiohttp.ClientSession, url: str) -> bool:
        while not self._over():
            if await _get_status(http, url) is not None:
                self.say("proxy and analyzer are up: /monitor/status answers through the proxy")
                self.watch.ready = True
                return True
            await self._pause(0.25)
        self.watch.failure = (
            "the proxy and analyzer did not answer /monitor/status through the proxy "
            "in the time given (--seconds)"
        )
        return False

    async def _watch_status(self, http: aiohttp.ClientSession, url: str) -> None:
        traffic_start = self.loop.time()
        normal_cap = max(_MIN_NORMAL_S + 2.0, 0.35 * (self.deadline - traffic_start))
        last_print = 0.0
        last_line = ""
        last_quality = ""
        alert_at = 0.0
        while not self._over():
            now = self.loop.time()
            document = await _get_status(http, url)
            line = summary_line(document) if document else "status: no answer"
            state = document.get("state") if document else None
            if document:
                self.watch.document = document
            if state in ("ok", "warning") and not self.drifted.is_set():
                self.watch.ok_seen = True
            phase = "drifted" if self.drifted.is_set() else "normal "
            sent = self.stats.rows_drifted if self.drifted.is_set() else self.stats.rows_normal
            if line != last_line or now - last_print >= _PRINT_EVERY_S:
                self.say(f"{phase} traffic, {sent:5d} rows sent │ {line}")
                last_print, last_line = now, line
            if document and self.drifted.is_set():
                quality = quality_line(document)
                if quality and (quality != last_quality or now - last_print >= _PRINT_EVERY_S):
                    self.say(f"               model quality │ {quality}")
                    last_quality = quality
                if _quality_state(document) == "alert" and not self.watch.quality_alert_seen:
                    self.watch.quality_alert_seen = True
                    self.say("MODEL-QUALITY ALERT: the model's answers got worse (see above)")
            if document and state == "alert" and self.drifted.is_set():
                names = alerting_features(document)
                if set(names) & set(DRIFTED_FEATURES) and not self.watch.alert_seen:
                    self.watch.alert_seen = True
                    alert_at = now
                    self._show_alert(document, names, url)
            if self.watch.alert_seen and not self.keep:
                waited = now - alert_at
                if self.watch.quality_alert_seen or waited >= _QUALITY_WAIT_S:
                    with contextlib.suppress(TimeoutError):  # let the webhooks show too
                        await asyncio.wait_for(self.hook_received.wait(), _HOOK_WAIT_S)
                    return
            if not self.drifted.is_set():
                normal_for = now - traffic_start
                if (self.watch.ok_seen and normal_for >= _MIN_NORMAL_S) or normal_for >= normal_cap:
                    self.drifted.set()
                    self.watch.drift_at = now
                    self.say(f"──── drift starts: {DRIFT_DESCRIPTION}")
            await self._pause(_POLL_S)

    def _show_alert(self, document: dict[str, Any], names: list[str], url: str) -> None:
        assert self.watch.drift_at is not None
        after = self.loop.time() - self.watch.drift_at
        self.say(f"ALERT {after:.0f}s after the drift started; drifting: {', '.join(names)}")
        print("\n" + render_status(document, url) + "\n", flush=True)
        if self.keep:
            self.say(f"--keep: still running; open {url}/monitor/report, Ctrl-C to stop")

    def _finish(self, url: str, config: ModelmonConfig, supervisor: Supervisor) -> int:
        watch = self.watch
        print("", flush=True)
        if watch.ready:
            self._print_addresses(url, config)
        else:
            print(f"config:   {self.root / 'modelmon.yaml'}   logs: {self.logs.path}", flush=True)
        if watch.alert_seen:
            return 0
        return self._explain_failure(supervisor)

    def _print_addresses(self, url: str, config: ModelmonConfig) -> None:
        if not self.keep:
            print("while it ran, these answered (to browse them, run `modelmon demo --keep`):")
        print(f"report:   {url}/monitor/report   (HTML: drift over time, distributions)")
        print(f"metrics:  {url}/monitor/metrics  and the proxy's {url}/monitor/proxy/metrics")
        print(f"status:   modelmon status --url {url}")
        capture = config.capture.dir / config.endpoint.name / config.endpoint.variant
        print(f"capture:  {capture}")
        print(f"reports:  {config.analyzer.reports_dir}")
        print(f"config:   {self.root / 'modelmon.yaml'}   logs: {self.logs.path}", flush=True)

    def _explain_failure(self, supervisor: Supervisor) -> int:
        watch = self.watch
        reasons = [watch.failure] if watch.failure else []
        if supervisor.crash_looped:
            reasons.append(f"the {supervisor.crash_looped} process kept crashing")
        if self.interrupted.is_set():
            reasons.append("interrupted before the alert")
        elif not reasons:
            if not watch.ok_seen:
                reasons.append("the status never turned ok with baseline-like traffic")
            if watch.drift_at is None:
                reasons.append("the drift never started")
            else:
                reasons.append(
                    "no alert naming "
                    + " or ".join(DRIFTED_FEATURES)
                    + f" within {self.loop.time() - watch.drift_at:.0f}s of drifted traffic"
                )
        if self.stats.failures:
            reasons.append(
                f"{self.stats.failures} of {self.stats.requests} requests failed "
                f"(last: {self.stats.last_failure})"
            )
        last = summary_line(watch.document) if watch.document else "no status was ever read"
        print(f"\nmodelmon demo: FAILED: {'; '.join(reasons)} (last status: {last})")
        if not self.interrupted.is_set():
            print("last log lines:\n  " + "\n  ".join(self.logs.tail), flush=True)
        return 1


async def _run(root: Path, seconds: float, keep: bool) -> int:
    demo = _Demo(root, seconds, keep)
    loop = asyncio.get_running_loop()
    signals = (signal.SIGINT, signal.SIGTERM)
    for sig in signals:
        loop.add_signal_handler(sig, demo.interrupted.set)
    try:
        return await demo.run()
    finally:
        for sig in signals:
            loop.remove_signal_handler(sig)


def run_demo(workdir: Path | None, seconds: float, keep: bool) -> int:
    """Run the demo for at most ``seconds``; 0 when the drift was seen as an alert."""
    temporary = workdir is None
    root = Path(tempfile.mkdtemp(prefix="modelmon-demo-")) if workdir is None else workdir
    root.mkdir(parents=True, exist_ok=True)
    try:
        return asyncio.run(_run(root.resolve(), seconds, keep))
    finally:
        if temporary:
            shutil.rmtree(root, ignore_errors=True)
            print(f"(removed the temporary folder {root}; keep it with --dir DIR)", flush=True)
