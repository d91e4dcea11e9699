"""`slamctl`: the command-line entry point. It only composes the command groups.

A user's mistake (SlamError) becomes one line on stderr and exit status 1, never a
traceback. Commands that need torch import it inside their functions, so the client
installs and runs without it.
"""

from __future__ import annotations

import logging
import sys

import typer

from slamctl.cli import audit, data, evaluate, experiment, export, health, infer, serve, train
from slamctl.cli.console import err, styled
from slamctl.errors import SlamError

app = typer.Typer(
    name="slamctl",
    help="SLAM-AGS for weakly supervised cytology: data, pretraining, MIL, export, serving, inference.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(data.app, name="data")
app.add_typer(train.app, name="train")
app.command(name="evaluate")(evaluate.evaluate)
app.add_typer(experiment.app, name="experiment")
app.add_typer(export.app, name="export")
app.command(name="serve")(serve.serve)
app.command(name="infer")(infer.infer)
app.command(name="health")(health.health)
app.add_typer(audit.app, name="audit")


def main(argv: list[str] | None = None) -> int:
    """Run the CLI on argv; returns the exit status instead of exiting."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        app(args=argv, prog_name="slamctl")  # typer exits itself: usage errors, --help
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except SlamError as e:
        err.print(styled("error:", "red", f" {e}"), soft_wrap=True)
        return 1
    except KeyboardInterrupt:
        err.print("interrupted")
        return 130
    return 0


def run() -> None:
    sys.exit(main())
