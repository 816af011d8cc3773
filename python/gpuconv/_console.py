"""The CLI's output: the rich Console and Table style of its tables, and CommandError, the mistake that
it reports as one line (its own module, so that `python -m gpuconv.cli` and the `gpuconv` script share
one class)."""

from __future__ import annotations

import sys

from rich.console import Console


class CommandError(Exception):
    """A mistake in what the user asked for: printed as one line, exit status 2."""


LOG_WIDTH = 240     # off a terminal (a pipe, a CI log) tables get this width, so that no cell wraps


def console() -> Console:
    """A Console on stdout: the terminal's own width on a terminal (rich folds cells to fit), LOG_WIDTH
    elsewhere. Plain text off a terminal: no colour codes, no highlighting."""
    return Console(width=None if sys.stdout.isatty() else LOG_WIDTH, highlight=False)


def table(title=None, **kwargs):
    """A rich Table in the CLI's style: title on the left, a rule under the header (and above a footer),
    no outer box."""
    from rich import box
    from rich.table import Table

    kwargs = dict(dict(show_edge=False, pad_edge=False), **kwargs)
    return Table(title=title, title_justify="left", box=box.SIMPLE, **kwargs)
