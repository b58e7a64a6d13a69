"""Many input files, one output per input under `-o DIR/`: a whole dump directory in one
command, each file a task on local worker processes or Ray (tweetkit/executors.py).

`-o` names a directory when it ends with "/" or is an existing directory; each output
is named like its input (`part-007.jsonl.gz` -> `DIR/part-007.jsonl.gz`, compressed
like it), and --dropped / --rejects are directories too.  Each file is written under a
temporary name and renamed when complete, so a killed run leaves no half file behind
a finished-looking name.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable

from tweetkit.errors import UsageError
from tweetkit.io import STDIN, Counts, StreamOptions, refuse_overlap, report_counts, run_stream


def wants_directory(path: str | None) -> bool:
    return bool(path) and path != STDIN and (path.endswith(os.sep) or os.path.isdir(path))


def end_with_slash(output: str) -> str:
    """The hint of errors about a file -o where a directory is needed."""
    return f"end -o with / for one output per input file (-o {output.rstrip(os.sep) if output != STDIN else 'DIR'}/)"


def paths_in(directory: str, inputs: tuple[str, ...], flag: str) -> tuple[str, ...]:
    """DIR/<input's name> for every input; two inputs with one name would collide."""
    names = [os.path.basename(path) for path in inputs]
    seen: dict[str, str] = {}
    for path, name in zip(inputs, names):
        if name in seen:
            raise UsageError(f"{flag} {directory}: {seen[name]} and {path} would both be written to {name}")
        seen[name] = path
    os.makedirs(directory, exist_ok=True)
    return tuple(os.path.join(directory, name) for name in names)


def partial_path(path: str) -> str:
    head, tail = os.path.split(path)
    return os.path.join(head, ".partial-" + tail)


@dataclasses.dataclass(frozen=True)
class FileOutputs:
    """Where each input's results go: output, and --dropped / --rejects if asked."""

    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    dropped: tuple[str, ...] | None
    rejects: tuple[str, ...] | None

    @classmethod
    def of(cls, stream: StreamOptions) -> FileOutputs:
        """Check a directory-mode command line and name every file it writes."""
        inputs = tuple(stream.inputs)
        if not inputs or STDIN in inputs:
            raise UsageError(f"-o {stream.output}: a directory output needs input files, not stdin")
        for flag, path in (("--dropped", stream.dropped), ("--rejects", stream.rejects)):
            if path and not wants_directory(path):
                raise UsageError(f"{flag} {path}: with -o DIR/, give a directory here too (end it with /)")
        outputs = paths_in(stream.output, inputs, "-o")
        dropped = paths_in(stream.dropped, inputs, "--dropped") if stream.dropped else None
        rejects = paths_in(stream.rejects, inputs, "--rejects") if stream.rejects else None
        refuse_overlap(inputs, [*outputs, *(dropped or ()), *(rejects or ())])
        return cls(inputs, outputs, dropped, rejects)

    def options_for(self, index: int, stream: StreamOptions) -> StreamOptions:
        """One file's stream options, writing under temporary names (see `commit`)."""
        return dataclasses.replace(
            stream,
            inputs=[self.inputs[index]],
            output=partial_path(self.outputs[index]),
            dropped=partial_path(self.dropped[index]) if self.dropped else None,
            rejects=partial_path(self.rejects[index]) if self.rejects else None,
            quiet=True,
            progress=False,
            workers=1,
        )

    def commit(self, index: int) -> None:
        for paths in (self.outputs, self.dropped, self.rejects):
            if paths:
                os.replace(partial_path(paths[index]), paths[index])


@dataclasses.dataclass(frozen=True)
class FileTask:
    command: str
    stream: StreamOptions
    files: FileOutputs
    make_transform: Callable
    text_field: str | None

    def __call__(self, index: int) -> Counts:
        options = self.files.options_for(index, self.stream)
        try:
            counts = run_stream(self.command, options, self.make_transform, self.text_field)
        except BaseException:
            for path in (options.output, options.dropped, options.rejects):
                if path and os.path.exists(path):
                    os.remove(path)
            raise
        self.files.commit(index)
        return counts


def _run_file(args: tuple[FileTask, int]) -> Counts:
    task, index = args
    return task(index)


def run_per_file(command: str, stream: StreamOptions, make_transform: Callable, executor, text_field="text") -> Counts:
    """`make_transform`'s step over every input file, each a task of `executor`."""
    files = FileOutputs.of(stream)
    task = FileTask(command, stream, files, make_transform, text_field)
    total = Counts()
    for counts in executor.map(_run_file, [(task, i) for i in range(len(files.inputs))]):
        total.add(counts)
    report_counts(command, stream, total)
    return total


def run_data_command(command: str, stream: StreamOptions, make_transform: Callable, text_field="text") -> Counts:
    """A data command's run: one stream to one output, or with `-o DIR/` one task per file."""
    if not wants_directory(stream.output):
        if stream.ray_address:
            raise UsageError(f"--ray runs one task per input file: {end_with_slash(stream.output)}")
        return run_stream(command, stream, make_transform, text_field)
    from tweetkit.executors import make_executor

    executor = make_executor(stream.workers, stream.ray_address)
    try:
        return run_per_file(command, stream, make_transform, executor, text_field)
    finally:
        executor.close()
