"""Streaming JSONL in and out, shared by every data command.

A data command is a *transform*: a callable that takes a list of parsed records
(dicts whose `--field` is known to be a string) and returns, for each, either the
record to write or a `Drop(reason)`.  Everything else lives here: reading files,
stdin and .gz, classifying bad lines, `--on-error fail|skip`, the rejects and
dropped files, order-preserving worker processes, progress and the summary.

Nothing is lost silently: every input line is written, dropped for a counted
reason (and optionally written to `--dropped`), or rejected for a counted reason
(and optionally written, byte for byte, to `--rejects`).
"""

from __future__ import annotations

import gzip
import json
import multiprocessing
import os
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, Any, NamedTuple

import orjson

from tweetkit.errors import BadRecord, ConfigError, UsageError

STDIN = "-"
BATCH_LINES = 512  # lines per unit of work: big enough to amortise IPC, small enough for latency


class Drop(NamedTuple):
    """A transform's answer for a record it does not keep."""

    reason: str
    info: dict | None = None  # extra fields for the --dropped file (e.g. dup_of)
    write: bool = True  # False: count only (records another process is responsible for)


class Routed(NamedTuple):
    """A transform's answer for a record to write to a named output (see run_stream's routes)."""

    route: str
    record: dict


Transform = Callable[[list], list]  # list[dict] -> list[dict | Drop | Routed]


# --- JSON ------------------------------------------------------------------------------


class Unencodable(ValueError):
    """Text that cannot be written back as UTF-8: a lone surrogate escape (\\ud800)."""


def loads(raw: bytes) -> Any:
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        # orjson refuses integers beyond 64 bits and NaN/Infinity, which Python's json
        # (and many tweet dumps) accept; only lines neither parser reads are bad.
        record = json.loads(raw)
        # It also refuses lone surrogate escapes, which Twitter API dumps do contain and
        # json accepts: such a string cannot be encoded again, so the record is bad here
        # rather than a crash when it is written.
        try:
            json.dumps(record, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise Unencodable("unencodable text (a lone surrogate escape)") from None
        return record


def dumps(record: Any) -> bytes:
    try:
        return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
    except TypeError:  # e.g. an integer beyond 64 bits, read by the json fallback
        return json.dumps(record, ensure_ascii=False).encode("utf-8") + b"\n"


def parse_record(raw: bytes, text_field: str | None, field_type: type = str, required: Sequence[str] = ()) -> dict:
    """Parse one line into a record, or raise ValueError with the reason it is bad.

    The text field must hold a string (field_type=list: a list of strings, as the
    `tokens` of tagging data); `required` names further fields that must exist."""
    try:
        record = loads(raw)
    except Unencodable:
        raise
    except ValueError:
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ValueError(f"invalid UTF-8 at byte {exc.start}") from None
        raise ValueError("invalid JSON") from None
    if not isinstance(record, dict):
        raise ValueError(f"not a JSON object (got {type(record).__name__})")
    if text_field is not None:
        if text_field not in record:
            raise ValueError(f"missing field '{text_field}'")
        value = record[text_field]
        if field_type is list:
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise ValueError(f"field '{text_field}' is not a list of strings")
        elif not isinstance(value, str):
            raise ValueError(f"field '{text_field}' is not a string")
    for name in required:
        if name not in record:
            raise ValueError(f"missing field '{name}'")
    return record


def bad_reason_key(reason: str) -> str:
    """The counter key of a reason: the detail after a parenthesis or 'at byte' is dropped."""
    return reason.split(" (")[0].split(" at byte")[0]


# --- reading ---------------------------------------------------------------------------


def _open_binary(path: str) -> IO[bytes]:
    if path == STDIN:
        stream: IO[bytes] = sys.stdin.buffer
    else:
        try:
            stream = open(path, "rb")
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from None
    # Sniff the gzip magic rather than trusting the name, so `zcat`-less pipes and
    # misnamed files both work.
    peek = stream.peek(2)[:2] if hasattr(stream, "peek") else b""
    if peek == b"\x1f\x8b":
        return gzip.GzipFile(fileobj=stream)  # type: ignore[return-value]
    return stream


def source_name(path: str) -> str:
    return "<stdin>" if path == STDIN else path


def read_batches(paths: Sequence[str], batch_lines: int = BATCH_LINES) -> Iterator[tuple[str, list]]:
    """Yield (source name, [(line number, raw bytes), ...]) batches; blank lines are skipped."""
    for path in paths or [STDIN]:
        name = source_name(path)
        stream = _open_binary(path)
        batch: list = []
        try:
            for lineno, raw in enumerate(stream, 1):
                if not raw.strip():
                    continue
                batch.append((lineno, raw))
                if len(batch) >= batch_lines:
                    yield name, batch
                    batch = []
        except (OSError, EOFError) as exc:  # truncated or corrupt .gz
            raise ConfigError(f"{name}: cannot read: {exc}") from None
        finally:
            if path != STDIN:
                stream.close()
        if batch:
            yield name, batch


# --- processing ------------------------------------------------------------------------

# Outcome kinds of one input line, in input order.
KEPT, DROPPED, BAD = 0, 1, 2


def process_batch(transform: Transform, text_field: str | None, batch: list, field_type: type = str) -> list[tuple]:
    """Parse and transform one batch; return (kind, lineno, payload, reason) per line.

    Payloads are serialised bytes so that worker processes send back compact strings.
    """
    outcomes: list = [None] * len(batch)
    good_index, good_records = [], []
    for i, (lineno, raw) in enumerate(batch):
        try:
            good_records.append(parse_record(raw, text_field, field_type))
            good_index.append(i)
        except ValueError as exc:
            outcomes[i] = (BAD, lineno, raw, str(exc))
    if good_records:
        results = transform(good_records)
        for i, record, result in zip(good_index, good_records, results):
            lineno = batch[i][0]
            if isinstance(result, Drop) and not result.write:
                outcomes[i] = (DROPPED, lineno, None, result.reason)
            elif isinstance(result, Drop):
                dropped = dict(record)
                dropped["reason"] = result.reason
                if result.info:
                    dropped.update(result.info)
                outcomes[i] = (DROPPED, lineno, dumps(dropped), result.reason)
            elif isinstance(result, Routed):
                outcomes[i] = (KEPT, lineno, dumps(result.record), result.route)
            else:
                outcomes[i] = (KEPT, lineno, dumps(result), None)
    return outcomes


_worker: tuple = ()  # (transform, text field, field type) of this worker process


def _worker_init(make_transform: Callable[[], Transform], text_field: str | None, field_type: type) -> None:
    global _worker
    _worker = (make_transform(), text_field, field_type)


def _worker_run(item: tuple[str, list]) -> tuple[str, list]:
    name, batch = item
    transform, text_field, field_type = _worker
    return name, process_batch(transform, text_field, batch, field_type)


@dataclass
class StreamOptions:
    """The flags every data command shares (see cli.data_options)."""

    inputs: Sequence[str] = ()
    output: str = STDIN
    field: str = "text"
    on_error: str = "fail"  # fail: stop at the first bad line; skip: count it and go on
    rejects: str | None = None  # bad lines, byte for byte
    dropped: str | None = None  # records a command drops, with their reason
    progress: bool = False
    quiet: bool = False
    workers: int = 1
    ray_address: str | None = None  # per-file tasks on Ray (with a directory output)


@dataclass
class Counts:
    read: int = 0
    written: int = 0
    dropped: Counter = field(default_factory=Counter)
    rejected: Counter = field(default_factory=Counter)
    routed: Counter = field(default_factory=Counter)  # written, per named output

    def add(self, other: Counts) -> None:
        self.read += other.read
        self.written += other.written
        for mine, theirs in (
            (self.dropped, other.dropped),
            (self.rejected, other.rejected),
            (self.routed, other.routed),
        ):
            mine.update(theirs)

    def summary(self, command: str, kept_label: str = "written") -> str:
        parts = [f"{self.read:,} read", f"{self.written:,} {kept_label}"]
        for label, counter in (("routed", self.routed), ("dropped", self.dropped), ("rejected", self.rejected)):
            if counter:
                detail = ", ".join(f"{reason}: {n:,}" for reason, n in counter.most_common())
                parts.append(
                    f"{label} ({detail})" if label == "routed" else f"{sum(counter.values()):,} {label} ({detail})"
                )
        return f"tweetkit {command}: " + ", ".join(parts)


# --- outputs -----------------------------------------------------------------------------


def _same_file(a: str, b: str) -> bool:
    if os.path.exists(a) and os.path.exists(b):
        return os.path.samefile(a, b)
    return os.path.realpath(a) == os.path.realpath(b)


def refuse_overlap(inputs: Sequence[str | None], outputs: Sequence[str | None]) -> None:
    """An output that is also an input (or another output) would be emptied before it is
    read: a usage error (exit 2), before anything is opened."""
    inputs = [p for p in inputs if p and p != STDIN]
    outputs = [p for p in outputs if p and p != STDIN]
    for i, out in enumerate(outputs):
        for other in inputs + outputs[:i]:
            if _same_file(out, other):
                role = "an input" if other in inputs else "another output"
                raise UsageError(f"{out} is both {role} and an output: it would be emptied before it is read")


# What a training command writes into its output directory; --overwrite removes exactly
# these, so a directory shared with other files loses nothing else.
RUN_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "chat_template.jinja",
    "tweetkit_train_config.json",
    "tweetkit_model.json",
    "linear_model.safetensors",
    "linear_vocabulary.json",
    "tfidf.joblib",
    "validation_metrics.json",
    "study.db",
    "optimization_history.png",
    "optimization_history.svg",
    "param_importances.png",
    "param_importances.svg",
)
RUN_DIRS = re.compile(r"^(checkpoint|seed|sweep|trial)-[0-9]+(\.partial)?$")


def prepare_output_dir(path: str, resume: bool = False, overwrite: bool = False, remove: bool = True) -> None:
    """Refuse to mix two runs in one directory: a previous run's files would be served
    with (or instead of) the new ones.  --resume continues it, --overwrite removes it."""
    import shutil

    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"-o {path}: exists and is not a directory")
    previous = sorted(
        name for name in (os.listdir(path) if os.path.isdir(path) else []) if name in RUN_FILES or RUN_DIRS.match(name)
    )
    if not previous or resume:
        return
    if overwrite and not remove:
        return
    if not overwrite:
        shown = ", ".join(previous[:4]) + (", ..." if len(previous) > 4 else "")
        raise UsageError(
            f"-o {path} holds a previous run ({shown}): add --overwrite to replace it, or --resume to continue it"
        )
    for name in previous:
        target = os.path.join(path, name)
        shutil.rmtree(target) if os.path.isdir(target) else os.remove(target)


def open_output(path: str | None) -> IO[bytes]:
    if path is None or path == STDIN:
        return sys.stdout.buffer
    try:
        if path.endswith(".gz"):
            return gzip.open(path, "wb")  # type: ignore[return-value]
        return open(path, "wb")
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None


def _process(options: StreamOptions, make_transform, text_field, field_type, batch_lines: int) -> tuple:
    """(pool or None, iterator of (source, outcomes)) over the input batches, in order."""
    batches = read_batches(options.inputs, batch_lines)
    if options.workers > 1:
        context = multiprocessing.get_context("fork" if sys.platform != "win32" else "spawn")
        pool = context.Pool(options.workers, _worker_init, (make_transform, text_field, field_type))
        # imap keeps input order; a few batches in flight per worker keeps them busy.
        return pool, pool.imap(_worker_run, batches, chunksize=1)
    transform = make_transform()
    return None, ((name, process_batch(transform, text_field, batch, field_type)) for name, batch in batches)


def _write_outcomes(
    name: str, outcomes: list, counts: Counts, options: StreamOptions, out, routed: dict, dropped, rejects
) -> None:
    """Each line's outcome to its stream, counted; a bad line under --on-error fail stops here."""
    counts.read += len(outcomes)
    for kind, lineno, payload, reason in outcomes:
        if kind == KEPT:
            if reason is None:
                out.write(payload)
            else:
                routed[reason].write(payload)
                counts.routed[reason] += 1
            counts.written += 1
        elif kind == DROPPED:
            counts.dropped[reason] += 1
            if dropped is not None and payload is not None:
                dropped.write(payload)
        else:
            if options.on_error == "fail":
                raise BadRecord(name, lineno, reason)
            counts.rejected[bad_reason_key(reason)] += 1
            if rejects is not None:
                rejects.write(payload)


def run_stream(
    command: str,
    options: StreamOptions,
    make_transform: Callable[[], Transform],
    text_field: str | None = "text",
    routes: dict[str, str] | None = None,
    field_type: type = str,
    batch_lines: int = BATCH_LINES,
) -> Counts:
    """Run a transform over the inputs and write its output; return the counts.

    `make_transform` is called once per process (so a model loads once per worker)
    and must be picklable when `options.workers > 1`.  With `routes` (name -> path),
    records the transform returns as Routed(name, record) go to that path.  The
    transform sees `batch_lines` lines per call (predict sorts each call's lines by length).
    """
    from tqdm import tqdm

    counts = Counts()
    out = open_output(options.output) if not routes else None
    routed = {name: open_output(path) for name, path in (routes or {}).items()}
    rejects = open_output(options.rejects) if options.rejects else None
    dropped = open_output(options.dropped) if options.dropped else None
    bar = tqdm(
        unit=" rec",
        file=sys.stderr,
        disable=not options.progress or options.quiet,
        dynamic_ncols=True,
        desc=command,
    )
    pool = None
    try:
        pool, results = _process(options, make_transform, text_field, field_type, batch_lines)
        for name, outcomes in results:
            _write_outcomes(name, outcomes, counts, options, out, routed, dropped, rejects)
            bar.update(len(outcomes))
        if out is not None:
            out.flush()
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
        for stream in (rejects, dropped, *routed.values()):
            if stream is not None:
                stream.close()
        if out is not None and out is not sys.stdout.buffer:
            out.close()
    report_counts(command, options, counts)
    return counts


def stderr_console(**options):
    """A rich Console on stderr.  When stderr's reader goes away, rich exits with 1; this one
    raises BrokenPipeError, so the command ends as on a closed stdout: quietly, with 141."""
    from rich.console import Console

    class PipeAwareConsole(Console):
        def on_broken_pipe(self) -> None:
            raise BrokenPipeError()

    return PipeAwareConsole(file=sys.stderr, **options)


def report_counts(command: str, options: StreamOptions, counts: Counts) -> None:
    """The summary on stderr (with --progress, or when lines were rejected)."""
    if not options.quiet and (options.progress or counts.rejected):
        print(counts.summary(command), file=sys.stderr)
    if not options.quiet and counts.dropped and not counts.written:
        # A filter that keeps nothing is almost always a mistyped setting: say so even
        # without --progress.
        reasons = ", ".join(f"{reason}: {n:,}" for reason, n in counts.dropped.most_common())
        print(f"tweetkit {command}: warning: every record was dropped ({reasons})", file=sys.stderr)


def consume_records(
    command: str,
    options: StreamOptions,
    text_field: str | None = "text",
    field_type: type = str,
    required: Sequence[str] = (),
    validate: Callable[[dict], None] | None = None,
) -> Iterator[dict]:
    """Yield the good records of the inputs, for commands that read a corpus rather than
    transform it (stats, train-bpe, finetune); bad lines follow --on-error like everywhere
    else.  `validate(record)` raises ValueError for a record the command cannot use (a
    label of the wrong type): it counts as a bad line, named by file and line."""
    from tqdm import tqdm

    counts = Counts()
    rejects = open_output(options.rejects) if options.rejects else None
    bar = tqdm(
        unit=" rec", file=sys.stderr, disable=not options.progress or options.quiet, dynamic_ncols=True, desc=command
    )
    try:
        for name, batch in read_batches(options.inputs):
            for lineno, raw in batch:
                counts.read += 1
                try:
                    record = parse_record(raw, text_field, field_type, required)
                    if validate is not None:
                        validate(record)
                except ValueError as exc:
                    if options.on_error == "fail":
                        raise BadRecord(name, lineno, str(exc)) from None
                    counts.rejected[bad_reason_key(str(exc))] += 1
                    if rejects is not None:
                        rejects.write(raw)
                    continue
                counts.written += 1
                yield record
            bar.update(len(batch))
    finally:
        bar.close()
        if rejects is not None:
            rejects.close()
    if not options.quiet and (options.progress or counts.rejected):
        print(counts.summary(command, kept_label="used"), file=sys.stderr)
