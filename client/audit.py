"""The audit log: one JSON line per bag decided or failed, appended, never rewritten.

`slamctl infer --audit-log FILE` appends a line before it writes the bag's result file:
the bag's name and folder, the decision and probability, the result file's name and
sha256, and the provenance of the result (served model id, version and ONNX checksums,
threshold, client version, run id, the bag's input digest, the time). Each line also holds
`prev`, the sha256 of the line before it (the empty string for the first), so a removed,
reordered or edited line breaks the chain. A line is one `write` of whole bytes followed by
`fsync`: a client killed mid-run leaves whole lines only. Each append holds the file's lock
(flock) and chains to the line that is last at that moment, so runs appending to one log at
the same time interleave whole, chained lines.

`slamctl audit verify FILE RESULTS_DIR` checks the chain, and that every result file in
RESULTS_DIR is the one its bag's latest line describes.

The log holds bag names and folders (they may identify patients): keep it where the
results are kept, never in metrics.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from slamctl.errors import SlamError


def line_hash(line: bytes) -> str:
    return hashlib.sha256(line).hexdigest()


def last_line(path: Path) -> bytes:
    """The last line of a file (read from its end), or b"" for an empty one."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        end = f.tell()
        chunk, pos = b"", end
        while pos > 0 and chunk.count(b"\n") < 2:
            step = min(65536, pos)
            pos -= step
            f.seek(pos)
            chunk = f.read(step) + chunk
    lines = chunk.splitlines(keepends=True)
    return lines[-1] if lines else b""


class AuditLog:
    """An append-only, hash-chained JSON-lines file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            last = last_line(self.path)
        except OSError as e:
            raise SlamError(f"--audit-log {self.path}: cannot open it for appending ({e.strerror})") from None
        if last and not last.endswith(b"\n"):
            raise SlamError(
                f"--audit-log {self.path}: its last line is not whole; check it with `slamctl audit verify`"
            )
        self.prev = line_hash(last) if last else ""

    def append(self, record: dict) -> None:
        """Append one chained line, holding the file's lock: another run appending to the same
        log waits, and the line chains to whatever line is last when the lock is held."""
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            try:
                last = last_line(self.path)  # another run may have appended since
                if last and not last.endswith(b"\n"):
                    raise SlamError(
                        f"--audit-log {self.path}: its last line is not whole; check it with `slamctl audit verify`"
                    )
                self.prev = line_hash(last) if last else ""
                line = json.dumps({**record, "prev": self.prev}, sort_keys=True, allow_nan=False) + "\n"
                os.write(self.fd, line.encode())
                os.fsync(self.fd)
            finally:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
        except OSError as e:
            raise SlamError(f"--audit-log {self.path}: cannot append ({e.strerror})") from None
        self.prev = line_hash(line.encode())

    def close(self) -> None:
        os.close(self.fd)


@dataclass
class Verification:
    lines: int = 0
    results: int = 0  # result files that match their line
    problems: list[str] = field(default_factory=list)


def verify(log: Path, results: Path, result_files: list[Path]) -> Verification:
    """Check the chain of `log` and each of `result_files` (in RESULTS_DIR) against the latest
    decision line of its bag."""
    report = Verification()
    try:
        data = Path(log).read_bytes()
    except OSError as e:
        raise SlamError(f"{log}: cannot read the audit log ({e.strerror})") from None
    latest: dict[str, dict] = {}  # result file name -> its latest decision line
    prev = ""
    for number, line in enumerate(data.splitlines(keepends=True), start=1):
        report.lines += 1
        try:
            record = json.loads(line)
        except ValueError:
            report.problems.append(f"line {number}: not a whole JSON line")
            prev = line_hash(line)
            continue
        if record.get("prev") != prev:
            report.problems.append(
                f"line {number}: the chain is broken (a line before it was removed or changed)"
            )
        prev = line_hash(line)
        if record.get("event") == "decision":
            latest[record["result_file"]] = record
    for path in result_files:
        record = latest.pop(path.name, None)
        if record is None:
            report.problems.append(f"{path}: not in the audit log")
        elif hashlib.sha256(path.read_bytes()).hexdigest() != record["result_sha256"]:
            report.problems.append(
                f"{path}: changed since it was logged (bag {record['bag']}, decided {record['provenance']['decided_at']})"
            )
        else:
            report.results += 1
    here = str(Path(results).resolve())
    for name, record in sorted(latest.items()):  # lines of other result folders are not this one's
        if record.get("results_dir") == here:
            report.problems.append(f"{Path(results) / name}: logged for bag {record['bag']} but missing")
    return report
