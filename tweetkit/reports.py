"""Tables for people, on stderr: a rich console that ends quietly when its reader goes
away, and the trials table of a sweep (stdout keeps the data: one JSON line a trial)."""

from __future__ import annotations

import sys


def stderr_console(**options):
    """A rich Console on stderr.  When stderr's reader goes away, rich exits with 1; this one
    raises BrokenPipeError, so the command ends as on a closed stdout: quietly, with 141."""
    from rich.console import Console

    class PipeAwareConsole(Console):
        def on_broken_pipe(self) -> None:
            raise BrokenPipeError()

    return PipeAwareConsole(file=sys.stderr, **options)


def print_study_table(study, best: int) -> None:
    """Every finished or failed trial of an Optuna study with its parameters; the best starred."""
    from rich.table import Table

    trials = [t for t in study.get_trials(deepcopy=False) if t.state.name != "RUNNING"]
    names = sorted({name for t in trials for name in t.params})
    table = Table(title=f"study {study.study_name}: {len(trials)} trials")
    for column in ["trial", "state", "value", *names]:
        table.add_column(column, justify="right")
    for t in trials:
        value = f"{t.value:.4f}" if t.value is not None else "-"
        cells = [
            f"{t.params[n]:.3g}" if isinstance(t.params.get(n), float) else str(t.params.get(n, "")) for n in names
        ]
        table.add_row(("*" if t.number == best else "") + str(t.number), t.state.name.lower(), value, *cells)
    # Not a terminal (a log file, a cron mail): wide enough for every column, not 80.
    stderr_console(width=None if sys.stderr.isatty() else 240).print(table)


def log_for(command: str, quiet: bool):
    """The stderr log of a command; silent with -q."""
    if quiet:
        return lambda message: None
    return lambda message: print(f"tweetkit {command}: {message}", file=sys.stderr)
