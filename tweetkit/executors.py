"""Where the tasks of a many-file job run: this process, local worker processes, or Ray.

A task is a plain function of one picklable argument that returns a small picklable
result (counts, not data: data goes through files).  `Executor.map(fn, items)` runs
`fn` on every item and returns the results in the order of `items`, so a job's code is
the same whatever runs it.  Ray is an optional extra (`pip install 'tweetkit[ray]'`);
on a cluster, every path a task reads or writes must be on storage all nodes see.
"""

from __future__ import annotations

import collections
import multiprocessing
import multiprocessing.connection
from collections.abc import Callable, Iterable
from typing import Any

from tweetkit.errors import ConfigError, TweetkitError


class TaskDied(TweetkitError):
    """A task's process died (killed, out of memory) on every try."""


def _run_in_child(fn: Callable[[Any], Any], item: Any, writer) -> None:
    try:
        writer.send((True, fn(item)))
    except BaseException as exc:  # sent back and raised by the parent: a BadRecord names its file and line
        writer.send((False, exc))


class LocalExecutor:
    """`workers` processes of this machine (1: in this process, no pool).  Each task runs
    in a process of its own, forked for it: its memory goes back to the system when it
    ends, so peak memory is one task's, not the largest task's times the worker count;
    and a task whose process dies (SIGKILL, out of memory) is run again, up to `tries`
    times in all (tasks write their results atomically, so a rerun starts clean)."""

    def __init__(self, workers: int = 1, tries: int = 3):
        self.workers, self.tries = workers, tries

    def describe(self) -> str:
        return f"{self.workers} local process{'es' if self.workers > 1 else ''}"

    def map(self, fn: Callable[[Any], Any], items: Iterable) -> list:
        items = list(items)
        if self.workers <= 1 or len(items) <= 1:
            return [fn(item) for item in items]
        context = multiprocessing.get_context("fork")
        results: list = [None] * len(items)
        tries = [0] * len(items)
        waiting, running = collections.deque(range(len(items))), {}
        try:
            self._run(fn, items, results, tries, waiting, running, context)
        finally:  # on an error, the other tasks stop too
            for _, process in running.values():
                process.kill()
                process.join()
        return results

    def _run(self, fn, items, results, tries, waiting, running, context) -> None:
        while waiting or running:
            while waiting and len(running) < self.workers:
                index = waiting.popleft()
                tries[index] += 1
                reader, writer = context.Pipe(duplex=False)
                process = context.Process(target=_run_in_child, args=(fn, items[index], writer), daemon=True)
                process.start()
                writer.close()  # the child holds the only writer: its death reads as end of file
                running[reader] = (index, process)
            for reader in multiprocessing.connection.wait(list(running)):
                index, process = running.pop(reader)
                try:
                    ok, result = reader.recv()
                except EOFError:  # died without an answer
                    process.join()
                    if tries[index] >= self.tries:
                        raise TaskDied(f"a task died {tries[index]} times (exit status {process.exitcode})") from None
                    waiting.append(index)
                    continue
                finally:
                    reader.close()
                process.join()
                if not ok:
                    raise result
                results[index] = result

    def close(self) -> None:
        pass


def _apply(fn: Callable[[Any], Any], item: Any) -> Any:
    """A task on Ray: a plain function, whatever callable `fn` is."""
    return fn(item)


class RayExecutor:
    """Tasks as Ray remote functions: `address` "local" starts a Ray instance on this
    machine with `workers` CPUs; "auto" joins the running cluster; else a cluster address."""

    def __init__(self, address: str, workers: int = 1, tries: int = 3):
        self.tries = tries
        try:
            import ray
        except ImportError:
            raise ConfigError("--ray needs Ray: pip install 'tweetkit[ray]'") from None
        self.ray, self.address = ray, address
        self.started = not ray.is_initialized()
        if self.started:
            kwargs: dict = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
            if address == "local":
                kwargs["num_cpus"] = workers
            else:
                kwargs["address"] = address
            try:
                ray.init(**kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise ConfigError(f"--ray {address}: {str(exc).splitlines()[0]}") from None

    def describe(self) -> str:
        cpus = int(self.ray.cluster_resources().get("CPU", 0))
        return f"Ray ({self.address}, {cpus} CPUs)"

    def map(self, fn: Callable[[Any], Any], items: Iterable) -> list:
        # A task whose worker process dies is rerun by Ray itself (max_retries); a task
        # that raises is not (retry_exceptions is off): a bad record fails the job.
        remote = self.ray.remote(num_cpus=1, max_retries=self.tries - 1)(_apply)
        refs = [remote.remote(fn, item) for item in items]
        try:
            return self.ray.get(refs)
        except self.ray.exceptions.RayTaskError as exc:
            # Re-raise the task's own exception: a BadRecord names its file and line.
            raise (getattr(exc, "cause", None) or exc) from None

    def close(self) -> None:
        if self.started:
            self.ray.shutdown()


def make_executor(workers: int, ray_address: str | None):
    return RayExecutor(ray_address, workers) if ray_address else LocalExecutor(workers)
