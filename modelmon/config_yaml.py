"""Reading a config file's YAML strictly: UTF-8 only, no duplicate keys, bounded size and depth.

``yaml.safe_load`` lets the last of two equal keys win silently, recurses without bound on deep
nesting (a ``RecursionError``) and expands aliases without limit; a config file needs none of
that. :func:`read_yaml` raises :class:`YamlProblem` with a message for the user instead; the
caller adds the file name.
"""

from __future__ import annotations

from typing import Any

import yaml

__all__ = ["MAX_CONFIG_BYTES", "MAX_DEPTH", "MAX_NODES", "YamlProblem", "read_yaml"]

MAX_CONFIG_BYTES = 1024 * 1024
MAX_DEPTH = 32  # a modelmon config is at most 6 levels deep
MAX_NODES = 100_000  # values visited, aliases counted each time they are used
_MERGE_TAG = "tag:yaml.org,2002:merge"


class YamlProblem(ValueError):
    """The file is not YAML a config can be read from; the message says why."""


class _StrictLoader(yaml.SafeLoader):
    """``SafeLoader`` that refuses a key written twice in one mapping, naming it and its lines,
    and stops at :data:`MAX_DEPTH` levels while composing (before the scanner's cost, which
    grows with the square of the depth, and Python's recursion limit are reached)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise YamlProblem(f"nested deeper than {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue  # ``<<: *defaults`` may repeat keys on purpose
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
            except TypeError:  # an unhashable key: the base class says so with its position
                break
            if first is not None:
                raise YamlProblem(
                    f"{key}: duplicate key on line {line} (first on line {first}); "
                    "write each key once"
                )
            seen[key] = line
        return super().construct_mapping(node, deep=deep)


def _scalar_text(loader: yaml.SafeLoader, node: yaml.ScalarNode) -> str:
    return str(loader.construct_scalar(node))


# A config holds no dates: ``name: 2026-02-31`` is text, not a date that fails to construct.
_StrictLoader.add_constructor("tag:yaml.org,2002:timestamp", _scalar_text)


def _decode(raw: bytes) -> str:
    if raw.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise YamlProblem("the file is UTF-16; save it as UTF-8")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise YamlProblem(
            f"not UTF-8 text (byte 0x{raw[exc.start]:02x} on line {line}); save the file as UTF-8"
        ) from None


def _check_shape(data: Any) -> None:
    """Refuse documents nested deeper than :data:`MAX_DEPTH` or bigger than :data:`MAX_NODES`."""
    stack: list[tuple[Any, int]] = [(data, 0)]
    visited = 0
    while stack:
        node, depth = stack.pop()
        visited += 1
        if visited > MAX_NODES:
            raise YamlProblem(f"more than {MAX_NODES:,} values (aliases counted as expanded)")
        if depth > MAX_DEPTH:
            raise YamlProblem(f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, dict):
            stack.extend((value, depth + 1) for value in node.values())
        elif isinstance(node, list):
            stack.extend((value, depth + 1) for value in node)


def read_yaml(raw: bytes) -> Any:
    """The document in ``raw``, or :class:`YamlProblem` saying what is wrong with it."""
    if len(raw) > MAX_CONFIG_BYTES:
        raise YamlProblem(f"larger than {MAX_CONFIG_BYTES:,} bytes; is this the config file?")
    text = _decode(raw)
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except YamlProblem:
        raise
    except RecursionError:
        raise YamlProblem(f"nested deeper than {MAX_DEPTH} levels") from None
    except yaml.YAMLError as exc:
        raise YamlProblem(f"not valid YAML: {exc}") from None
    except (ValueError, TypeError, OverflowError) as exc:  # a constructor's own error
        raise YamlProblem(f"a value YAML cannot construct: {exc}") from None
    _check_shape(data)
    return data
