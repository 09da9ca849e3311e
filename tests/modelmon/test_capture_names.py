"""Capture file names carry the writing replica, recoverable by a pure function."""

from __future__ import annotations

import uuid

import pytest

from analyzer.ingest.capture_files import instance_of
from modelmon.capture_names import capture_stem, sanitize_instance

UID = "1bd6df23-6a0f-4b1c-9d3e-0123456789ab"


@pytest.mark.parametrize("instance", ["web-1", "ip-10-0-0-1.ec2.internal", "a", "x" * 63, "0-0"])
@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz", ".jsonl.part", ".jsonl.gz.part"])
def test_the_instance_comes_back_from_the_name(instance: str, suffix: str) -> None:
    name = capture_stem(5, 9, 42, instance, str(uuid.uuid4())) + suffix
    assert name.startswith("05-09-042-")
    assert instance_of(name) == instance


@pytest.mark.parametrize(
    "name",
    [
        f"28-10-462-{UID}.jsonl",  # SageMaker's own, and ours before the instance part
        f"28-10-462-{UID}.jsonl.gz",
        "notes.txt",
        f"28-10-462-web-1-{UID}.json",
        f"28-10-462--{UID}.jsonl",
        f"28-10-462-{'x' * 64}-{UID}.jsonl",  # longer than an instance may be
        f".28-10-462-web-1-{UID}.jsonl.uploaded",
    ],
)
def test_names_without_an_instance_give_none(name: str) -> None:
    assert instance_of(name) is None


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("web-1", "web-1"),
        ("ip-10-0-0-1.ec2.internal", "ip-10-0-0-1.ec2.internal"),
        ("pod/ns name", "pod_ns_name"),
        ("..hidden", "hidden"),
        ("-", "host"),
        ("", "host"),
        ("é" * 100, "host"),
        ("aé" * 50, ("a_" * 32)[:63]),
    ],
)
def test_hostnames_are_sanitized_and_bounded(raw: str, clean: str) -> None:
    assert sanitize_instance(raw) == clean
    assert instance_of(capture_stem(0, 0, 0, clean, UID) + ".jsonl") == clean
