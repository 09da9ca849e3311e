"""The dependency arrows and the I/O rule of DESIGN.md, checked on the source by AST.

Every module of ``analyzer``, ``capture_proxy`` and ``modelmon`` is parsed; what it imports
and calls is sorted into four kinds of I/O (``IO_IMPORTS``, ``IO_CALLS``, SQL text, the
builtin ``open``), and ``ALLOWED`` says which kinds each package may use. SQL is only in
``analyzer/store/``; the web handlers reach it through ``store.aread(fn)`` with ``fn`` from
the store. The pure packages (monitors, decoding) are listed module by module in ``PURE``, so
that a new module there must be declared pure here or placed elsewhere. ``KNOWN_DEBTS`` are
today's breaches, listed so that the test still fails on a new one and on a paid one that
is still listed.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest

V = TypeVar("V")
ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("analyzer", "capture_proxy", "modelmon")

SQL, FILES, NETWORK, LOOP = "sql", "files", "network", "event loop"
NONE: frozenset[str] = frozenset()

# Package (the longest prefix of a module's name wins) → the I/O kinds its modules may use.
ALLOWED: dict[str, frozenset[str]] = {
    "analyzer": NONE,  # analyzer/__init__.py; the code is in the subpackages below
    "analyzer.decoding": NONE,  # pure: payload decoding (every module listed in PURE)
    "analyzer.monitors": NONE,  # pure: one folder per monitor type (listed in PURE)
    "analyzer.ingest": frozenset({FILES}),  # capture files, training tables, ground truth
    "analyzer.store": frozenset({SQL, FILES, LOOP}),  # LOOP: Store.aread/awrite for the web
    "analyzer.web": frozenset({NETWORK, LOOP}),  # aiohttp handlers; SQL via store.aread(fn)
    "analyzer.service": frozenset({FILES, NETWORK, LOOP}),  # FILES: app.py's os.environ
    "capture_proxy": frozenset({FILES, NETWORK, LOOP}),  # no SQL
    "modelmon": frozenset({FILES}),  # the shared layer: loads the config file
    "modelmon.cli": frozenset({FILES, NETWORK, LOOP}),  # no SQL: it asks the analyzer
}

# Modules (and everything under them) whose import is I/O of a kind.
IO_IMPORTS: dict[str, set[str]] = {
    SQL: {"sqlite3", "sqlite_utils"},
    FILES: {
        "os",
        "pathlib",
        "gzip",
        "bz2",
        "lzma",
        "shutil",
        "tempfile",
        "glob",
        "mmap",
        "zipfile",
        "tarfile",
        "importlib.resources",
        "io.open",
    },
    NETWORK: {
        "aiohttp",
        "httpx",
        "socket",
        "ssl",
        "http.client",
        "http.server",
        "urllib.request",
        "requests",
        "websockets",
    },
    LOOP: {"asyncio", "uvloop"},
}
# Method calls that are I/O on whatever object they are made (a connection or a path handed
# in needs no import): a lambda given to the store is caught by its ``.execute``.
IO_CALLS: dict[str, set[str]] = {
    SQL: {
        "execute",
        "executemany",
        "executescript",
        "query",
        "insert_all",
        "upsert_all",
        "rows_where",
    },
    FILES: {
        "read_text",
        "read_bytes",
        "write_text",
        "write_bytes",
        "iterdir",
        "rglob",
        "mkdir",
        "rmdir",
        "unlink",
        "touch",
    },
}
# A string that starts as an SQL statement (upper case, as this project writes SQL).
SQL_TEXT = re.compile(r"\s*(SELECT|INSERT|UPDATE|DELETE|REPLACE|CREATE|DROP|ALTER|PRAGMA|BEGIN)\b")
DYNAMIC_IMPORTS = {"import_module", "__import__"}

# Every module of the pure packages, one by one: none of them may do any I/O. A new module
# there fails test_pure_packages_list_every_module until it is added here (it must be pure)
# or placed where its I/O belongs (ingest/, store/, web/, service/).
PURE_PACKAGES = ("analyzer.decoding", "analyzer.monitors")
PURE = {
    "analyzer.decoding.arrow_batch",
    "analyzer.decoding.arrow_csv",
    "analyzer.decoding.arrow_json",
    "analyzer.decoding.arrow_values",
    "analyzer.decoding.codecs",
    "analyzer.decoding.column_mapping",
    "analyzer.decoding.columns",
    "analyzer.decoding.contract",
    "analyzer.decoding.envelope",
    "analyzer.decoding.inference_time",
    "analyzer.decoding.literals",
    "analyzer.decoding.payload_rows",
    "analyzer.decoding.record_batch",
    "analyzer.decoding.side_codec",
    "analyzer.decoding.value_types",
    "analyzer.monitors.contract",
    "analyzer.monitors.registry",
    "analyzer.monitors.data_quality.baseline_advice",
    "analyzer.monitors.data_quality.cardinality",
    "analyzer.monitors.data_quality.check_inputs",
    "analyzer.monitors.data_quality.checks",
    "analyzer.monitors.data_quality.drift",
    "analyzer.monitors.data_quality.drift_scores",
    "analyzer.monitors.data_quality.evaluate",
    "analyzer.monitors.data_quality.feature_profile",
    "analyzer.monitors.data_quality.monitor",
    "analyzer.monitors.data_quality.profile",
    "analyzer.monitors.data_quality.report_format",
    "analyzer.monitors.data_quality.sketches",
    "analyzer.monitors.data_quality.statistics_format",
    "analyzer.monitors.data_quality.statistics_readers",
    "analyzer.monitors.model_quality.calibration_sample",
    "analyzer.monitors.model_quality.documents",
    "analyzer.monitors.model_quality.estimate",
    "analyzer.monitors.model_quality.evaluate",
    "analyzer.monitors.model_quality.extraction",
    "analyzer.monitors.model_quality.extraction_batch",
    "analyzer.monitors.model_quality.labels",
    "analyzer.monitors.model_quality.metrics",
    "analyzer.monitors.model_quality.monitor",
    "analyzer.monitors.model_quality.multiclass",
    "analyzer.monitors.model_quality.pairs",
    "analyzer.monitors.model_quality.predictions",
    "analyzer.monitors.model_quality.ranking",
    "analyzer.monitors.model_quality.records",
    "analyzer.monitors.model_quality.streaming",
    "analyzer.monitors.model_quality.verdict",
}

# Today's breaches of ALLOWED: (module, kind). Each is paid by moving the code where its I/O
# belongs (SQL into analyzer/store/); then its line goes: the test fails while a paid debt
# is still listed, and on any breach not listed. The lead empties this set.
KNOWN_DEBTS: set[tuple[str, str]] = set()

# Imports that would point an arrow the wrong way (longest prefix wins, as in ALLOWED): the
# pure packages import nothing that does I/O (so they do none through another module either),
# ingest and store nothing of the web or the service above them.
ABOVE_STORE = {"analyzer.web", "analyzer.service"}
DOES_IO = {"analyzer.ingest", "analyzer.store", *ABOVE_STORE}
FORBIDDEN_IMPORTS: dict[str, set[str]] = {
    "analyzer": {"capture_proxy", "modelmon.cli"},
    "analyzer.decoding": {"capture_proxy", "modelmon.cli", *DOES_IO},
    "analyzer.monitors": {"capture_proxy", "modelmon.cli", *DOES_IO},
    "analyzer.ingest": {"capture_proxy", "modelmon.cli", *ABOVE_STORE},
    "analyzer.store": {"capture_proxy", "modelmon.cli", *ABOVE_STORE},
    "capture_proxy": {"analyzer", "modelmon.cli"},
    "modelmon": {"analyzer", "capture_proxy"},  # the shared layer is a leaf
    "modelmon.cli": set(),  # the command line sits above both packages
}


def _under(name: str, prefixes: set[str] | tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _rule(table: dict[str, V], module: str) -> V:
    """The entry of the longest key of ``table`` that is ``module`` or a package above it."""
    keys = [key for key in table if _under(module, (key,))]
    assert keys, f"{module} is in no package of the table: add its package"
    return table[max(keys, key=len)]


def _modules() -> Iterator[tuple[str, Path]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


def _imported(tree: ast.AST, module: str, is_package: bool) -> Iterator[tuple[str, int]]:
    """Every module name imported (statically, or by ``import_module("…")``) with its line;
    ``from a import b`` gives ``a`` and ``a.b`` (``b`` may be a module)."""
    here = module.split(".") if is_package else module.split(".")[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = here[: len(here) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base, node.lineno
            for alias in node.names:
                yield f"{base}.{alias.name}", node.lineno
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            if name in DYNAMIC_IMPORTS and isinstance(first, ast.Constant):
                yield str(first.value), node.lineno


def io_uses(source: str, module: str = "m", is_package: bool = False) -> dict[str, list[str]]:
    """The I/O kinds ``source`` uses, each with where (``line: what``)."""
    tree = ast.parse(source)
    found: dict[str, list[str]] = {}
    for name, line in _imported(tree, module, is_package):
        for kind, modules in IO_IMPORTS.items():
            if _under(name, modules):
                found.setdefault(kind, []).append(f"{line}: import {name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id == "open":
                found.setdefault(FILES, []).append(f"{node.lineno}: open()")
            elif isinstance(func, ast.Attribute):
                if (
                    func.attr == "open"
                    and isinstance(func.value, ast.Name)
                    and func.value.id == "io"
                ):
                    found.setdefault(FILES, []).append(f"{node.lineno}: io.open()")
                for kind, methods in IO_CALLS.items():
                    if func.attr in methods:
                        found.setdefault(kind, []).append(f"{node.lineno}: .{func.attr}()")
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if SQL_TEXT.match(node.value):
                found.setdefault(SQL, []).append(f"{node.lineno}: {node.value[:40]!r}")
    return found


def _breaches() -> dict[tuple[str, str], list[str]]:
    """(module, kind) → where, for every use of an I/O kind that ALLOWED does not allow."""
    breaches = {}
    for module, path in _modules():
        uses = io_uses(path.read_text(), module, path.name == "__init__.py")
        for kind, where in uses.items():
            if kind not in _rule(ALLOWED, module):
                breaches[(module, kind)] = where
    return breaches


def test_io_only_where_the_table_allows_it() -> None:
    breaches = _breaches()
    new = {debt: breaches[debt] for debt in sorted(breaches.keys() - KNOWN_DEBTS)}
    assert not new, f"I/O where ALLOWED forbids it (move the code, e.g. SQL into store/): {new}"
    paid = sorted(KNOWN_DEBTS - breaches.keys())
    assert not paid, f"paid debts still listed: remove them from KNOWN_DEBTS: {paid}"


def test_pure_packages_list_every_module() -> None:
    found = {m for m, path in _modules() if _under(m, PURE_PACKAGES) and path.stem != "__init__"}
    assert sorted(found - PURE) == [], "new modules: add them to PURE (no I/O) or move them"
    assert sorted(PURE - found) == [], "gone from the pure packages: remove them from PURE"
    assert all(_rule(ALLOWED, module) == NONE for module in PURE)


def test_dependency_arrows_point_one_way() -> None:
    wrong = []
    cli_imports = set()
    for module, path in _modules():
        forbidden = _rule(FORBIDDEN_IMPORTS, module)
        tree = ast.parse(path.read_text())
        for name, line in _imported(tree, module, path.name == "__init__.py"):
            if _under(name, forbidden):
                wrong.append(f"{module}:{line} imports {name}")
            if _under(module, ("modelmon.cli",)):
                cli_imports.add(name.split(".")[0])
    assert wrong == []
    # and so the command line is the one place that imports both packages
    assert {"analyzer", "capture_proxy"} <= cli_imports


@pytest.mark.parametrize(
    ("source", "kinds"),
    [
        ("import sqlite3", {SQL}),
        ("from sqlite_utils import Database", {SQL}),
        ("f = lambda c: c.execute(q)", {SQL}),
        ("rows = db.query(q)", {SQL}),
        ("db.table('t').insert_all(rows)", {SQL}),
        ("Q = 'SELECT id FROM runs'", {SQL}),
        ("begin = 'BEGIN'", {SQL}),
        ("doc = 'Select the columns'", set()),
        ("open('f')", {FILES}),
        ("import io\nio.open('f')", {FILES}),
        ("from io import open", {FILES}),
        ("import io\nbuf = io.BytesIO()", set()),
        ("from pathlib import Path", {FILES}),
        ("import os.path", {FILES}),
        ("from importlib import resources", {FILES}),
        ("body = path.read_bytes()", {FILES}),
        ("import importlib\nimportlib.import_module('gzip')", {FILES}),
        ("import importlib\nimportlib.import_module('pyarrow')", set()),
        ("from urllib import request", {NETWORK}),
        ("from urllib.parse import quote", set()),
        ("import http.client", {NETWORK}),
        ("from http import HTTPStatus", set()),
        ("from aiohttp import web", {NETWORK}),
        ("import ssl", {NETWORK}),
        ("import asyncio", {LOOP}),
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import sqlite3", {SQL}),
        ("kind = request.query.get('kind')", set()),
    ],
)
def test_the_checker_sees_each_kind(source: str, kinds: set[str]) -> None:
    assert set(io_uses(source)) == kinds


def test_relative_imports_and_the_table_resolve_to_the_package() -> None:
    tree = ast.parse("from . import database\nfrom ..web import routes")
    names = {name for name, _ in _imported(tree, "analyzer.store.queries", False)}
    assert {"analyzer.store.database", "analyzer.web.routes"} <= names
    in_package = {name for name, _ in _imported(tree, "analyzer.store", True)}
    assert {"analyzer.store.database", "analyzer.web.routes"} <= in_package
    assert _rule(ALLOWED, "analyzer.store.queries") == {SQL, FILES, LOOP}
    assert _rule(ALLOWED, "modelmon.config") == {FILES}
    assert _rule(ALLOWED, "modelmon.cli.demo") == {FILES, NETWORK, LOOP}
    assert _rule(FORBIDDEN_IMPORTS, "modelmon.cli.up") == set()
    assert "analyzer.store" in _rule(FORBIDDEN_IMPORTS, "analyzer.monitors.data_quality.drift")
