"""capture.upload / instance_id in the config, and fsspec as an optional extra: never imported
unless a URL is configured, and its absence one clear line that says what to install."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from modelmon.config import ConfigError, load_config, parse_config

ROOT = Path(__file__).resolve().parents[2]


def _capture(**capture: object) -> dict[str, object]:
    return {"proxy": {"upstream": "http://127.0.0.1:9"}, "capture": capture}


@pytest.mark.parametrize(
    "url", ["s3://bucket", "s3://bucket/a/prefix/", "gs://b/p", "gcs://b", "file:///srv/capture"]
)
def test_storage_urls_are_accepted(url: str, tmp_path: Path) -> None:
    config = parse_config(_capture(upload=url), base=tmp_path)
    assert config.capture.upload == url.rstrip("/")


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://bucket/x", "s3://, gs:// or file:///"),
        ("s3://AKIA:secret@bucket/x", "no credentials in the URL"),
        ("s3://user@bucket", "no credentials in the URL"),
        ("s3:///nobucket", "s3://bucket"),
        ("file://relative/dir", "file:///absolute/path"),
        ("file:///", "file:///absolute/path"),
        ("s3://bucket/x?versionId=1", "no query"),
        ("s3://bucket/a b", "spaces"),
    ],
)
def test_bad_storage_urls_are_refused_at_load(url: str, expected: str, tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(f"proxy: {{upstream: 'http://127.0.0.1:9'}}\ncapture: {{upload: '{url}'}}\n")
    with pytest.raises(ConfigError, match=r"capture\.upload") as info:
        load_config(path)
    assert expected in str(info.value)


def test_instance_id_is_one_safe_name(tmp_path: Path) -> None:
    assert parse_config(_capture(instance_id="web-1"), base=tmp_path).capture.instance_id == "web-1"
    for bad in ("a/b", "-x", "x" * 64, "a b"):
        with pytest.raises(ConfigError, match="instance_id"):
            parse_config(_capture(instance_id=bad), base=tmp_path)


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=cwd, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_core_never_imports_fsspec(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "import capture_proxy.main, capture_proxy.app, capture_proxy.engine, capture_proxy.sink\n"
        "import analyzer.service.app, analyzer.ingest.ingestor, analyzer.ingest.batch\n"
        "import modelmon.cli, modelmon.storage_url\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('fsspec', 's3fs')))\n"
    )
    done = _python(code, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("url", "blocked", "hint"),
    [
        ("s3://bucket/p", "fsspec", "pip install 'modelmon[s3]'"),
        ("s3://bucket/p", "s3fs", "pip install 'modelmon[s3]'"),
        ("gs://bucket/p", "gcsfs", "pip install 'modelmon[gcs]'"),
    ],
)
def test_a_missing_library_stops_the_proxy_with_what_to_install(
    url: str, blocked: str, hint: str, tmp_path: Path
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(
        "proxy: {upstream: 'http://127.0.0.1:9', listen: '127.0.0.1:0'}\n"
        f"capture: {{dir: '{tmp_path}/capture', upload: '{url}'}}\n"
    )
    code = (
        "import sys\n"
        f"sys.modules[{blocked!r}] = None  # as if not installed\n"
        "from modelmon.cli import main\n"
        f"raise SystemExit(main(['proxy', '--config', {str(config)!r}]))\n"
    )
    done = _python(code, tmp_path)
    assert done.returncode == 1
    [line] = done.stderr.strip().splitlines()
    assert line.startswith("modelmon proxy: capture.upload:") and line.endswith(hint)
