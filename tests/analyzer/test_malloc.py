"""The service fixes glibc's mmap threshold: after a large buffer is freed (which raises
glibc's dynamic threshold to its size), a 1 MiB buffer still gets a mapping of its own
(returned to the system when freed) instead of staying in a thread's arena. Counted by
glibc's own ``mallinfo2().hblks`` in a fresh interpreter (the setting is process-wide: the
test process is left alone). The effect on the service's RSS is measured in bench/."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

PROBE = """
import ctypes, sys
from analyzer.service.malloc import fix_mmap_threshold

class Info(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks",
                "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL(None)
libc.mallinfo2.restype = Info
big = bytearray(8 << 20)
del big  # glibc raises its threshold to 8 MiB
if sys.argv[1] == "fixed":
    assert fix_mmap_threshold()
before = libc.mallinfo2().hblks
buffer = bytearray(1 << 20)
print(libc.mallinfo2().hblks - before)
"""


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only"
)
@pytest.mark.parametrize(("mode", "mapped"), [("dynamic", "0"), ("fixed", "1")])
def test_a_freed_large_buffer_no_longer_sends_the_smaller_ones_to_the_arenas(
    mode: str, mapped: str
) -> None:
    done = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True,
                          timeout=60, check=True)  # fmt: skip
    assert done.stdout.strip() == mapped, (mode, done.stdout, done.stderr)
