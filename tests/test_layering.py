"""The dependency arrows of DESIGN.md, checked on the source: a wrong import fails here."""

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TOP_LEVEL = ("modelmon.cli", "modelmon.cli.up", "modelmon.cli.demo", "modelmon.cli.status")
PURE_ANALYZER = (
    "decoding/codecs",
    "monitors/data_quality/sketches",
    "monitors/data_quality/profile",
    "decoding/record_batch",
    "decoding/arrow_batch",
    "decoding/arrow_csv",
    "decoding/arrow_json",
    "decoding/arrow_values",
    "monitors/data_quality/drift",
    "monitors/data_quality/checks",
    "monitors/data_quality/report_format",
    "monitors/data_quality/statistics_format",
    "monitors/model_quality/metrics",
    "monitors/model_quality/documents",
    "monitors/model_quality/verdict",
    "monitors/model_quality/evaluate",
    "monitors/model_quality/estimate",
    "monitors/model_quality/records",
    "monitors/model_quality/pairs",
    "monitors/model_quality/labels",
    "monitors/model_quality/predictions",
)
IO_MODULES = {"aiohttp", "sqlite3", "sqlite_utils", "httpx", "socket", "asyncio"}


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def _roots(names: set[str]) -> set[str]:
    return {name.split(".")[0] for name in names}


def test_shared_layer_is_a_leaf() -> None:
    for path in (ROOT / "modelmon").rglob("*.py"):
        module = _module_name(path)
        if module.startswith(TOP_LEVEL) or module == "modelmon.__main__":
            continue
        assert not _roots(_imports(path)) & {"capture_proxy", "analyzer"}, module


def test_packages_do_not_import_each_other() -> None:
    for path in (ROOT / "capture_proxy").rglob("*.py"):
        assert "analyzer" not in _roots(_imports(path)), _module_name(path)
    for path in (ROOT / "analyzer").rglob("*.py"):
        assert "capture_proxy" not in _roots(_imports(path)), _module_name(path)


def test_pure_analyzer_modules_touch_no_io() -> None:
    checked = 0
    for name in PURE_ANALYZER:
        path = ROOT / "analyzer" / f"{name}.py"
        if path.exists():
            checked += 1
            assert not _roots(_imports(path)) & IO_MODULES, name
    assert checked == len(PURE_ANALYZER)
