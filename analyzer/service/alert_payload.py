"""The JSON body of an alert webhook (schema ``modelmon.alert/v1``, documented in
docs/alerts.md) and what makes two alerts identical for the cooldown. Pure: no I/O."""

from __future__ import annotations

import re
from collections.abc import Hashable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "MAX_VIOLATIONS",
    "PAYLOAD_SCHEMA",
    "alert_signature",
    "build_payload",
    "iso_z",
    "redact_url",
]

PAYLOAD_SCHEMA = "modelmon.alert/v1"
MAX_VIOLATIONS = 50
_SHOWN_FEATURE_STATES = frozenset({"alert", "warning"})


def iso_z(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _monitor_doc(monitor: str, status: Mapping[str, Any]) -> Mapping[str, Any]:
    """Accept either the whole status document or just the monitor's part of it."""
    monitors = status.get("monitors")
    if isinstance(monitors, Mapping) and isinstance(monitors.get(monitor), Mapping):
        doc: Mapping[str, Any] = monitors[monitor]
        return doc
    return status


def build_payload(
    monitor: str,
    old: str | None,
    new: str,
    status: Mapping[str, Any],
    *,
    time_iso: str,
    delivery_id: str,
    endpoint: str | None = None,
    status_url: str | None = None,
) -> dict[str, Any]:
    """The JSON body of one alert (schema ``modelmon.alert/v1``, see docs/alerts.md)."""
    doc = _monitor_doc(monitor, status)
    violations = [v for v in doc.get("violations") or [] if isinstance(v, Mapping)]
    features = doc.get("features") or {}
    drifting = {
        str(name): {k: f.get(k) for k in ("state", "distance", "threshold")}
        for name, f in sorted(features.items())
        if isinstance(f, Mapping) and f.get("state") in _SHOWN_FEATURE_STATES
    }
    metrics = doc.get("metrics") or {}
    failing = {
        str(name): {k: m.get(k) for k in ("state", "value", "threshold")}
        for name, m in sorted(metrics.items())
        if isinstance(m, Mapping) and m.get("state") in _SHOWN_FEATURE_STATES
    }
    overall = status.get("state") if doc is not status else None
    return {
        "schema": PAYLOAD_SCHEMA,
        "id": delivery_id,
        "event": "alert" if new == "alert" else "resolved",
        "monitor": monitor,
        "endpoint": endpoint,
        "state": new,
        "previous_state": old,
        "overall_state": overall,
        "time": time_iso,
        "window": doc.get("window"),
        "samples": doc.get("samples"),
        "violation_count": len(violations),
        "violations": [
            {
                k: v.get(k)
                for k in ("feature_name", "metric_name", "constraint_check_type", "description")
                if k in v
            }
            for v in violations[:MAX_VIOLATIONS]
        ],
        "features": drifting,
        "metrics": failing,
        "status_url": status_url,
    }


def alert_signature(monitor: str, new: str, payload: Mapping[str, Any]) -> Hashable:
    """What makes two alerts 'identical' for the cooldown."""
    if new != "alert":
        return (monitor, new)
    checks = tuple(
        sorted(
            (
                str(v.get("feature_name") or v.get("metric_name")),
                str(v.get("constraint_check_type")),
            )
            for v in payload["violations"]
        )
    )
    alerting = tuple(n for n, f in payload["features"].items() if f.get("state") == "alert")
    return (monitor, new, alerting, checks)


# A path segment shown as it is: one lower-case word (``hooks``, ``services``), a CamelCase
# word (``IncomingWebhook``) or a version (``v2``). Anything else (ids, tokens, words joined by
# ``-`` or ``_``, Slack's T000/B000/XXXX) may be a secret and is withheld.
_PLAIN_SEGMENT = re.compile(r"[a-z]{1,16}|(?:[A-Z][a-z]+){1,4}|v[0-9]{1,2}")


def redact_url(url: str) -> str:
    """The URL as logs and status show it: scheme, host, port and the path's plain words.

    Webhook URLs carry their secret in the path (Slack, Teams, Discord) or the query, so
    user and password are dropped, the query becomes ``?***`` and every path segment that is
    not a plain word or a version becomes ``***``.

    >>> redact_url("https://u:pw@hooks.slack.com/services/T0AB12/B0CD34/xYz9Qw?x=1")
    'https://hooks.slack.com/services/***/***/***?***'
    >>> redact_url("https://events.pagerduty.com/v2/enqueue")
    'https://events.pagerduty.com/v2/enqueue'
    """
    parts = urlsplit(url)
    segments = [
        segment if not segment or _PLAIN_SEGMENT.fullmatch(segment) else "***"
        for segment in parts.path.split("/")
    ]
    query = "?***" if parts.query else ""
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{'/'.join(segments)}{query}"
