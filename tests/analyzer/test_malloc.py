"""The service fixes glibc's mmap threshold (the effect on RSS is measured in bench/)."""

from __future__ import annotations

import platform

import pytest

from analyzer.service.malloc import fix_mmap_threshold


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)
def test_the_mmap_threshold_is_fixed_on_glibc() -> None:
    assert fix_mmap_threshold() is True
