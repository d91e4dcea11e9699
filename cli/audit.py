"""`slamctl audit verify`: check an audit log written by `slamctl infer --audit-log`."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from slamctl.cli.console import err, styled
from slamctl.cli.console import out as stdout

app = typer.Typer(help="Check the audit log of `slamctl infer --audit-log` against the result files.")


@app.command()
def verify(
    log: Annotated[Path, typer.Argument(help="The audit log (JSON lines).")],
    results: Annotated[Path, typer.Argument(help="The results folder of the runs it logged (infer --out).")],
) -> None:
    """Check the log's hash chain and that every result file is the one its bag's latest line
    describes; a changed, unlogged or missing result is reported, and the exit status is 1."""
    from slamctl.client.audit import verify as check
    from slamctl.client.results import FORMATS
    from slamctl.client.settings import RUN_FILES
    from slamctl.errors import SlamError

    if not results.is_dir():
        raise SlamError(f"{results}: results folder does not exist")
    files = sorted(
        p for p in results.iterdir() if p.is_file() and p.suffix[1:] in FORMATS and p.name not in RUN_FILES
    )
    report = check(log, results, files)
    for problem in report.problems:
        err.print(styled("FAIL", "red", f" {problem}"), soft_wrap=True)
    stdout.print(
        f"{log}: {report.lines} lines; {report.results} of {len(files)} result files match their line"
    )
    if report.problems:
        raise typer.Exit(code=1)
