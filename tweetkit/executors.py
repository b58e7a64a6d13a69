"""Where the tasks of a many-file job run: this process, local worker processes, or Ray.

A task is a plain function of one picklable argument that returns a small picklable
result (counts, not data: data goes through files).  `Executor.map(fn, items)` runs
`fn` on every item and returns the results in the order of `items`, so a job's code is
the same whatever runs it.  Ray is an optional extra (`pip install 'tweetkit[ray]'`);
on a cluster, every path a task reads or writes must be on storage all nodes see.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Callable, Iterable
from typing import Any

from tweetkit.errors import ConfigError


class LocalExecutor:
    """`workers` processes of this machine (1: in this process, no pool)."""

    def __init__(self, workers: int = 1):
        self.workers = workers

    def describe(self) -> str:
        return f"{self.workers} local process{'es' if self.workers > 1 else ''}"

    def map(self, fn: Callable[[Any], Any], items: Iterable) -> list:
        items = list(items)
        if self.workers <= 1 or len(items) <= 1:
            return [fn(item) for item in items]
        context = multiprocessing.get_context("fork" if sys.platform != "win32" else "spawn")
        # maxtasksperchild=1: a task's memory goes back to the system when it ends, so
        # peak memory is one task's, not the largest task's times the worker count.
        with context.Pool(min(self.workers, len(items)), maxtasksperchild=1) as pool:
            return pool.map(fn, items, chunksize=1)

    def close(self) -> None:
        pass


class RayExecutor:
    """Tasks as Ray remote functions: `address` "local" starts a Ray instance on this
    machine with `workers` CPUs; "auto" joins the running cluster; else a cluster address."""

    def __init__(self, address: str, workers: int = 1):
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
        remote = self.ray.remote(num_cpus=1, max_retries=0)(fn)
        refs = [remote.remote(item) for item in items]
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
