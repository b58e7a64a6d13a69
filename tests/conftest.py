import json
import os
import pathlib
import subprocess
import sys
from dataclasses import dataclass

import click.testing
import pytest

from tweetkit.cli import main

ROOT = pathlib.Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


def shared(relative: str) -> pathlib.Path:
    path = SHARED_DATA / relative
    if not path.exists():
        pytest.skip(f"shared dataset missing: {path}")
    return path


def read_jsonl(path, limit=None):
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            rows.append(json.loads(line))
            if limit and len(rows) >= limit:
                break
    return rows


@dataclass
class Result:
    exit_code: int
    stdout: bytes
    stderr: str

    def records(self):
        return [json.loads(line) for line in self.stdout.splitlines()]


def run_cli(args, stdin: bytes | str = b"") -> Result:
    """Run `tweetkit ARGS` in-process through click's runner, as the entry point does."""
    runner = click.testing.CliRunner()
    if isinstance(stdin, str):
        stdin = stdin.encode("utf-8")
    with runner.isolation(input=stdin) as streams:
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        sys.stdout.flush()
        sys.stderr.flush()
        out, err = streams[0].getvalue(), streams[1].getvalue()
    return Result(code, out, err.decode("utf-8", "replace"))


def run_subprocess(args, stdin: bytes = b"", **kwargs) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "tweetkit", *args], input=stdin, capture_output=True, env=env, **kwargs
    )


def jsonl(*records) -> bytes:
    return b"".join(json.dumps(r, ensure_ascii=False).encode("utf-8") + b"\n" for r in records)
