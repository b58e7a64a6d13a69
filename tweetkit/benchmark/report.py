"""A benchmark's results: each row's official score per seed, mean ± std, the suite's
aggregate, and the published rows beside them, as results.json, results.md and a
picture (results.png, results.svg)."""

from __future__ import annotations

import json
import math
import os

from tweetkit.benchmark.suite import Suite, metric_title
from tweetkit.benchmark.units import PREDICTIONS


def mean_std(values: list[float]) -> dict:
    mean = sum(values) / len(values)
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return {"mean": mean, "std": std}


def pooled_score(suite: Suite, group, seed: int, output: str) -> float:
    """A group's official score for one seed: its tasks' test predictions pooled and
    scored together (TweetEval stance), as the task's labels are read by evaluate."""
    from tweetkit import kinds
    from tweetkit.metrics import OFFICIAL_SCORERS, parse_label_map

    classification = kinds.get("classification")  # what a suite's pooled group holds
    gold, pred = [], []
    for name in group.tasks:
        task = suite.task(name)
        mapping = parse_label_map(task.label_map) if task.label_map else None
        with open(os.path.join(output, "units", name, f"seed-{seed}", PREDICTIONS), encoding="utf-8") as handle:
            for line in handle:
                record = json.loads(line)
                gold.append(classification.map_labels(record[classification.gold_field], mapping))
                pred.append(classification.map_labels(record[classification.pred_field], mapping))
    if group.metric in OFFICIAL_SCORERS:
        return OFFICIAL_SCORERS[group.metric][1](gold, pred)
    return classification.score(gold, pred, None, suite.task(group.tasks[0]).positive_label)[group.metric]


def row_scores(suite: Suite, results: dict[str, dict], seeds: list[int], output: str) -> list[dict]:
    """Each row with a score for every seed (percent): a task's own figure from `tweetkit
    evaluate`, a view's from its rescoring, a group's from its pooled predictions.  A group
    some of whose tasks did not run shows those tasks as rows of their own."""
    ran = {r["task"] for r in results.values()}
    groups = {g.name: g for g in suite.groups}
    rows = []
    for name in suite.rows():
        group = groups.get(name)
        if group and all(t in ran for t in group.tasks):
            per_seed = {s: 100 * pooled_score(suite, group, s, output) for s in seeds}
            rows.append({"name": name, "title": group.title, "metric": group.metric, "per_seed": per_seed})
            continue
        for task in [suite.task(t) for t in group.tasks] if group else [suite.task(name)]:
            source = task.predictions_of or task.name
            if source not in ran:
                continue
            per_seed = {}
            for seed in seeds:
                result = results[f"{source}/seed-{seed}"]
                figures = result["views"][task.name] if task.predictions_of else result["metrics"]
                per_seed[seed] = 100 * figures[task.metric]
            rows.append({"name": task.name, "title": task.title, "metric": task.metric, "per_seed": per_seed})
    return rows


def summarize(suite: Suite, results: dict[str, dict], seeds: list[int], output: str, about: dict) -> dict:
    """results.json: the rows (per seed, mean ± std, published), the aggregate and the units."""
    rows = row_scores(suite, results, seeds, output)
    for row in rows:
        row.update(mean_std(list(row["per_seed"].values())), metric_title=metric_title(row["metric"]))
        row["published"] = [
            {"name": p.name, "value": p.scores[row["name"]], "source": p.source}
            for p in suite.published
            if row["name"] in p.scores
        ]
    summary = {"suite": suite.name, "title": suite.title, "suite_file": suite.path, **about, "seeds": seeds,
               "scale": "percent, test split", "rows": rows}  # fmt: skip
    if suite.aggregate and [r["name"] for r in rows] == suite.rows():  # every row ran: the aggregate is defined
        per_seed = {s: sum(r["per_seed"][s] for r in rows) / len(rows) for s in seeds}
        summary["aggregate"] = {
            "name": suite.aggregate,
            "per_seed": per_seed,
            **mean_std(list(per_seed.values())),
            "published": [
                {"name": p.name, "value": p.scores[suite.aggregate], "source": p.source}
                for p in suite.published
                if suite.aggregate in p.scores
            ],
        }
    summary["units"] = [{k: v for k, v in r.items() if k != "settings"} for r in results.values()]
    return summary


def markdown(summary: dict) -> str:
    """A table: each row's official metric, the model's mean ± std, the published rows beside."""
    systems = list(dict.fromkeys(p["name"] for r in _table_rows(summary) for p in r["published"]))
    model = summary["model_name"]
    lines = [
        f"## {summary['title']}: {model}",
        "",
        f"Test split, {len(summary['seeds'])} seed(s) ({', '.join(map(str, summary['seeds']))}); "
        "mean ± std in percent.",
        "",
        "| task | official metric | " + " | ".join([model, *systems]) + " |",
        "|---|---|" + "---:|" * (1 + len(systems)),
    ]
    for row in _table_rows(summary):
        published = {p["name"]: p["value"] for p in row["published"]}
        cells = [f"{published[s]:.1f}" if s in published else "" for s in systems]
        lines.append(
            f"| {row['title']} | {row['metric_title']} | {row['mean']:.1f} ± {row['std']:.1f} | "
            + " | ".join(cells)
            + " |"
        )
    sources = {p["name"]: p["source"] for r in _table_rows(summary) for p in r["published"]}
    if sources:
        lines += ["", "Published rows:", *[f"- {name}: {source}" for name, source in sources.items()]]
    return "\n".join(lines) + "\n"


def _table_rows(summary: dict) -> list[dict]:
    aggregate = summary.get("aggregate")
    if not aggregate:
        return summary["rows"]
    return [*summary["rows"], {**aggregate, "title": f"**{aggregate['name']}**", "metric_title": "mean of the rows"}]


def plot(summary: dict, stem: str) -> list[str]:
    """The model (bars, ± std) against the published rows (markers), one group per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = _table_rows(summary)
    systems = list(dict.fromkeys(p["name"] for r in rows for p in r["published"]))
    figure, axes = plt.subplots(figsize=(max(6.0, 1.1 * len(rows) + 2), 4.5))
    positions = list(range(len(rows)))
    axes.bar(positions, [r["mean"] for r in rows], yerr=[r["std"] for r in rows], color="#b0b0b0",
             capsize=3, label=summary["model_name"])  # fmt: skip
    markers = "o^sDv<>phX*"
    for index, system in enumerate(systems):
        points = [(i, p["value"]) for i, r in enumerate(rows) for p in r["published"] if p["name"] == system]
        axes.scatter([x for x, _ in points], [y for _, y in points], marker=markers[index % len(markers)], zorder=3,
                     label=system)  # fmt: skip
    axes.set_xticks(positions, [r["title"].strip("*") for r in rows], rotation=30, ha="right")
    axes.set_ylabel("official metric (%)")
    axes.set_title(f"{summary['title']}: {summary['model_name']} (test, {len(summary['seeds'])} seed(s))")
    axes.legend(fontsize="small", loc="center left", bbox_to_anchor=(1.0, 0.5))
    figure.tight_layout()
    paths = [f"{stem}.png", f"{stem}.svg"]
    for path in paths:
        figure.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(figure)
    return paths


def write(summary: dict, output: str) -> list[str]:
    from tweetkit.files import write_atomically

    paths = [os.path.join(output, "results.json"), os.path.join(output, "results.md")]
    write_atomically(paths[0], json.dumps(summary, indent=2) + "\n")
    write_atomically(paths[1], markdown(summary))
    return paths + plot(summary, os.path.join(output, "results"))
