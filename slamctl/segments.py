"""Shared-memory segments named after the process that made them (`<prefix><pid><separator>...`
in /dev/shm): PyTriton's for `slamctl serve`, the client's for `slamctl infer --shm`. A process
killed with SIGKILL cannot remove its own; the next start removes those of processes that no
longer run, and keeps those of live ones."""

from __future__ import annotations

import contextlib
from pathlib import Path

SHM_DIR = Path("/dev/shm")


def owner_gone(name: str, prefix: str, separator: str) -> bool:
    """Whether `name` is `<prefix><pid><separator>...` of a process that no longer runs."""
    if not name.startswith(prefix):
        return False
    pid = name[len(prefix) :].split(separator, 1)[0]
    return pid.isdigit() and not Path(f"/proc/{pid}").exists()


def remove_orphans(prefix: str, separator: str, directory: Path = SHM_DIR) -> list[Path]:
    """Unlink the segments in `directory` whose owner no longer runs; returns them."""
    removed = []
    for path in sorted(directory.glob(prefix + "*")) if directory.is_dir() else ():
        if owner_gone(path.name, prefix, separator):
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path)
    return removed
