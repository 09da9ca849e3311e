"""A clone runs its tests and benchmarks alone: the reference data is inside the repository and
no file names a data folder beside or outside the checkout."""

import re
from pathlib import Path

from tests.shared_data import DATA, EXAMPLES, SHARED

ROOT = Path(__file__).resolve().parents[1]
SCANNED = ("tests", "bench", "modelmon", "capture_proxy", "analyzer", "docs", "configs", ".ci")
SKIPPED = {"__pycache__", ".mypy_cache", ".ruff_cache", ".pytest_cache", ".hypothesis", "out"}
# A "shared" folder beside the checkout (dot-dot), the workplace's one under /work, or a path
# joined onto a folder of that name in Python; spelled so that this file does not match itself.
OUTSIDE = re.compile(rb"\.\./shared|/work/+shared|/\s*[\"']shared[\"']")


def _files() -> list[Path]:
    files = [path for path in ROOT.iterdir() if path.is_file()]
    for top in SCANNED:
        for path in (ROOT / top).rglob("*"):
            if path.is_file() and not SKIPPED & set(path.relative_to(ROOT).parts):
                files.append(path)
    return files


def test_no_file_names_a_folder_outside_the_repository() -> None:
    files = _files()
    assert len(files) > 100  # the scan saw the tree
    offenders = []
    for path in files:
        text = path.read_bytes()
        for match in OUTSIDE.finditer(text):
            line = text.count(b"\n", 0, match.start()) + 1
            offenders.append(f"{path.relative_to(ROOT)}:{line}: {match.group().decode()}")
    assert offenders == []


def test_the_pattern_catches_the_old_spellings() -> None:
    for spelling in ("../" + "shared/data", "/work" + "/shared", 'parents[2] / "sha' + 'red"'):
        assert OUTSIDE.search(spelling.encode()), spelling


def test_reference_data_is_inside_the_repository() -> None:
    for folder in (SHARED, DATA, EXAMPLES):
        assert folder.is_relative_to(ROOT), folder
    tables = [
        "baseline.csv",
        "current_nodrift.csv",
        "current_covariate.csv",
        "current_concept.csv",
        "current_quality.csv",
        "requests_nodrift.csv",
    ]
    for name in tables:
        assert (DATA / name).is_file(), name
        assert f"| {name} |" in (DATA / "README.md").read_text()
    readme = (EXAMPLES / "README.md").read_text()
    listed = re.findall(r"^\| ([a-z_]+/[a-z_]+\.[a-z]+) \|", readme, re.M)
    assert len(listed) == 11
    for name in listed:
        assert (EXAMPLES / name).is_file(), name
    assert "Apache License" in (EXAMPLES / "LICENSE.txt").read_text()
    notice = (ROOT / "NOTICE").read_text()
    assert "Amazon.com, Inc. or its affiliates" in notice
    assert "tests/reference/sagemaker-examples" in notice
