"""Hyper-parameter search for `finetune`, on Optuna: grid, random or TPE (Bayesian)
sampling, median pruning on the per-epoch validation metric, and studies kept in a
database, so that an interrupted sweep continues and several processes (or machines,
with a server database) share one study.

Determinism: before each trial the sampler is seeded from (study seed, trial number),
so a study seed gives the same trials in one process, resumed or not.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from dataclasses import dataclass

from tweetkit.errors import ConfigError, Interrupted
from tweetkit.records import emit_json

# What a trial may set, and where it goes: the training settings or the task's.
TRAIN_PARAMS = {"lr", "weight_decay", "epochs", "batch_size", "warmup_ratio", "eps", "beta1", "beta2"}
JOB_PARAMS = {"max_length", "linear_c"}
# BERT for Japanese Twitter's search: learning rate, weight decay, epochs, Adam betas and epsilon.
DEFAULT_SPACE = (
    "lr=log:1e-5:2e-4;weight_decay=0:0.1;epochs=int:1:5;batch_size=16,32;beta2=0.98:0.999;eps=log:1e-9:1e-6;"
    "warmup_ratio=0:0.2"
)
STUDY_FILE = "study.db"
TRIAL_DIR = "trial"  # DIR/trial-N: one trial's run
SPACE_ATTR = "search_space"  # the study's user attribute that records what it searches
# The ranges a trial's settings must be in, as the flags' (epochs > 0, batch >= 1, ...); lr > 0 too: a lone run
# with --lr 0 is a frozen baseline, a trial with it only takes a place in the study.
# (lowest, whether the lowest itself is allowed, highest)
LIMITS = {
    "lr": (0, False, None),
    "epochs": (0, False, None),
    "eps": (0, False, None),
    "linear_c": (0, False, None),
    "batch_size": (1, True, None),
    "max_length": (8, True, None),
    "weight_decay": (0, True, None),
    "warmup_ratio": (0, True, 1),
    "beta1": (0, True, 1),
    "beta2": (0, True, 1),
}


@dataclass
class SweepSettings:
    method: str  # grid | random | tpe
    trials: int  # finished (complete or pruned) trials the study should reach
    storage: str
    study_name: str
    seed: int
    prune: bool
    direction: str  # maximize | minimize
    overwrite: bool = False  # start the study again (--overwrite)


def parse_space(text: str, flag: str = "--search-space") -> dict:
    """'lr=log:1e-5:1e-3;epochs=int:1:5;batch_size=16,32;weight_decay=0:0.1' -> Optuna distributions;
    `flag` names where the text came from in errors."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    space = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        name, _, spec = part.partition("=")
        name = name.strip().replace("-", "_")
        if name not in TRAIN_PARAMS | JOB_PARAMS or not spec:
            raise ConfigError(f"{flag}: cannot search {part!r} (one of {', '.join(sorted(TRAIN_PARAMS | JOB_PARAMS))})")
        try:
            kind, *bounds = spec.split(":") if ":" in spec else ("cat", spec)
            if kind == "cat":
                values = [
                    float(v) if name not in ("epochs", "batch_size", "max_length") else int(v)
                    for v in bounds[0].split(",")
                ]
                space[name] = CategoricalDistribution(values)
            elif kind == "int":
                space[name] = IntDistribution(int(bounds[0]), int(bounds[1]))
            elif kind == "log":
                space[name] = FloatDistribution(float(bounds[0]), float(bounds[1]), log=True)
            else:  # lo:hi
                space[name] = FloatDistribution(float(kind), float(bounds[0]))
        except (ValueError, IndexError):
            raise ConfigError(f"{flag}: bad range in {part!r} (lo:hi, log:lo:hi, int:lo:hi or a,b,c)") from None
        check_range(name, bounds_of(space[name]), f"{flag} {part!r}")
    return space


def parse_grid(text: str) -> dict[str, list]:
    """--sweep 'lr=1e-5,3e-5;batch-size=16,32': the --search-space grammar, each parameter a list of values."""
    space = parse_space(text, "--sweep")
    ranges = [name for name, distribution in space.items() if not hasattr(distribution, "choices")]
    if ranges:
        raise ConfigError(
            f"--sweep: a grid lists values (NAME=a,b,c), not a range ({ranges[0]}); "
            "ranges are for --search-space with --sweep-method random or tpe"
        )
    return {name: list(distribution.choices) for name, distribution in space.items()}


def bounds_of(distribution) -> list:
    choices = getattr(distribution, "choices", None)
    return list(choices) if choices is not None else [distribution.low, distribution.high]


def check_range(name: str, values: list, where: str) -> None:
    """Refuse values the parameter's flag would refuse (a trial of 0 epochs scores an
    untrained model, and could win), before any trial runs."""
    low, closed, high = LIMITS[name]
    for value in values:
        if value < low or (value == low and not closed) or (high is not None and value > high):
            rule = f"{'>=' if closed else '>'} {low}" + (f" and <= {high}" if high is not None else "")
            raise ConfigError(f"{where}: {name} must be {rule} (got {value})")


def describe_space(space: dict) -> dict:
    """Each parameter's range as --search-space writes it: what the study records."""
    described = {}
    for name, distribution in sorted(space.items()):
        if hasattr(distribution, "choices"):
            described[name] = ",".join(map(str, distribution.choices))
        else:
            kind = "int:" if isinstance(distribution.low, int) else "log:" if distribution.log else ""
            described[name] = f"{kind}{distribution.low}:{distribution.high}"
    return described


def check_space(study, space: dict) -> None:
    """Record the study's search space, or refuse a different one: Optuna would mix the two
    searches in one study (or fail inside a trial, for a changed list of choices)."""
    wanted = describe_space(space)
    recorded = study.user_attrs.get(SPACE_ATTR)
    if recorded is None:  # a study from before the record: the space its trials drew from
        drawn = {name: d for t in study.get_trials(deepcopy=False) for name, d in t.distributions.items()}
        recorded = describe_space(drawn) if drawn else None
    if recorded is None:
        study.set_user_attr(SPACE_ATTR, wanted)
        return
    changes = [
        f"{name} {recorded.get(name, '(none)')} -> {wanted.get(name, '(none)')}"
        for name in sorted(set(recorded) | set(wanted))
        if recorded.get(name) != wanted.get(name)
    ]
    if changes:
        raise ConfigError(
            f"study {study.study_name!r} searched another space ({'; '.join(changes)}): use another -o (or "
            "--study-name, with a shared --study-storage) for a new study, or --overwrite to start this one again"
        )


def default_storage(output: str) -> str:
    return f"sqlite:///{os.path.abspath(os.path.join(output, STUDY_FILE))}"


def open_study(settings: SweepSettings):
    """Create or load the study; workers starting together race to create its tables and
    the study itself, so a failed attempt is retried before it counts as an error."""
    import time

    import optuna
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    kwargs = {"connect_args": {"timeout": 120}} if settings.storage.startswith("sqlite") else {}
    # Prune once a trial has finished, from the first epoch's validation on (epochs are
    # reported from 1, and Optuna prunes from step == n_warmup_steps).
    pruner = (
        optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=1)
        if settings.prune
        else optuna.pruners.NopPruner()
    )
    for attempt in range(6):
        try:
            storage = optuna.storages.RDBStorage(settings.storage, engine_kwargs=kwargs)
            if settings.overwrite and settings.study_name in optuna.get_all_study_names(storage):
                optuna.delete_study(study_name=settings.study_name, storage=storage)
            return optuna.create_study(
                storage=storage,
                study_name=settings.study_name,
                direction=settings.direction,
                pruner=pruner,
                load_if_exists=True,
            )
        except Exception as exc:  # SQLAlchemy raises many kinds: a bad URL, a server down, a lost race
            error = exc
            if isinstance(exc, (ArgumentError, NoSuchModuleError, ImportError)):
                break  # a malformed URL or a missing driver: no retry will mend it
            time.sleep(0.2 * 2**attempt)
    raise ConfigError(f"--study-storage {settings.storage}: {str(error).splitlines()[0]}")


def sampler_for(settings: SweepSettings, number: int):
    """A sampler seeded for trial `number`: the same study seed gives the same trials."""
    import optuna

    # A hash, not seed + number: numpy's generators seeded with neighbouring integers start
    # with nearly the same draws, which made consecutive trials near copies of each other.
    seed = int.from_bytes(hashlib.sha256(f"{settings.seed}:{number}".encode()).digest()[:4], "little")
    if settings.method in ("random", "grid"):  # grid: the points are enqueued, see next_grid_point
        return optuna.samplers.RandomSampler(seed=seed)
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=max(2, min(10, settings.trials // 3)))


def next_grid_point(study, grid: dict, seed: int) -> dict | None:
    """The first grid point, in a seeded order, that no trial has taken.  (Optuna's
    GridSampler stops the study from inside `tell`, which the ask-and-tell loop cannot do.)"""
    import itertools
    import random

    from optuna.trial import TrialState

    points = [dict(zip(grid, values)) for values in itertools.product(*grid.values())]
    random.Random(seed).shuffle(points)
    taken = [t.params for t in study.get_trials(deepcopy=False) if t.state != TrialState.FAIL]
    return next((point for point in points if point not in taken), None)


def finished(study) -> list:
    from optuna.trial import TrialState

    return [t for t in study.get_trials(deepcopy=False) if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]


def point_of(params: dict) -> dict:
    """A trial's parameters as finetune settings (beta1/beta2 become the betas pair)."""
    point = {k: v for k, v in params.items() if k not in ("beta1", "beta2")}
    if "beta1" in params or "beta2" in params:
        point["betas"] = (params.get("beta1", 0.9), params.get("beta2", 0.999))
    return point


def run_study(settings: SweepSettings, space: dict, grid: dict | None, objective, output: str, log) -> dict:
    """Ask, train, tell until the study has `trials` finished trials (whoever ran them).

    `objective(point, report, directory)` trains one trial and returns its validation
    value; `report(epoch, value, final)` raises optuna.TrialPruned when the pruner says so."""
    import optuna
    from optuna.trial import TrialState

    os.makedirs(output, exist_ok=True)  # the default study database lives there
    study = open_study(settings)
    if grid:
        space = {name: optuna.distributions.CategoricalDistribution(values) for name, values in grid.items()}
    check_space(study, space)
    while len(finished(study)) < settings.trials:
        study.sampler = sampler_for(settings, len(study.trials))
        if grid:
            point = next_grid_point(study, grid, settings.seed)
            if point is None:
                break  # every point taken (by another worker too)
            study.enqueue_trial(point)
        trial = study.ask(space)
        directory = os.path.join(output, f"{TRIAL_DIR}-{trial.number}")

        def report(epoch: int, value: float, final: bool, trial=trial) -> None:
            trial.report(value, epoch)
            if not final and trial.should_prune():
                raise optuna.TrialPruned()

        try:
            value = objective(point_of(trial.params), report, directory)
        except optuna.TrialPruned:
            study.tell(trial, state=TrialState.PRUNED)
            _drop_checkpoints(directory)
            emit_trial(study, trial.number)
            continue
        except KeyboardInterrupt:
            # A trial does not resume: a rerun asks the study for a new one.  So its
            # checkpoint would only take space, and "--resume" would mislead.
            study.tell(trial, state=TrialState.FAIL)
            shutil.rmtree(directory, ignore_errors=True)
            raise Interrupted(
                f"during trial {trial.number}: it is marked failed and {directory} removed; "
                "rerun the same command to continue the study with a new trial"
            ) from None
        except BaseException:
            study.tell(trial, state=TrialState.FAIL)
            raise
        study.tell(trial, value)
        emit_trial(study, trial.number)
    return finish(study, output, log)


def _drop_checkpoints(directory: str) -> None:
    from tweetkit.train import checkpoint

    for name in os.listdir(directory) if os.path.isdir(directory) else []:
        if name.startswith(f"{checkpoint.DIR}-"):
            shutil.rmtree(os.path.join(directory, name), ignore_errors=True)


def trial_row(trial) -> dict:
    return {"trial": trial.number, "state": trial.state.name.lower(), "value": trial.value, **trial.params}


def emit_trial(study, number: int) -> None:
    emit_json(trial_row(study.get_trials(deepcopy=False)[number]))


def finish(study, output: str, log) -> dict:
    """The best trial's model copied to the output root, the trials table, the plots."""
    from optuna.trial import TrialState

    from tweetkit.plotting import plot_study
    from tweetkit.reports import print_study_table

    complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if not complete:
        raise ConfigError(f"study {study.study_name}: no trial completed")
    best = study.best_trial
    source = os.path.join(output, f"{TRIAL_DIR}-{best.number}")
    if os.path.isdir(source):
        for name in os.listdir(source):
            if os.path.isfile(os.path.join(source, name)):
                shutil.copy2(os.path.join(source, name), os.path.join(output, name))
        where = output
    else:  # another machine ran it, under its own -o
        where = f"the -o/trial-{best.number} of the worker that ran it"
    print_study_table(study, best.number)
    plot_study(study, output, log)
    log(f"best: trial {best.number}, value {best.value:.4f}; its model is in {where}")
    return {"sweep_best": {"trial": best.number, "value": best.value, **best.params}, "trials": len(finished(study))}
