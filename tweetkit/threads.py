"""How many CPU threads torch may use, decided in one place for every command that runs it.

The order: `--threads N`, else `TWEETKIT_THREADS`, else `OMP_NUM_THREADS` (torchrun sets
it to 1 per worker), else the physical cores this process may run on (os.sched_getaffinity,
so `taskset` and container CPU sets count), shared among the processes a launcher started
on this machine (LOCAL_WORLD_SIZE).

Why the wait policy may matter more than the count: torch's OpenMP threads, between
parallel regions, spin for about 3 ms (GOMP_SPINCOUNT=300000) before they sleep.  Alone that
saves a wake-up in every operation; beside another busy process it burns the cores the other
process's threads are waiting for, and each barrier then waits for a thread the spinners keep
off its core, the likely cause of `pretrain` collapsing beside another busy job on the same
cores; bench/threads.py measures both sides (docs/benchmarks.md).  So the policy follows the situation
(`wait_policy`): threads spin, as libgomp does by default, where tweetkit has the cores to
itself, and sleep at once (OMP_WAIT_POLICY=PASSIVE) where it knows it shares them: several
local processes of a launcher (torchrun's LOCAL_WORLD_SIZE), fewer threads than cores
(--threads, TWEETKIT_THREADS, OMP_NUM_THREADS), or `--shared` / TWEETKIT_SHARED=1.  A policy
the user chose (OMP_WAIT_POLICY, GOMP_SPINCOUNT, or KMP_BLOCKTIME for Intel's runtime) wins.
The OpenMP runtime reads the variable when it loads, i.e. when torch is first imported: the
commands import torch lazily, after this ran.  The settings are exported, so child processes
(torchrun workers, sweep workers, a pipeline's later tweetkit) start with the same ones.
"""

from __future__ import annotations

import os
import sys

from tweetkit.errors import UsageError

ENV = "TWEETKIT_THREADS"
SHARED_ENV = "TWEETKIT_SHARED"
# Variables with which a user chose how OpenMP threads wait; then tweetkit leaves it alone.
WAIT_CHOICES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")
# Marks an OMP_WAIT_POLICY tweetkit exported (a parent tweetkit's), so a child decides anew.
OURS = "TWEETKIT_WAIT_POLICY"


def _count(text: str, name: str) -> int:
    text = text.strip()
    if not text.isdigit() or int(text) < 1:
        raise UsageError(f"{name}={text!r}: expected a whole number of threads >= 1")
    return int(text)


def available_cpus() -> list[int]:
    """The CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def physical_cores(cpus: list[int]) -> int:
    """Distinct (package, core) pairs among `cpus`: hyper-threads of one core count once,
    as torch's own default does; the CPU count where the topology is not readable."""
    cores = set()
    for cpu in cpus:
        base = f"/sys/devices/system/cpu/cpu{cpu}/topology/"
        try:
            with open(base + "physical_package_id") as package, open(base + "core_id") as core:
                cores.add((package.read().strip(), core.read().strip()))
        except OSError:
            return len(cpus)
    return len(cores) or len(cpus)


def resolve(requested: int | None = None, environ=None) -> tuple[int, str]:
    """(threads, where the number came from)."""
    environ = os.environ if environ is None else environ
    if requested is not None:
        return requested, "--threads"
    if environ.get(ENV, "").strip():
        return _count(environ[ENV], ENV), ENV
    omp = environ.get("OMP_NUM_THREADS", "").split(",")[0].strip()  # "4,2" is a nested list: the outer level
    if omp.isdigit() and int(omp) > 0:
        return int(omp), "OMP_NUM_THREADS"
    local = environ.get("LOCAL_WORLD_SIZE", "1").strip()
    processes = int(local) if local.isdigit() and int(local) > 0 else 1
    return max(1, physical_cores(available_cpus()) // processes), "cores"


def wait_policy(threads: int, shared: bool = False, environ=None) -> str | None:
    """PASSIVE where tweetkit knows it shares the cores, None (libgomp's spin) where it has
    them to itself; None too where the user chose a policy (see the module's docstring)."""
    environ = os.environ if environ is None else environ
    if any(name in environ for name in WAIT_CHOICES) and OURS not in environ:
        return None  # the user's choice
    local = environ.get("LOCAL_WORLD_SIZE", "1").strip()
    sharing = (
        shared
        or environ.get(SHARED_ENV, "").strip() not in ("", "0")
        or (local.isdigit() and int(local) > 1)
        or threads < physical_cores(available_cpus())
    )
    return "PASSIVE" if sharing else None


_chosen: int | None = None  # the count apply() settled on, for configure_torch()


def apply(requested: int | None = None, shared: bool = False) -> int:
    """Resolve the thread count and the wait policy and export them for this process's
    OpenMP runtime and its children; returns the count.

    Nothing imports torch here (a linear model's `predict` never needs it): torch's pools
    are set by configure_torch() where a command starts to use it, or now if it is loaded."""
    global _chosen
    threads, _ = resolve(requested)
    policy = wait_policy(threads, shared)
    os.environ.update({ENV: str(threads), "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)})
    if OURS in os.environ or not any(name in os.environ for name in WAIT_CHOICES):
        os.environ.pop("OMP_WAIT_POLICY", None)
        os.environ.pop(OURS, None)
        if policy:
            os.environ.update({"OMP_WAIT_POLICY": policy, OURS: policy})
    if shared:
        os.environ[SHARED_ENV] = "1"  # children share as their parent does
    _chosen = threads
    if "torch" in sys.modules:
        configure_torch()
    return threads


def chosen() -> int | None:
    """The count apply() settled on (None before it): for a runtime with its own pool (ONNX Runtime)."""
    return _chosen


def configure_torch() -> None:
    """Set torch's intra- and inter-op pools to the count apply() chose (no-op before it).
    Torch reads OMP_NUM_THREADS as it loads, but caps it at the CPU count: an explicit
    --threads above it is honoured only this way.  Called where a command starts torch work:
    loading a model (modeling.load_for_inference, embeddings.Encoder, evaluate --mlm) and
    training (train.distributed.setup)."""
    if _chosen is None:
        return
    import torch

    torch.set_num_threads(_chosen)
    try:  # legal once, and only before any inter-op work has run
        torch.set_num_interop_threads(_chosen)
    except RuntimeError:
        pass
