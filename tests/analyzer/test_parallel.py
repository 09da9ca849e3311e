"""Profiling files on a process pool gives the exact parts of profiling them in-process."""

from __future__ import annotations

import math
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from analyzer.ingest.executor import cores, cpu_quota
from analyzer.ingest.parallel import arrow_decoder, profile_capture_files
from modelmon.capture_record import CaptureSide, build_record
from modelmon.config import ConfigError, PayloadConfig, load_config


def write_files(root: Path) -> list[Path]:
    start = datetime(2024, 6, 1, 12, tzinfo=UTC)
    files = []
    for f in range(3):
        lines = [
            build_record(
                event_id=f"e{f}-{i}",
                inference_time=start + timedelta(minutes=f * 10 + i),
                request=CaptureSide("text/csv", f"{i * (f + 1)},{'ab'[i % 2]}", "CSV"),
                response=CaptureSide("text/csv", f"0.{i}", "CSV"),
            )
            for i in range(40)
        ]
        path = root / f"{f:02d}.jsonl"
        path.write_bytes(b"".join(lines) + b"{broken\n")
        files.append(path)
    return files


def test_pool_and_in_process_agree(tmp_path: Path) -> None:
    files = write_files(tmp_path)
    payload = PayloadConfig.model_validate({"input": {"columns": ["n", "s"]}})
    alone = profile_capture_files(files, payload, 2048, workers=1)
    pooled = profile_capture_files(files, payload, 2048, workers=2)
    for result in (alone, pooled):
        assert (result.records, result.files, result.profile.item_count) == (120, 3, 120)
        assert result.bad == {"not_json": 3}
        assert result.first_time == datetime(2024, 6, 1, 12, tzinfo=UTC)
        assert result.last_time == datetime(2024, 6, 1, 12, 59, tzinfo=UTC)
    a, b = alone.profile.features["n"], pooled.profile.features["n"]
    assert (a.count, a.min, a.max, a.type_counts) == (b.count, b.min, b.max, b.type_counts)
    assert a.sum == pytest.approx(b.sum) and a.std == pytest.approx(b.std)
    assert alone.profile.features["s"].category_counts() == {"a": 60.0, "b": 60.0}
    assert pooled.profile.features["s"].category_counts() == {"a": 60.0, "b": 60.0}
    assert pooled.profile.predictions["prediction"].count == 120


def test_progress_is_reported_per_file(tmp_path: Path) -> None:
    seen: list[int] = []
    profile_capture_files(
        write_files(tmp_path),
        PayloadConfig(),
        2048,
        workers=2,
        on_file=lambda t: seen.append(t.files),
    )
    assert seen == [1, 2, 3]


@pytest.mark.parametrize(
    ("written", "mode"),
    [("", "csv"), ("arrow: off", "off"), ("arrow: csv_and_json", "csv_and_json")],
)
def test_the_arrow_fast_path_is_a_config_key(tmp_path: Path, written: str, mode: str) -> None:
    """``analyzer.arrow`` (not an environment variable) says which payloads Arrow decodes;
    a bare YAML ``off`` (a boolean to YAML) means off."""
    pytest.importorskip("pyarrow", reason="pyarrow (the optional 'fast' extra) is not installed")
    path = tmp_path / "m.yaml"
    path.write_text(f"proxy: {{upstream: 'http://127.0.0.1:1'}}\nanalyzer: {{{written}}}\n")
    arrow = load_config(path).analyzer.arrow
    assert arrow == mode
    csv = PayloadConfig()
    json = PayloadConfig.model_validate({"input": {"format": "json"}, "output": {"format": "json"}})
    assert (arrow_decoder(csv, arrow) is None) is (mode == "off")
    assert (arrow_decoder(json, arrow) is None) is (mode != "csv_and_json")
    files = write_files(tmp_path)
    payload = PayloadConfig.model_validate({"input": {"columns": ["n", "s"]}})
    result = profile_capture_files(files, payload, 2048, workers=1, arrow=arrow)
    assert (result.records, result.bad) == (120, {"not_json": 3})


def test_a_bad_arrow_setting_names_the_choices(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text("proxy: {upstream: 'http://127.0.0.1:1'}\nanalyzer: {arrow: 'on'}\n")
    with pytest.raises(ConfigError, match=r"analyzer\.arrow"):
        load_config(path)


@pytest.mark.parametrize(
    ("files", "quota"),
    [
        ({"cpu.max": "150000 100000\n"}, 1.5),  # cgroup v2
        ({"cpu.max": "max 100000\n"}, None),
        ({"cpu/cpu.cfs_quota_us": "50000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 0.5),  # v1
        ({"cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, None),
        ({}, None),
        ({"cpu.max": "garbage\n"}, None),
    ],
)
def test_a_cgroups_cpu_quota_caps_the_cores(
    tmp_path: Path, files: dict[str, str], quota: float | None
) -> None:
    """A container limited by CPU quota on a larger host counts what its quota allows
    (rounded up, at least one), not its CPU set."""
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert cpu_quota(tmp_path) == quota
    allowed = len(os.sched_getaffinity(0))
    expected = allowed if quota is None else max(1, min(allowed, math.ceil(quota)))
    assert cores(tmp_path) == expected


@pytest.mark.parametrize(
    ("own", "files", "quota"),
    [
        # cgroup v2, a systemd service with CPUQuota=100%: the root has no cpu.max
        ("0::/system.slice/modelmon.service\n",
         {"system.slice/modelmon.service/cpu.max": "100000 100000\n"}, 1.0),
        # the tighter of the service's and its slice's
        ("0::/a.slice/b.service\n",
         {"a.slice/cpu.max": "50000 100000\n", "a.slice/b.service/cpu.max": "max 100000\n"}, 0.5),
        # v1, the container's own cgroup mounted as the hierarchy's root: its path is not there
        ("4:cpu,cpuacct:/docker/abc\n1:name=systemd:/docker/abc\n",
         {"cpu/cpu.cfs_quota_us": "100000\n", "cpu/cpu.cfs_period_us": "100000\n"}, 1.0),
        # v1 with the host's hierarchy: the process's own folder in it
        ("4:cpu,cpuacct:/job\n",
         {"cpu/job/cpu.cfs_quota_us": "200000\n", "cpu/job/cpu.cfs_period_us": "100000\n",
          "cpu/cpu.cfs_quota_us": "-1\n", "cpu/cpu.cfs_period_us": "100000\n"}, 2.0),
    ],
)  # fmt: skip
def test_the_quota_is_the_processs_own_cgroups_and_its_parents(
    tmp_path: Path, own: str, files: dict[str, str], quota: float
) -> None:
    """The quota that binds is on the process's own cgroup (``/proc/self/cgroup``) or one of
    its parents, not only on the hierarchy's root (a service under systemd, a nested group)."""
    tree = tmp_path / "cgroup"
    for name, text in files.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_text(text)
    (tmp_path / "self").write_text(own)
    assert cpu_quota(tree, tmp_path / "self") == quota
