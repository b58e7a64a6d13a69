"""The training loop shared by pretrain and finetune.

A task supplies the data and the loss; this loop owns everything else: global batch
and gradient accumulation, DDP, precision, AdamW with warm-up and linear decay,
clipping, metrics, checkpoints and resume.

Determinism: the data order is a function of (seed, epoch), a sequence's masking or
sampling a function of (seed, epoch, index), and dropout is reseeded every step from
(seed, step, rank).  So a run resumed from a checkpoint continues exactly as the
uninterrupted run would, and the global batch (hence the loss) does not depend on
the number of processes.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import time
from contextlib import closing, nullcontext
from dataclasses import dataclass
from typing import Protocol

import torch

from tweetkit.errors import ConfigError, Interrupted, log_to_stderr
from tweetkit.modeling import bf16_warning, precision_context
from tweetkit.records import emit_json
from tweetkit.train import checkpoint
from tweetkit.train.config import TrainConfig
from tweetkit.train.distributed import Dist


class Task(Protocol):
    def num_examples(self) -> int: ...

    def collate(self, indices: list[int], epoch: int) -> dict: ...  # a micro-batch, deterministic

    def loss(self, model, batch: dict) -> tuple[torch.Tensor, int]: ...  # (sum of losses, how many)

    def evaluate(self, module) -> dict: ...  # validation metrics; {} when there is no validation set

    def wrap(self, model) -> torch.nn.Module: ...  # the module whose forward the loss calls


def lr_at(step: int, total: int, warmup: int, peak: float) -> float:
    """Linear warm-up to `peak`, then linear decay to 0 at `total` (a pure function of the step)."""
    if step < warmup:
        return peak * (step + 1) / warmup
    return peak * max(0.0, (total - step) / max(1, total - warmup))


def lr_for(step: int, total: int, config: TrainConfig) -> float:
    """The learning rate of a step.  With a head warm-up of R steps, steps [0, R) and [R, total)
    are two runs of the schedule, each with its own warm-up and decay (the full model's
    phase starts from a low learning rate, as a fresh fine-tuning would)."""
    restart = min(config.head_warmup_steps, total)
    if restart and step >= restart:
        step, total = step - restart, total - restart
    elif restart:
        total = restart
    warmup = config.warmup_steps or int(config.warmup_ratio * total)
    return lr_at(step, total, warmup, config.lr)


def make_optimizer(model, config: TrainConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            (no_decay if param.ndim < 2 or "LayerNorm" in name or "layer_norm" in name else decay).append(param)
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    try:  # the fused kernel: one pass over all parameters, not a kernel launch per tensor group
        return torch.optim.AdamW(groups, lr=config.lr, betas=tuple(config.betas), eps=config.eps, fused=True)
    except (RuntimeError, TypeError, ValueError):  # a device or dtype without the fused kernel
        return torch.optim.AdamW(groups, lr=config.lr, betas=tuple(config.betas), eps=config.eps)


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=generator).tolist()


def autocast(config: TrainConfig, device: torch.device):
    """The forward passes' precision, in training and in validation alike."""
    return precision_context(config.precision, device)


def emit(record: dict) -> None:
    # Scalars only: per-class tables and confusion matrices belong to `evaluate`.
    emit_json({k: v for k, v in record.items() if isinstance(v, (int, float, str))})


class InterruptGuard:
    """Turns the first Ctrl-C (SIGINT) or SIGTERM into a request the loop honours at the
    next step boundary, where weights, optimizer and step agree and a checkpoint can be
    written.  A second signal interrupts at once, except while the checkpoint is written and
    under torchrun: there each worker gets the terminal's SIGINT and then torchrun's own for
    one Ctrl-C, and the second must not kill it mid-step (torchrun kills workers that
    outlast its own deadline)."""

    def __init__(self):
        self.requested, self.saving, self.previous = False, False, {}
        self.under_launcher = "LOCAL_RANK" in os.environ

    def __enter__(self):
        try:
            for sig in (signal.SIGINT, signal.SIGTERM):
                # A signal this process was started ignoring (a background job's SIGINT, nohup) stays ignored.
                if signal.getsignal(sig) != signal.SIG_IGN:
                    self.previous[sig] = signal.signal(sig, self.handle)
        except ValueError:  # not the main thread: leave signals alone
            self.previous = {}
        return self

    def handle(self, signum, frame):
        if not self.requested:
            self.requested = True
            if os.environ.get("RANK", "0") == "0":  # under torchrun the first process speaks for the job
                # os.write, not print: the handler may run while the main thread is inside a write to stderr.
                again = "" if self.under_launcher else " (Ctrl-C again: stop at once, without one)"
                os.write(2, f"tweetkit: stopping at the end of this step, with a checkpoint{again}\n".encode())
            return
        if self.saving or self.under_launcher:
            return
        self.__exit__()
        signal.raise_signal(signum)  # the previous behaviour: KeyboardInterrupt, or the default action

    def __exit__(self, *exc):
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)
        self.previous = {}


class Batches:
    """The micro-batches of each step, a pure function of the step (so resuming and
    prefetching cannot change them).  With `prefetch`, a thread builds the next step's
    while the current one runs: on a GPU the Python collation would otherwise leave the
    device idle; the thread gets the interpreter while the main one waits for the device.
    Off on the CPU, where the collation would only take cores from the step itself."""

    def __init__(self, task, config: TrainConfig, dist: Dist, steps_per_epoch: int, micro: int, prefetch: bool):
        self.task, self.config, self.dist = task, config, dist
        self.steps_per_epoch, self.micro = steps_per_epoch, micro
        self.orders: dict[int, list[int]] = {}
        self.pool = self.pending = None
        if prefetch:
            from concurrent.futures import ThreadPoolExecutor

            self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tweetkit-collate")

    def order(self, epoch: int) -> list[int]:
        if epoch not in self.orders:  # one epoch at a time: the order is computed once per epoch
            # A task may order its examples itself (length buckets); else a plain shuffle.
            task = self.task
            self.orders = {
                epoch: task.order(epoch)
                if hasattr(task, "order")
                else epoch_order(task.num_examples(), self.config.seed, epoch)
            }
        return self.orders[epoch]

    def build(self, step: int) -> list[dict]:
        epoch, index = divmod(step, self.steps_per_epoch)
        size, world = self.config.batch_size, self.dist.world
        chosen = self.order(epoch)[index * size : (index + 1) * size][self.dist.rank :: world]
        batches = [self.task.collate(chosen[i : i + self.micro], epoch) for i in range(0, len(chosen), self.micro)]
        if self.dist.device.type == "cuda":  # page-locked: the tasks' non-blocking copies then overlap compute
            batches = [{k: v.pin_memory() if torch.is_tensor(v) else v for k, v in b.items()} for b in batches]
        return batches

    def get(self, step: int, total: int) -> list[dict]:
        """Step `step`'s micro-batches; queues step + 1's when prefetching."""
        if self.pool is None:
            return self.build(step)
        pending, self.pending = self.pending, None
        batches = pending[1].result() if pending is not None and pending[0] == step else self.build(step)
        if step + 1 < total:
            self.pending = (step + 1, self.pool.submit(self.build, step + 1))
        return batches

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)


def train(
    model,
    task: Task,
    config: TrainConfig,
    dist: Dist,
    on_save=None,
    keeper=None,
    log=log_to_stderr,
    emit_metrics=True,
    phases=None,
    prefetch: bool | None = None,
) -> dict:
    """Train `model` on `task`; return the last metrics.

    `on_save(model, directory)` lets the caller add files (the tokenizer) to each
    checkpoint.  `keeper` (train.best.BestKeeper) sees every validation result, may stop
    the run early, and is saved with each checkpoint so that a resumed run keeps the
    same best epoch.  Ctrl-C or SIGTERM writes a checkpoint, then raises KeyboardInterrupt.
    `emit_metrics=False` keeps the metrics lines off stdout (a sweep prints its trials there).
    `phases` (continued.HeadWarmup) sees every step before its forward and after its update,
    and decides from the step alone what trains, so a resumed run is in the same phase.
    `prefetch` builds the next step's batches in a thread (see Batches) [default: on a GPU]."""
    from tqdm import tqdm

    world, rank = dist.world, dist.rank
    if config.batch_size % world:
        raise ConfigError(f"--batch-size {config.batch_size} must be a multiple of the {world} processes")
    per_rank = config.batch_size // world
    micro = min(config.micro_batch_size or per_rank, per_rank)
    examples = task.num_examples()
    steps_per_epoch = max(1, examples // config.batch_size)  # full global batches only
    total = config.max_steps or max(1, math.ceil(config.epochs * steps_per_epoch))
    if config.precision == "fp16" and dist.device.type != "cuda":
        raise ConfigError("--precision fp16 needs a GPU; use bf16 on the CPU")
    if phases is not None and world > 1:
        raise ConfigError("--head-warmup-steps runs in one process (DDP cannot change what trains mid-run)")
    if dist.is_main and bf16_warning(config.precision, dist.device):
        log(bf16_warning(config.precision, dist.device))

    model.to(dist.device)
    module = task.wrap(model)  # what the loss calls: DDP must wrap it, since DDP syncs in forward
    ddp_model = module
    if world > 1:
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            module, device_ids=[dist.local_rank] if dist.device.type == "cuda" else None
        )
    forward = ddp_model
    if config.compile:  # the compiled graph runs the forward; DDP's no_sync stays on the module itself
        forward = torch.compile(ddp_model, dynamic=True)
    optimizer = make_optimizer(model, config)
    scaler = torch.amp.GradScaler(enabled=config.precision == "fp16")
    run = Progress()
    if config.resume:
        run = restore(model, optimizer, scaler, keeper, config, dist, log)
    step, saved_step = run.step, run.step if run.step else None
    seen_tokens = run.tokens // world

    def checkpoint_now():
        tokens, elapsed = dist.all_reduce_sum(seen_tokens), run.elapsed + time.perf_counter() - start
        save(model, optimizer, scaler, config, dist, step, tokens, elapsed, on_save, keeper)

    bar = tqdm(
        total=total,
        initial=step,
        file=sys.stderr,
        disable=not dist.is_main or not sys.stderr.isatty(),
        desc="train",
        dynamic_ncols=True,
    )
    start = time.perf_counter()
    metrics: dict = {}
    stop = False
    module.train()
    prefetch = dist.device.type == "cuda" if prefetch is None else prefetch
    source = Batches(task, config, dist, steps_per_epoch, micro, prefetch)
    with InterruptGuard() as interrupt, closing(source):
        while step < total:
            batches = source.get(step, total)
            # Normalise by the global count (masked tokens, examples) so that every process
            # count gives the same gradient: DDP averages, hence the factor `world`.
            global_count = dist.all_reduce_sum(sum(b["count"] for b in batches))
            torch.manual_seed(config.seed * 7_919 + step * world + rank)  # dropout, reproducible on resume
            for param_group in optimizer.param_groups:
                param_group["lr"] = lr_for(step, total, config)
            if phases is not None:
                phases.before_step(step)
            loss_sum = torch.zeros((), dtype=torch.float64, device=dist.device)
            for i, batch in enumerate(batches):
                sync = i == len(batches) - 1 or world == 1
                context = ddp_model.no_sync() if (world > 1 and not sync) else nullcontext()
                with context:
                    with autocast(config, dist.device):
                        losses, _ = task.loss(forward, batch)
                    scaler.scale(losses.float() / global_count * world).backward()
                loss_sum += losses.detach().double()  # on the device: no wait for it per micro-batch
                seen_tokens += int(batch.get("tokens", 0))
            if config.max_grad_norm:
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.max_grad_norm)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            if phases is not None:
                phases.after_step(step)
            step += 1
            bar.update(1)
            # One collective per step for the figures and the interrupt request: every process
            # must see the same request, or one would wait in a collective alone.
            loss_total, tokens, requests = dist.all_reduce_sums(
                [float(loss_sum), seen_tokens, float(interrupt.requested)]
            )
            loss = loss_total / max(global_count, 1)
            elapsed = run.elapsed + time.perf_counter() - start
            metrics = {
                "step": step,
                "epoch": round(step / steps_per_epoch, 4),
                "loss": round(loss, 6),
                "lr": param_group["lr"],
                "tokens_per_s": round(tokens / max(elapsed, 1e-9), 1),
                "elapsed_s": round(elapsed, 2),
            }
            evaluated = bool(config.eval_every and step % config.eval_every == 0 and step < total)
            if evaluated:
                results = dist.from_main(evaluate(module, task, autocast(config, dist.device)))
                metrics.update(results)
                module.train()
                stop = bool(keeper is not None and results and keeper.observe(step, results, model))
            if emit_metrics and dist.is_main and (step % config.log_every == 0 or step == total or stop or evaluated):
                emit(metrics)
            interrupted = requests > 0
            if interrupted or (config.save_every and step % config.save_every == 0 and step < total):
                interrupt.saving = True
                checkpoint_now()
                interrupt.saving = False
                saved_step = step
            if interrupted:
                bar.close()
                raise Interrupted(
                    f"at step {step}; checkpoint written to {config.output_dir}, rerun with --resume to continue"
                )
            if stop:
                log(f"early stop at step {step}")
                break
    bar.close()
    final = {} if stop else dist.from_main(evaluate(module, task, autocast(config, dist.device)))
    if final:
        metrics.update(final)
        if emit_metrics and dist.is_main:
            emit({"step": step, **final})
        if keeper is not None:
            keeper.observe(step, final, model)
    if saved_step != step:  # else a finished run was resumed: its checkpoint is there already
        checkpoint_now()
    return metrics


@dataclass
class Progress:
    step: int = 0
    tokens: int = 0  # global count
    elapsed: float = 0.0


def restore(model, optimizer, scaler, keeper, config: TrainConfig, dist: Dist, log) -> Progress:
    """Load the newest checkpoint that matches this run (see checkpoint.find_resumable)."""
    found = checkpoint.find_resumable(config.output_dir, config.to_dict(), log)
    if found is None:
        return Progress()
    checkpoint.restore_model(model, found["weights"], found["path"])
    optimizer.load_state_dict(found["optimizer"])
    scaler.load_state_dict(found["state"]["scaler"])
    if keeper is not None:
        keeper.restore(found["state"].get("keeper"), found["extra"])
    state = found["state"]
    log(f"resumed from {found['path']} at step {state['step']}")
    return Progress(state["step"], state["tokens"], state["elapsed"])


def evaluate(module, task: Task, precision=None) -> dict:
    """The task's validation metrics, under `precision` (the training's autocast) when given."""
    module.eval()
    with torch.no_grad(), precision if precision is not None else nullcontext():
        return task.evaluate(module)


def save(model, optimizer, scaler, config, dist: Dist, step, tokens, elapsed, on_save, keeper=None) -> None:
    if dist.is_main:  # only rank 0 writes; `tokens` is the global count
        state = {"step": step, "tokens": tokens, "elapsed": elapsed}
        extra = None
        if keeper is not None:
            state["keeper"], extra = keeper.state(), keeper.weights
        path = checkpoint.save(config.output_dir, step, model, optimizer, scaler, state, config.to_dict(), extra)
        if on_save is not None:
            on_save(model, path)
        checkpoint.prune(config.output_dir, config.keep_checkpoints)
    dist.barrier()
