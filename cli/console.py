"""The terminal: one rich console for messages on stderr, and the progress bar style."""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

err = Console(stderr=True)


class LazyProgress(Progress):
    """A Progress that draws nothing before its first update: an error raised before any
    work starts is then the only line the user sees."""

    def __enter__(self) -> LazyProgress:
        return self

    def __exit__(self, *exc) -> None:
        if self.live.is_started:
            self.stop()

    def update(self, *args, **kwargs) -> None:
        if not self.live.is_started:
            self.start()
        super().update(*args, **kwargs)


def progress_bar() -> LazyProgress:
    """A progress bar on stderr: description, bar, n/total, info, elapsed, remaining."""
    return LazyProgress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )


def warn_if_degenerate(health: dict, where: str) -> None:
    """The CLI's warning for a model flagged degenerate (training/health.py)."""
    if health["degenerate"]:
        err.print(
            f"[yellow]warning:[/yellow] degenerate model {where}: {'; '.join(health['reasons'])}. "
            "It decides nothing; slamctl export refuses it without --allow-degenerate.",
            highlight=False,
            soft_wrap=True,
        )
