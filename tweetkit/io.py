"""Streaming JSONL in and out, shared by every data command.

A data command is a *transform*: a callable that takes a list of parsed records
(dicts whose `--field` is known to be a string) and returns, for each, either the
record to write or a `Drop(reason)`.  Everything else lives here: reading files,
stdin and .gz, the one path of a bad line (`--on-error fail|skip`, the rejects file),
the dropped file, order-preserving worker processes, progress and the summary.  A line
becomes a record, or the reason it is bad, in tweetkit.records.

Nothing is lost silently: every input line is written, dropped for a counted
reason (and optionally written to `--dropped`), or rejected for a counted reason
(and optionally written, byte for byte, to `--rejects`).
"""

from __future__ import annotations

import gzip
import multiprocessing
import os
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import IO, NamedTuple

from tweetkit.errors import BadRecord, ConfigError, UsageError
from tweetkit.records import bad_reason_key, dumps, parse_record

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
    """The flags every data command shares (see options.data_options)."""

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


class BadLines:
    """The one path of a bad line: under --on-error fail it stops the command, named by file
    and line; under skip it is counted by reason and written, byte for byte, to --rejects."""

    def __init__(self, options: StreamOptions, counts: Counts):
        self.fail, self.counts = options.on_error == "fail", counts
        self.rejects = open_output(options.rejects) if options.rejects else None

    def __call__(self, source: str, lineno: int, raw: bytes, reason: str) -> None:
        if self.fail:
            raise BadRecord(source, lineno, reason) from None
        self.counts.rejected[bad_reason_key(reason)] += 1
        if self.rejects is not None:
            self.rejects.write(raw)

    def close(self) -> None:
        if self.rejects is not None:
            self.rejects.close()


def _progress_bar(command: str, options: StreamOptions):
    from tqdm import tqdm

    disable = not options.progress or options.quiet
    return tqdm(unit=" rec", file=sys.stderr, disable=disable, dynamic_ncols=True, desc=command)


def _write_outcomes(name: str, outcomes: list, counts: Counts, out, routed: dict, dropped, bad: BadLines) -> None:
    """Each line's outcome to its stream, counted; a bad line goes the one bad-line path."""
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
            bad(name, lineno, payload, reason)


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
    counts = Counts()
    out = open_output(options.output) if not routes else None
    routed = {name: open_output(path) for name, path in (routes or {}).items()}
    bad = BadLines(options, counts)
    dropped = open_output(options.dropped) if options.dropped else None
    bar = _progress_bar(command, options)
    pool = None
    try:
        pool, results = _process(options, make_transform, text_field, field_type, batch_lines)
        for name, outcomes in results:
            _write_outcomes(name, outcomes, counts, out, routed, dropped, bad)
            bar.update(len(outcomes))
        if out is not None:
            out.flush()
    finally:
        bar.close()
        if pool is not None:
            pool.terminate()
        bad.close()
        for stream in (dropped, *routed.values()):
            if stream is not None:
                stream.close()
        if out is not None and out is not sys.stdout.buffer:
            out.close()
    report_counts(command, options, counts)
    return counts


def report_counts(command: str, options: StreamOptions, counts: Counts, kept_label: str = "written") -> None:
    """The summary on stderr (with --progress, or when lines were rejected)."""
    if not options.quiet and (options.progress or counts.rejected):
        print(counts.summary(command, kept_label), file=sys.stderr)
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
    counts = Counts()
    bad = BadLines(options, counts)
    bar = _progress_bar(command, options)
    try:
        for name, batch in read_batches(options.inputs):
            for lineno, raw in batch:
                counts.read += 1
                try:
                    record = parse_record(raw, text_field, field_type, required)
                    if validate is not None:
                        validate(record)
                except ValueError as exc:
                    bad(name, lineno, raw, str(exc))
                    continue
                counts.written += 1
                yield record
            bar.update(len(batch))
    finally:
        bar.close()
        bad.close()
    report_counts(command, options, counts, kept_label="used")
