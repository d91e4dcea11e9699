"""The terminal: one rule for every command, and the progress bar style.

stdout (`out`) carries a command's answer, what a script would capture: evaluate's
metrics, export validate's table, health's lines, cell-auc's AUC. stderr (`err`) carries
everything else: progress bars, the paths a command wrote, summaries of runs whose
results are files, warnings and errors."""

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
from rich.text import Text

# markup off: paths, bag and file names are printed as they are ("[bold]x" is a valid bag
# name); styled words are Text objects (styled below)
err = Console(stderr=True, markup=False, highlight=False)
out = Console(markup=False, highlight=False)


def styled(word: str, style: str, rest: str) -> Text:
    """`word` in `style`, then `rest` as plain text (never read as markup)."""
    return Text.assemble((word, style), rest)


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
        TextColumn("{task.description}", style="bold", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}", markup=False),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=False,
    )


def warn_if_degenerate(health: dict, where: str) -> None:
    """The CLI's warning for a model flagged degenerate (training/health.py)."""
    if health["degenerate"]:
        err.print(
            styled(
                "warning:",
                "yellow",
                f" degenerate model {where}: {'; '.join(health['reasons'])}. "
                "It decides nothing; slamctl export refuses it without --allow-degenerate.",
            ),
            soft_wrap=True,
        )
