"""PyTriton's shared-memory segments: those of this server removed at stop, those of dead
servers at start.
"""

from __future__ import annotations

from pathlib import Path

from slamctl import segments

SHM_DIR = segments.SHM_DIR


PYTRITON_PREFIX = "pytrtion"  # PyTriton's segments: pytrtion<pid>-... (its spelling)


def shm_segments(pid: int) -> list[Path]:
    """PyTriton's shared-memory segments of process `pid` (those of every dead process:
    remove_stale_shm)."""
    return sorted(SHM_DIR.glob(f"{PYTRITON_PREFIX}{pid}-*")) if SHM_DIR.is_dir() else []


def remove_stale_shm() -> list[Path]:
    """Remove the segments of `slamctl serve` processes that no longer exist (one killed with
    SIGKILL cannot clean up after itself); the segments of live servers are kept."""
    return segments.remove_orphans(PYTRITON_PREFIX, "-", SHM_DIR)
