"""Benchmark suites: TOML files that list tasks, their data, metric and fine-tuning
defaults, and the published rows to compare with.  A suite is data, not code: the
packaged ones live in tweetkit/benchmark/suites/, and a user's own file works the same.

A task is trained and scored on its own (one unit per seed); a *group* pools the test
predictions of several tasks under one official scorer (TweetEval stance); a *view*
(`predictions_of`) scores another task's predictions again, e.g. through a label map.
The rows of the results table are the tasks outside groups, the views and the groups.
"""

from __future__ import annotations

import dataclasses
import os

from tweetkit.errors import ConfigError, UsageError

SUITES_DIR = os.path.join(os.path.dirname(__file__), "suites")
KINDS = ("classification", "tagging")
# Fine-tuning settings a suite's [defaults], a task, or a command-line flag may set.
TUNING = {"epochs": float, "lr": float, "max_length": int, "batch_size": int, "patience": int}
TASK_KEYS = {"name", "title", "type", "data", "train", "validation", "test", "train_exclude_ids", "metric", "select",
             "positive_label", "label_map", "group", "predictions_of", *TUNING}  # fmt: skip
SUITE_KEYS = {"name", "title", "aggregate", "defaults", "tasks", "groups", "published"}
# The figures of `tweetkit evaluate` a task's metric may name, by task type.
EVALUATE_METRICS = {
    "classification": ("accuracy", "macro_f1", "macro_recall", "f1_pn", "f1_pos"),
    "tagging": ("token_accuracy", "f1", "precision", "recall"),
}
METRIC_TITLES = {
    "macro_f1": "macro-F1",
    "macro_recall": "macro-recall (AvgRec)",
    "f1_pos": "F1 of the positive class",
    "accuracy": "accuracy",
    "token_accuracy": "token accuracy",
    "f1": "entity F1",
    "f1_pn": "F1^PN",
}


@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    title: str
    kind: str
    train: str | None  # paths relative to --data; None for a view
    validation: str | None
    test: str | None
    metric: str
    tuning: dict
    train_exclude_ids: str | None = None
    select: str | None = None  # finetune's validation metric [default: finetune's choice]
    positive_label: str | None = None
    label_map: str | None = None
    group: str | None = None
    predictions_of: str | None = None


@dataclasses.dataclass(frozen=True)
class Group:
    name: str
    title: str
    metric: str  # a scorer of tweetkit.metrics.OFFICIAL_SCORERS, or a key of `tweetkit evaluate`
    tasks: tuple[str, ...]


@dataclasses.dataclass(frozen=True)
class Published:
    name: str
    source: str
    scores: dict  # row name (or the aggregate's) -> value in percent


@dataclasses.dataclass(frozen=True)
class Suite:
    name: str
    title: str
    path: str
    tasks: tuple[Task, ...]
    groups: tuple[Group, ...]
    published: tuple[Published, ...]
    aggregate: str | None  # the name of the mean of all rows (TweetEval's ALL), if any

    def task(self, name: str) -> Task:
        return next(t for t in self.tasks if t.name == name)

    def trained(self) -> list[Task]:
        """The tasks that fine-tune a model (views only score one)."""
        return [t for t in self.tasks if t.predictions_of is None]

    def rows(self) -> list[str]:
        """The table's rows in suite order: each task outside a group, and each group where its first task is."""
        rows: list[str] = []
        for task in self.tasks:
            name = task.group or task.name
            if name not in rows:
                rows.append(name)
        return rows


def packaged() -> list[str]:
    return sorted(name[:-5] for name in os.listdir(SUITES_DIR) if name.endswith(".toml"))


def resolve_path(name_or_path: str) -> str:
    """A packaged suite's name, or the path of a suite file."""
    if name_or_path.endswith(".toml") or os.sep in name_or_path:
        if not os.path.isfile(name_or_path):
            raise UsageError(f"suite {name_or_path}: no such file")
        return name_or_path
    if name_or_path not in packaged():
        raise UsageError(f"suite {name_or_path!r}: not one of {', '.join(packaged())} (or give a .toml path)")
    return os.path.join(SUITES_DIR, name_or_path + ".toml")


def load(name_or_path: str) -> Suite:
    """The suite, every error a one-line ConfigError naming the file and the entry."""
    path = resolve_path(name_or_path)
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    return parse(data, path)


def parse(data: dict, path: str) -> Suite:
    def fail(message: str):
        raise ConfigError(f"{path}: {message}")

    unknown = sorted(set(data) - SUITE_KEYS)
    if unknown:
        fail(f"unknown key {unknown[0]!r} (expected {', '.join(sorted(SUITE_KEYS))})")
    name = _string(data, "name", "", fail, required=True)
    defaults = _tuning(data.get("defaults", {}), "[defaults]", fail)
    if not isinstance(data.get("tasks"), list) or not data["tasks"]:
        fail("no [[tasks]]")
    tasks = tuple(_task(entry, i, defaults, fail) for i, entry in enumerate(data["tasks"]))
    kinds = {t.name: t.kind for t in tasks if not t.predictions_of}
    # A view scores its task's predictions: it has that task's type.
    tasks = tuple(
        dataclasses.replace(t, kind=kinds.get(t.predictions_of, t.kind)) if t.predictions_of else t for t in tasks
    )
    groups = tuple(_group(entry, i, tasks, fail) for i, entry in enumerate(data.get("groups", [])))
    suite = Suite(
        name=name,
        title=_string(data, "title", "", fail) or name,
        path=path,
        tasks=tasks,
        groups=groups,
        published=tuple(_published(entry, i, fail) for i, entry in enumerate(data.get("published", []))),
        aggregate=_string(data, "aggregate", "", fail),
    )
    _check_references(suite, fail)
    return suite


def _string(entry: dict, key: str, where: str, fail, required: bool = False) -> str | None:
    value = entry.get(key)
    if value is None:
        if required:
            fail(f"{where}missing {key!r}")
        return None
    if not isinstance(value, str) or not value:
        fail(f"{where}{key!r} must be a non-empty string")
    return value


def _tuning(entry, where: str, fail) -> dict:
    if not isinstance(entry, dict):
        fail(f"{where} must be a table")
    unknown = sorted(set(entry) - set(TUNING))
    if unknown:
        fail(f"{where}: unknown key {unknown[0]!r} (expected {', '.join(TUNING)})")
    out = {}
    for key, value in entry.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            fail(f"{where}: {key} must be a number >= 0 (got {value!r})")
        out[key] = TUNING[key](value)
    return out


def _entry_where(entry, place: str, keys: set, fail) -> str:
    """The prefix of an entry's messages, once it is known to be a table of `keys` only."""
    if not isinstance(entry, dict):
        fail(f"{place} must be a table")
    where = f"{place} ({entry.get('name', '?')}): "
    unknown = sorted(set(entry) - keys)
    if unknown:
        fail(f"{where}unknown key {unknown[0]!r}")
    return where


def _task(entry, index: int, defaults: dict, fail) -> Task:
    where = _entry_where(entry, f"tasks[{index}]", TASK_KEYS, fail)
    text = {key: _string(entry, key, where, fail) for key in TASK_KEYS - set(TUNING) - {"validation"}}
    name, kind = _string(entry, "name", where, fail, required=True), text["type"] or "classification"
    if kind not in KINDS:
        fail(f"{where}type {kind!r} is not one of {', '.join(KINDS)}")
    if not text["metric"]:
        fail(f"{where}missing 'metric'")
    tuning = {**defaults, **_tuning({k: v for k, v in entry.items() if k in TUNING}, where.rstrip(": "), fail)}
    if text["predictions_of"]:
        splits = (None, None, None)
    else:
        splits = _splits(entry, text, where, fail)
    return Task(
        name=name,
        title=text["title"] or name,
        kind=kind,
        train=splits[0],
        validation=splits[1],
        test=splits[2],
        metric=text["metric"],
        tuning=tuning,
        **{
            key: text[key]
            for key in ("train_exclude_ids", "select", "positive_label", "label_map", "group", "predictions_of")
        },
    )  # fmt: skip


def _splits(entry: dict, text: dict, where: str, fail) -> tuple:
    """train, validation (None when `validation = false`) and test, from `data` or each given."""
    folder = text["data"]
    validation = entry.get("validation")
    if validation is not None and validation is not False and not (isinstance(validation, str) and validation):
        fail(f"{where}'validation' must be a path or false")
    paths = []
    for split, given in (("train", text["train"]), ("validation", validation), ("test", text["test"])):
        if given is False:
            paths.append(None)
        elif given:
            paths.append(given)
        elif folder:
            paths.append(f"{folder}/{split}.jsonl")
        else:
            fail(f"{where}no {split!r} path and no 'data' folder to find it in")
    return tuple(paths)


def _group(entry, index: int, tasks: tuple[Task, ...], fail) -> Group:
    where = _entry_where(entry, f"groups[{index}]", {"name", "title", "metric"}, fail)
    name = _string(entry, "name", where, fail, required=True)
    members = tuple(t.name for t in tasks if t.group == name)
    if not members:
        fail(f"{where}no task names group {name!r}")
    metric = _string(entry, "metric", where, fail, required=True)
    return Group(name=name, title=_string(entry, "title", where, fail) or name, metric=metric, tasks=members)


def _published(entry, index: int, fail) -> Published:
    where = _entry_where(entry, f"published[{index}]", {"name", "source", "scores"}, fail)
    scores = entry.get("scores")
    if not isinstance(scores, dict) or not scores:
        fail(f"{where}'scores' must be a table of row = percent")
    for row, value in scores.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            fail(f"{where}scores.{row} must be a number (got {value!r})")
    return Published(
        name=_string(entry, "name", where, fail, required=True),
        source=_string(entry, "source", where, fail, required=True),
        scores={k: float(v) for k, v in scores.items()},
    )


def _check_references(suite: Suite, fail) -> None:
    from tweetkit.metrics import OFFICIAL_SCORERS

    names = [t.name for t in suite.tasks]
    repeated = sorted({n for n in names if names.count(n) > 1} | {g.name for g in suite.groups if g.name in names})
    if repeated:
        fail(f"the name {repeated[0]!r} is used twice")
    groups = {g.name for g in suite.groups}
    for task in suite.tasks:
        if task.group and task.group not in groups:
            fail(f"task {task.name}: group {task.group!r} has no [[groups]] entry")
        if task.predictions_of and task.predictions_of not in [t.name for t in suite.trained()]:
            fail(f"task {task.name}: predictions_of {task.predictions_of!r} is not a trained task of this suite")
        if task.metric not in EVALUATE_METRICS[task.kind]:
            fail(f"task {task.name}: metric {task.metric!r} is not one of {', '.join(EVALUATE_METRICS[task.kind])}")
        if task.metric == "f1_pos" and not (
            task.positive_label or suite.task(task.predictions_of or task.name).positive_label
        ):
            fail(f"task {task.name}: metric 'f1_pos' needs positive_label")
    for group in suite.groups:
        kinds = {suite.task(t).kind for t in group.tasks}
        if kinds != {"classification"}:
            fail(f"group {group.name}: only classification tasks can be pooled")
        if group.metric not in OFFICIAL_SCORERS and group.metric not in EVALUATE_METRICS["classification"]:
            fail(
                f"group {group.name}: metric {group.metric!r} is not one of "
                f"{', '.join([*OFFICIAL_SCORERS, *EVALUATE_METRICS['classification']])}"
            )
    rows = set(suite.rows()) | ({suite.aggregate} if suite.aggregate else set())
    for system in suite.published:
        stray = sorted(set(system.scores) - rows)
        if stray:
            fail(f"published {system.name}: {stray[0]!r} is not a row of this suite ({', '.join(sorted(rows))})")


def metric_title(metric: str) -> str:
    from tweetkit.metrics import OFFICIAL_SCORERS

    if metric in OFFICIAL_SCORERS:
        return OFFICIAL_SCORERS[metric][0]
    return METRIC_TITLES.get(metric, metric)


def select_tasks(suite: Suite, names: list[str] | None) -> list[Task]:
    """The trained tasks --tasks asks for: task, view or group names (a view brings its task)."""
    if not names:
        return suite.trained()
    known = {t.name for t in suite.tasks} | {g.name for g in suite.groups}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise UsageError(f"--tasks {unknown[0]}: not a task of suite {suite.name} ({', '.join(suite.rows())})")
    wanted = set()
    for task in suite.tasks:
        if task.name in names or task.group in names:
            wanted.add(task.predictions_of or task.name)
    return [t for t in suite.trained() if t.name in wanted]
