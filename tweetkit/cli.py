"""The `tweetkit` command: a click group whose subcommands load on first use.

Each subcommand lives in tweetkit/commands/<name>.py as a thin click wrapper over
pure functions; this module only knows their names, so `tweetkit normalize --help`
never imports torch.  Exit status: 0 success, 1 an error with a one-line message
(bad input, missing model, ...), 2 a usage error, 141 a closed output pipe.
"""

from __future__ import annotations

import importlib
import os
import sys

import click

from tweetkit import __version__
from tweetkit.errors import Interrupted, TweetkitError

COMMANDS = {
    "benchmark": "tweetkit.commands.benchmark",
    "dedup": "tweetkit.commands.dedup",
    "embed": "tweetkit.commands.embed",
    "evaluate": "tweetkit.commands.evaluate",
    "finetune": "tweetkit.commands.finetune",
    "langid": "tweetkit.commands.langid",
    "merge": "tweetkit.commands.merge",
    "normalize": "tweetkit.commands.normalize",
    "plot": "tweetkit.commands.plot",
    "predict": "tweetkit.commands.predict",
    "pretrain": "tweetkit.commands.pretrain",
    "split": "tweetkit.commands.split",
    "stats": "tweetkit.commands.stats",
    "train-bpe": "tweetkit.commands.train_bpe",
}


class PipeClosed(Exception):
    """The reader of stdout went away; not an OSError, so that click does not turn it into exit 1."""


class StoppedCleanly(Exception):
    """An Interrupted, carried past click (which would turn it into a bare Abort)."""


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def resolve_command(self, ctx: click.Context, args: list[str]):
        name = args[0] if args else ""
        if name and name not in COMMANDS and not name.startswith("-"):
            import difflib

            close = difflib.get_close_matches(name, COMMANDS, n=1)
            if close:
                ctx.fail(f"No such command '{name}'. Did you mean '{close[0]}'?")
        return super().resolve_command(ctx, args)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in COMMANDS:
            return None
        return importlib.import_module(COMMANDS[name]).command

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            raise PipeClosed() from None
        except Interrupted as exc:
            raise StoppedCleanly(str(exc)) from None


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="tweetkit")
def group() -> None:
    """Build language models of social-media text.

    \b
    Data commands read JSONL (files, .gz, or stdin) and write JSONL on stdout:
      zcat dump.jsonl.gz | tweetkit langid --keep en | tweetkit normalize > corpus.jsonl
    """


def main(argv: list[str] | None = None) -> None:
    """Entry point: one-line errors, quiet broken pipes, standard exit codes."""
    command = (argv if argv is not None else sys.argv[1:])[:1]
    prog = "tweetkit" + (f" {command[0]}" if command and command[0] in COMMANDS else "")
    try:
        group.main(args=argv, prog_name="tweetkit", standalone_mode=False)
        sys.stdout.flush()  # here, not at exit, so that a full disk is reported like any error
    except click.exceptions.Abort:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except TweetkitError as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        sys.exit(getattr(exc, "exit_code", 1))
    except (PipeClosed, BrokenPipeError):
        # The reader went away (`| head`, of stdout or of stderr): stop quietly with 141,
        # the status of a process SIGPIPE ended, as `yes | head` gives.
        _silence_stdout()
        _silence_stdout(sys.stderr)
        sys.exit(141)
    except StoppedCleanly as exc:
        print(f"{prog}: interrupted {exc}", file=sys.stderr)
        sys.exit(130)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(130)
    except OSError as exc:  # a full disk, a vanished directory: the system's one-line reason
        _silence_stdout()
        print(f"{prog}: {exc.filename or 'output'}: {exc.strerror or exc}", file=sys.stderr)
        sys.exit(1)


def _silence_stdout(stream=None) -> None:
    """Point stdout (or `stream`) at /dev/null so the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, (stream or sys.stdout).fileno())
    except (OSError, ValueError):  # no real stdout (tests capture it)
        pass
