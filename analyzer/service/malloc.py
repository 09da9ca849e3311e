"""The C allocator's threshold for mapping a buffer of its own, fixed (glibc; the service).

glibc serves a buffer of at least ``M_MMAP_THRESHOLD`` bytes (128 KiB) with a mapping of its
own, unmapped when freed, but raises that threshold to the size of any such buffer freed
(up to 32 MiB). The model-quality join reads and writes its blocks as blobs of up to a few
MiB (:mod:`analyzer.store.model_quality_blocks`), so after the first chunk every buffer
below that size came from the arenas of the threads that used it (the writer, each reader
thread of the evaluation) and stayed there: measured with ``python bench/analyzer_service.py
--records 1000000 --model-quality``, 346 MB resident after the run instead of 216 MB with the
threshold fixed (main's row-per-prediction join: 252 MB). Fixing it turns the adjustment off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

__all__ = ["MMAP_THRESHOLD_BYTES", "M_MMAP_THRESHOLD", "fix_mmap_threshold"]

log = logging.getLogger("modelmon.analyzer.service")

M_MMAP_THRESHOLD = -3  # glibc's mallopt parameter
MMAP_THRESHOLD_BYTES = 128 << 10  # glibc's default, kept


def fix_mmap_threshold(threshold: int = MMAP_THRESHOLD_BYTES) -> bool:
    """Fix glibc's mmap threshold (no dynamic adjustment); False where there is no glibc
    ``mallopt`` (another C library: nothing to do) or it refused."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(M_MMAP_THRESHOLD, threshold))
    if not done:
        log.debug("mallopt(M_MMAP_THRESHOLD) refused")
    return done
