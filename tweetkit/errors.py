"""One error hierarchy for the whole tool.

The CLI turns any TweetkitError into a single line on stderr and exit status 1;
click's own usage errors keep exit status 2.
"""

import sys


def log_to_stderr(message: str) -> None:
    """The default log of library functions: stdout carries data only."""
    print(message, file=sys.stderr)


class TweetkitError(Exception):
    """An error the user can act on; printed as one line, never as a traceback."""


class BadRecord(TweetkitError):
    """An input line that cannot be used, located by file and line number."""

    def __init__(self, source: str, lineno: int, reason: str):
        self.source, self.lineno, self.reason = source, lineno, reason
        super().__init__(f"{source}:{lineno}: {reason}")

    def __reduce__(self):  # so a worker process or Ray task can send it back
        return BadRecord, (self.source, self.lineno, self.reason)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM that a command stopped cleanly for; the message says what was kept."""


class UsageError(TweetkitError):
    """Flags that cannot work together (an output that is also an input): exit status 2,
    like click's own usage errors, raised from the core without importing click."""

    exit_code = 2


class ConfigError(TweetkitError):
    """Inconsistent options or a missing/unusable model, tokenizer or file."""
