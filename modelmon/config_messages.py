"""Pydantic's validation errors as one line per key, for people: the key, what is allowed, a hint.

An unknown key gets the closest known key of its own section (``did you mean
'sampling_percentage'?``, :func:`difflib.get_close_matches`) and that section's keys.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

__all__ = ["HELP", "describe_error", "model_at"]

HELP = (
    "`modelmon config example` prints an annotated example; "
    "`modelmon config check --config FILE` checks a file"
)
_MAX_SHOWN = 80


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (through Optional, list, dict, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    if typing.get_origin(annotation) is not None or isinstance(annotation, types.UnionType):
        for arg in typing.get_args(annotation):
            found.extend(_models_in(arg))
    return found


def model_at(root: type[BaseModel], loc: Sequence[int | str]) -> type[BaseModel] | None:
    """The model class found at ``loc`` below ``root`` (list indices and dict keys skipped)."""
    model: type[BaseModel] | None = root
    for part in loc:
        if model is None:
            return None
        field = model.model_fields.get(str(part)) if isinstance(part, str) else None
        if field is None:  # an index or a dict key: stay on the element's model
            continue
        candidates = _models_in(field.annotation)
        model = candidates[0] if candidates else None
    return model


def _keys(model: type[BaseModel]) -> list[str]:
    return [name for name in model.model_fields if name != "source"]


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= _MAX_SHOWN else text[: _MAX_SHOWN - 1] + "…"


_BOUNDS = (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<"))


def _number(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else str(value)


def _allowed(root: type[BaseModel], loc: tuple[Any, ...]) -> str:
    """``allowed: 0.01 ≤ value ≤ 3600`` for a bounded number field; else empty."""
    parent = model_at(root, loc[:-1])
    field = parent.model_fields.get(str(loc[-1])) if parent is not None and loc else None
    if field is None:
        return ""
    bounds = [
        f"{sign} {_number(getattr(item, name))}"
        for item in field.metadata
        for name, sign in _BOUNDS
        if isinstance(getattr(item, name, None), int | float)
    ]
    return f"; allowed: value {' and '.join(bounds)}" if bounds else ""


def describe_error(root: type[BaseModel], error: Any) -> str:
    """One line: ``key: what is wrong (got …)``, with a hint for an unknown key."""
    loc = tuple(error["loc"])
    key = ".".join(str(part) for part in loc) or "(top level)"
    kind = error["type"]
    if kind == "extra_forbidden":
        parent = model_at(root, loc[:-1])
        if parent is None:
            return f"{key}: unknown key"
        known = _keys(parent)
        close = difflib.get_close_matches(str(loc[-1]), known, n=1)
        hint = f" — did you mean {close[0]!r}?" if close else ""
        where = ".".join(str(part) for part in loc[:-1])
        section = f"keys of {where}" if where else "sections"
        return f"{key}: unknown key{hint} ({section}: {', '.join(known)})"
    if kind == "missing":
        return f"{key}: required key is missing"
    message = str(error["msg"]).removeprefix("Value error, ")
    if kind in ("model_type", "dict_type") and (model := model_at(root, loc)) is not None:
        return f"{key}: {message} with the keys {', '.join(_keys(model))}"
    if "input" in error and kind not in ("model_type", "dict_type"):
        shown = _shown(error["input"])
        got = "" if shown in message else f" (got {shown}{_allowed(root, loc)})"
        return f"{key}: {message}{got}"
    return f"{key}: {message}"
