"""The JSON body of an alert webhook (schema ``modelmon.alert/v1``, documented in
docs/alerts.md) and what makes two alerts identical for the cooldown. Pure: no I/O."""

from __future__ import annotations

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
                for k in ("feature_name", "constraint_check_type", "description")
                if k in v
            }
            for v in violations[:MAX_VIOLATIONS]
        ],
        "features": drifting,
        "status_url": status_url,
    }


def alert_signature(monitor: str, new: str, payload: Mapping[str, Any]) -> Hashable:
    """What makes two alerts 'identical' for the cooldown."""
    if new != "alert":
        return (monitor, new)
    checks = tuple(
        sorted(
            (str(v.get("feature_name")), str(v.get("constraint_check_type")))
            for v in payload["violations"]
        )
    )
    alerting = tuple(n for n, f in payload["features"].items() if f.get("state") == "alert")
    return (monitor, new, alerting, checks)


def redact_url(url: str) -> str:
    """Scheme and host only: webhook paths and queries often carry secrets (Slack, Teams)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
