"""Write RESULTS.md from results/*.json (made by scripts/repro.py); never edit it by hand.

    python scripts/results_md.py [--results results] [-o RESULTS.md]

Each target's rows are put next to published test figures, and the pretraining
loss curves are drawn with `tweetkit plot`.
"""

import argparse
import json
import math
import os
import subprocess
import sys

# Published test figures (metric in percent), as quoted in the issue tracker from
# TweetEval's README and the BERTweet paper (Nguyen et al., 2020).
PUBLISHED = {
    "semeval17": (
        "macro_recall",
        [
            ("SVM (TweetEval README)", 62.9),
            ("FastText (TweetEval README)", 62.9),
            ("RoBERTa-base (TweetEval README)", 71.3),
            ("BERTweet (TweetEval README)", 73.4),
            ("TimeLM-2021 (TweetEval README)", 73.7),
        ],
    ),
    "irony": ("f1_pos", [("RoBERTa-base (TweetEval README)", 59.7), ("BERTweet (TweetEval README)", 82.1)]),
    "wnut17": ("f1", [("BERTweet (paper)", 56.5)]),
    "ark": ("token_accuracy", [("BERTweet (paper)", 94.1)]),
    # The seed paper's 3-class accuracy, read from its confusion matrices (5 classes merged to 3).
    "covid": ("accuracy_3class", [("BERT (seed paper)", 88.3), ("RoBERTa (seed paper)", 87.8)]),
}
METRIC_NAMES = {
    "macro_recall": "AvgRec",
    "f1_pos": "F1 (irony)",
    "f1": "entity F1",
    "token_accuracy": "accuracy",
    "macro_f1": "macro-F1",
    "accuracy": "accuracy",
    "precision": "precision",
    "recall": "recall",
    "accuracy_3class": "3-class accuracy",
    "macro_f1_3class": "3-class macro-F1",
}
TITLES = {
    "semeval17": "SemEval-2017 4A sentiment",
    "irony": "SemEval-2018 3A irony (TweetEval)",
    "wnut17": "WNUT-17 NER",
    "ark": "ARK POS",
    "covid": "COVID-19 tweet sentiment (5 classes)",
}


# Targets whose sections show each row's test confusion matrix, and label orders that read
# better than the alphabet.
CONFUSION_TARGETS = {"covid"}
LABEL_ORDER = [
    "Extremely Negative",
    "Negative",
    "Neutral",
    "Positive",
    "Extremely Positive",
    "negative",
    "neutral",
    "positive",
]


def confusion_tables(result):
    """One confusion matrix per row (summed over its seeds), rows gold, columns predicted."""
    lines = []
    for row in result["rows"]:
        confusion = row.get("confusion_matrix")
        if not confusion:
            continue
        order = sorted(
            range(len(confusion["labels"])),
            key=lambda i: (
                LABEL_ORDER.index(confusion["labels"][i])
                if confusion["labels"][i] in LABEL_ORDER
                else len(LABEL_ORDER),
                confusion["labels"][i],
            ),
        )
        labels = [confusion["labels"][i] for i in order]
        lines += [
            "",
            f"Confusion matrix of {row['name']} on test, summed over {confusion['seeds']} seed(s) "
            "(rows: gold, columns: predicted):",
            "",
            "| gold / predicted | " + " | ".join(labels) + " |",
            "|---|" + "---:|" * len(labels),
        ]
        for g in order:
            lines.append(
                f"| {confusion['labels'][g]} | " + " | ".join(f"{confusion['matrix'][g][p]:,}" for p in order) + " |"
            )
    return lines


def mapped_accuracy(confusion, label_map):
    """Accuracy after `label_map` merges classes, from a confusion matrix summed over seeds:
    the mean over seeds, since every seed scores the same test examples."""
    from tweetkit import kinds  # what `evaluate --label-map` applies

    labels, matrix = confusion["labels"], confusion["matrix"]
    merged = [kinds.get("classification").map_labels(label, label_map) for label in labels]
    right = sum(matrix[g][p] for g in range(len(labels)) for p in range(len(labels)) if merged[g] == merged[p])
    return 100 * right / sum(map(sum, matrix))


def label_map_from_confusion(result):
    """For a run made before its target was also scored with a label map (LABEL_MAPS in
    scripts/repro.py): the mapped accuracy of each row, from its summed confusion matrix."""
    here = os.path.dirname(os.path.abspath(__file__))
    if here not in sys.path:  # run as a script it is there already; imported from a test, not
        sys.path.insert(0, here)
    import repro

    from tweetkit.metrics import parse_label_map

    target = result["target"]
    if target not in repro.LABEL_MAPS:
        return []
    suffix, text = repro.LABEL_MAPS[target]
    metric = f"accuracy_{suffix}"
    if metric in result["metrics"]:  # scored per seed by the run itself: in the table
        return []
    rows = [(row["name"], row["confusion_matrix"]) for row in result["rows"] if row.get("confusion_matrix")]
    if not rows:
        return []
    label_map = parse_label_map(text)
    published_metric, published = PUBLISHED.get(target, (None, []))
    figures = ", ".join(f"{name} {mapped_accuracy(confusion, label_map):.1f}" for name, confusion in rows)
    seed = "; published: " + ", ".join(f"{n} {v:.1f}" for n, v in published) if published_metric == metric else ""
    return [
        "",
        f'{METRIC_NAMES.get(metric, metric)} (`--label-map "{text}"`), from each row\'s confusion matrix summed '
        "over its seeds (the mean over seeds; this run predates the per-seed mapped scores, "
        "which a rerun adds with their spread): "
        f"{figures}{seed}.",
    ]


def title(result):
    """The target's title, and the results name when a run was given its own (--name)."""
    target, name = result["target"], result.get("name", result["target"])
    return TITLES.get(target, target) + (f", {name}" if name != target else "")


def cell(row, metric):
    value = row["test"].get(metric)
    return f"{value['mean']:.1f} ± {value['std']:.1f}" if value else "-"


def target_section(result):
    target, metrics = result["target"], result["metrics"]
    named = f" NAME={result['name']}" if result.get("name", target) != target else ""
    lines = [f"## {title(result)} (`make repro-{target}{named}`)", ""]
    header = "| model | " + " | ".join(METRIC_NAMES.get(m, m) for m in metrics) + " | seeds | minutes |"
    lines += [header, "|---|" + "---:|" * (len(metrics) + 2)]
    for row in result["rows"]:
        minutes = row["finetune_minutes"] + row.get("pretrain_minutes", 0)
        lines.append(
            f"| {row['name']} | "
            + " | ".join(cell(row, m) for m in metrics)
            + f" | {len(row['seeds'])} | {minutes:.0f} |"
        )
    published_metric, published = PUBLISHED.get(target, (None, []))
    for name, value in published if published_metric in metrics else []:  # a run that reports that metric
        lines.append(
            f"| *published:* {name} | "
            + " | ".join(f"*{value:.1f}*" if m == published_metric else "" for m in metrics)
            + " | | |"
        )
    if target in CONFUSION_TARGETS:
        lines += confusion_tables(result)
    lines += label_map_from_confusion(result)
    data = result["data"]
    settings = result["settings"]
    shared = result["corpus"].get("seconds", 0) / 60 + sum(row.get("pretrain_minutes", 0) for row in result["rows"])
    lines += [
        "",
        f"Data used: {data['train']:,} train / {data['validation']:,} validation / {data['test']:,} test examples "
        f"(train subsampled to ~{settings['train_limit']:,} when larger; 0 = all). "
        f"Fine-tuning: {settings['epochs']} epoch(s), lr {settings['lr']}, "
        f"batch {settings['batch_size']}, best epoch on validation; "
        f"tiny: {settings['tiny_epochs']} epochs, lr {settings['tiny_lr']}. "
        f"Seeds {settings['seeds']} (mean ± sample std over seeds). Hardware: {result['hardware']}; "
        f"from an empty work directory the target takes {result['minutes']:.0f} minutes "
        f"(the recorded time of each step), {shared:.0f} of them building the corpus and the pretrained "
        "models that every target shares (a later target reuses them). "
        "Minutes per row include pretraining for (c) and (d).",
        f"Command: `{result['command']}`",
        "",
    ]
    return lines


def paired(base, other):
    """other − base per seed: (mean, sample std, per-seed differences)."""
    diffs = [y - x for x, y in zip(base["values"], other["values"])]
    mean = sum(diffs) / len(diffs)
    std = math.sqrt(sum((d - mean) ** 2 for d in diffs) / (len(diffs) - 1)) if len(diffs) > 1 else 0.0
    return mean, std, diffs


def adaptation_statement(result):
    """Does continued pretraining (c) beat direct fine-tuning (b), paired by seed?  And its
    ablations (c'), (c''), when they were run (with or without (c) itself)."""
    rows = {row["row"]: row for row in result["rows"]}
    metric = result["metrics"][0]
    adapted = [key for key in rows if key.startswith("minilm-tweets") and metric in rows[key]["test"]]
    if "minilm" not in rows or metric not in rows["minilm"]["test"] or not adapted:
        return []
    b = rows["minilm"]["test"][metric]
    name = METRIC_NAMES.get(metric, metric)
    goal = 72.0 if result["target"] == "semeval17" else None

    def comparison(key):
        other = rows[key]["test"][metric]
        mean, std, diffs = paired(b, other)
        return other, mean, std, ", ".join(f"{d:+.2f}" for d in diffs), diffs

    lines = [f"**Domain adaptation on {title(result)}:**"]
    if "minilm-tweets" in adapted:
        c, mean, std, per_seed, diffs = comparison("minilm-tweets")
        verdict = (
            "beats"
            if mean > 0 and (len(diffs) < 2 or mean > std)
            else ("trails" if mean < 0 and (len(diffs) < 2 or -mean > std) else "is within the seed spread of")
        )
        lines[0] += (
            f" (c) continued pretraining {verdict} (b) direct fine-tuning: "
            f"{name} {c['mean']:.2f} ± {c['std']:.2f} vs {b['mean']:.2f} ± {b['std']:.2f}; "
            f"paired by seed, (c) − (b) = {mean:+.2f} ± {std:.2f} (per seed: {per_seed})."
        )
    else:
        lines[0] += f" (b) direct fine-tuning: {name} {b['mean']:.2f} ± {b['std']:.2f}."
    best = max(rows[key]["test"][metric]["mean"] for key in adapted)
    if goal is not None:
        lines[0] += (
            f" The goal of {goal:.1f} AvgRec for (c) is {'met' if best >= goal else 'not met'} at these settings "
            f"(best (c) variant: {best:.2f})."
        )
    lines.append("")
    for key in adapted:
        if key != "minilm-tweets":
            row = rows[key]
            other, mean, std, per_seed, _ = comparison(key)
            label = row["name"].split(" ", 1)[0]
            lines.append(
                f"- Ablation {row['name']}: {name} {other['mean']:.2f} ± {other['std']:.2f}; "
                f"{label} − (b) = {mean:+.2f} ± {std:.2f} (per seed: {per_seed})."
            )
    if lines[-1]:
        lines.append("")
    return lines


def read_metrics(path):
    with open(path, encoding="utf-8") as handle:
        return [record for record in map(json.loads, handle) if "loss" in record and "step" in record]


def pretraining_budget(results):
    """What continued pretraining (c) amounted to, read from its metrics, and what a GPU changes."""
    for result in results:
        row = next((r for r in result["rows"] if r["row"] == "minilm-tweets" and r.get("pretrain_metrics")), None)
        settings = result.get("settings", {})
        if (
            row is None
            or not os.path.exists(row["pretrain_metrics"])
            or "pretrain_steps" not in settings
            or "pretrain_batch_size" not in settings
        ):
            continue
        records = read_metrics(row["pretrain_metrics"])
        if not records:
            continue
        last = records[-1]
        steps, rows = int(settings["pretrain_steps"]), int(settings["pretrain_batch_size"])
        head = [r["loss"] for r in records[:3]]
        tail = [r["loss"] for r in records[-3:]]
        return [
            f"What (c) amounted to: {steps:,} steps of {rows} packed rows of 128 tokens "
            f"(~{steps * rows * 128 / 1e6:.1f}M tokens"
            + (f", {last['epoch']:.0%} of one pass over the corpus" if "epoch" in last else "")
            + f") in {row.get('pretrain_minutes', 0):.0f} minutes on this machine; the MLM loss "
            f"fell from {sum(head) / len(head):.2f} to {sum(tail) / len(tail):.2f} "
            "(mean of the first and last three logged steps). MiniLM-L6 ships "
            "without an MLM head, so the first steps fit a random head "
            "(`pretrain --freeze-base` warms it up first: the opt-in (c'') row). "
            "With a GPU: tens of thousands of steps over the whole corpus "
            "(`PRETRAIN_STEPS=20000 PRECISION=bf16`), the full 49.5k train set "
            "for 2-3 epochs (`TRAIN_LIMIT=0 EPOCHS=3`), and 5 seeds.",
            "",
        ]
    return []


def signed(value):
    return f"{value['mean']:+.2f} ± {value['std']:.2f} ({', '.join(f'{v:+.1f}' for v in value['values'])})"


def break_even(task):
    """The smallest budget where (c) beats (b) beyond the seed spread, or None."""
    for budget in task["budgets"]:
        paired = budget["paired"]
        if paired["mean"] > 0 and (len(paired["values"]) < 2 or paired["mean"] > paired["std"]):
            return budget
    return None


def adaptation_section(result, results_dir, output_dir):
    """The curve of bench/adaptation.py: (c) − (b) per budget and task, the pictures, the verdict."""
    link = lambda name: os.path.relpath(os.path.join(results_dir, name), output_dir)  # noqa: E731
    named = f" NAME={result['name']}" if result["name"] != "adaptation" else ""
    tasks = result["tasks"]
    lines = [f"## Adaptation curve: {result['levers']} (`make adaptation-curve{named}`)", ""]
    lines += [f"![(c) − (b) against continued-pretraining tokens]({link(result['picture']['svg'])})", ""]
    header = "| tokens | steps | pretrain min | " + " | ".join(
        f"{TITLES.get(t, t)}: (c) − (b) {METRIC_NAMES.get(task['metric'], task['metric'])}" for t, task in tasks.items()
    )
    lines += [header + " |", "|---:|---:|---:|" + "---|" * len(tasks)]
    first = next(iter(tasks.values()))
    for number, budget in enumerate(first["budgets"]):
        minutes = sum(task["budgets"][number]["pretrain_minutes"] for task in tasks.values())
        cells = [signed(task["budgets"][number]["paired"]) for task in tasks.values()]
        lines.append(f"| {budget['tokens']:,} | {budget['steps']:,} | {minutes:.0f} | " + " | ".join(cells) + " |")
    lines.append("")
    for target, task in tasks.items():
        metric = task["metric"]
        b = task["direct"]["test"][metric]
        found = break_even(task)
        verdict = (
            f"(c) beats (b) beyond the seed spread from {found['tokens']:,} tokens "
            f"({found['pretrain_minutes']:.0f} minutes of pretraining here)"
            if found
            else "(c) does not beat (b) beyond the seed spread at any budget up to "
            f"{task['budgets'][-1]['tokens']:,} tokens"
        )
        lines.append(
            f"- **{TITLES.get(target, target)}:** (b) {METRIC_NAMES.get(metric, metric)} "
            f"{b['mean']:.2f} ± {b['std']:.2f}; {verdict}. "
            f"Data: {task['data']['train']:,} train / {task['data']['validation']:,} validation / "
            f"{task['data']['test']:,} test; "
            f"fine-tuning {task['epochs']} epoch(s)."
        )
    lines.append("")
    embeddings = result.get("embeddings")
    if embeddings:
        silhouettes = ", ".join(
            f"{p['panel']} {p['silhouette_cosine']:+.3f}"
            for p in embeddings["panels"]
            if p["silhouette_cosine"] is not None
        )
        lines += [
            f"![t-SNE of sentence embeddings]({link(embeddings['svg'])})",
            "",
            "Sentence embeddings (`tweetkit embed`: mean of the last hidden states) of "
            f"{TITLES.get(embeddings['task'], embeddings['task'])} "
            "test tweets, coloured by gold label, before and after the largest budget's continued pretraining "
            "(`tweetkit plot --embeddings`, t-SNE). "
            f"Silhouette of the gold labels in the embedding space (cosine): {silhouettes}.",
            "",
        ]
    settings = result["settings"]
    lines += [
        f"Levers: {result['levers']}; "
        f"continued pretraining batch {settings['pretrain_batch_size']} rows of 128 tokens, "
        f"{settings['precision']}; fine-tuning lr {settings['lr']}, batch {settings['batch_size']}, "
        f"seeds {settings['seeds']} "
        f"(paired by seed: mean ± sample std, per seed in brackets). Hardware: {result['hardware']}; "
        f"{result['minutes']:.0f} minutes in all (the recorded time of each step).",
        f"Command: `{result['command']}`",
        "",
    ]
    return lines


def benchmark_sections(results_dir, output_dir):
    """Each `tweetkit benchmark` run kept in results/benchmark-*/: its table (results.md, which the
    command writes), the settings it ran with and its picture."""
    runs = sorted(
        n for n in os.listdir(results_dir) if n.startswith("benchmark-") and os.path.isdir(os.path.join(results_dir, n))
    )
    if not runs:
        return []
    lines = [
        "## Benchmark suites (`tweetkit benchmark`)",
        "",
        "Each table is `results.md` as `tweetkit benchmark` wrote it; docs/benchmarks.md gives each run's command, "
        "machine and time.",
        "",
    ]
    for name in runs:
        directory = os.path.join(results_dir, name)
        with open(os.path.join(directory, "results.json"), encoding="utf-8") as handle:
            about = json.load(handle)
        with open(os.path.join(directory, "results.md"), encoding="utf-8") as handle:
            table = handle.read().strip().splitlines()
        overrides = ", ".join(f"{k} {v}" for k, v in sorted(about.get("overrides", {}).items()))
        limit = about.get("train_limit")
        lines += ["#" + table[0], *table[1:], ""]
        lines.append(
            f"Settings: {'first ' + format(limit, ',') + ' train tweets a task' if limit else 'full train sets'}"
            f"{'; ' + overrides if overrides else ''}; the suite's defaults otherwise "
            f"(`{about['suite_file']}`); seeds {', '.join(map(str, about['seeds']))}."
        )
        lines += [
            "",
            f"![{table[0].lstrip('# ')}]({os.path.relpath(os.path.join(directory, 'results.svg'), output_dir)})",
            "",
        ]
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", default="results")
    parser.add_argument("-o", "--output", default="RESULTS.md")
    args = parser.parse_args()
    names = sorted(n for n in os.listdir(args.results) if n.endswith(".json")) if os.path.isdir(args.results) else []
    results, curves = [], []
    for name in names:
        with open(os.path.join(args.results, name)) as handle:
            result = json.load(handle)
        if (
            isinstance(result, dict) and "rows" in result and "target" in result
        ):  # a reproduction (not a sweep or a bench)
            results.append(result)
        elif isinstance(result, dict) and result.get("kind") == "adaptation":
            curves.append(result)
    if not results and not curves:
        sys.exit(f"results_md: no results in {args.results}/ (run make repro-semeval17 first)")
    order = ["semeval17", "irony", "wnut17", "ark", "covid"]
    results.sort(
        key=lambda r: (
            order.index(r["target"]) if r["target"] in order else len(order),
            r.get("name", r["target"]) != r["target"],
            r.get("name", ""),
        )
    )
    lines = [
        "# Results",
        "",
        "Generated by `python scripts/results_md.py` from `results/*.json`, which `make repro-<target>` writes "
        "(scripts/repro.py). Do not edit by hand. Every score is on the official test split; "
        "rows (c) and (d) use tweetkit's "
        "own pretraining on the unlabeled corpus below.",
        "",
    ]
    for result in results:
        lines += adaptation_statement(result)
    lines += pretraining_budget(results)
    output_dir = os.path.dirname(os.path.abspath(args.output))
    for curve in curves:
        lines += adaptation_section(curve, args.results, output_dir)
    lines += benchmark_sections(args.results, output_dir)
    for result in results:
        lines += target_section(result)
    if not results:
        return write(args.output, lines, 0)
    corpus = results[0]["corpus"]
    lines += [
        "## Pretraining corpus",
        "",
        f"{corpus['tweets_in']:,} tweets from {', '.join(corpus['sources'])} → langid (en) | normalize | dedup: "
        f"{corpus['after_langid_normalize_dedup']:,}; "
        f"{corpus['removed_as_test_duplicates']:,} more removed as (near-)duplicates of the test sets "
        f"({', '.join(corpus['test_sets'])}) by `tweetkit dedup`; {corpus['tweets']:,} tweets remain.",
        "",
    ]
    curves = [
        (row["pretrain_metrics"], row["row"])
        for r in results
        for row in r["rows"]
        if row.get("pretrain_metrics") and os.path.exists(row["pretrain_metrics"])
    ]
    curves = list(dict(curves).items())
    if curves:
        svg = os.path.join(args.results, "pretrain-loss.svg")
        command = [
            sys.executable,
            "-m",
            "tweetkit",
            "plot",
            *[p for p, _ in curves],
            "-o",
            svg,
            "--keys",
            "loss",
            "--title",
            "MLM training loss",
        ]
        for _, label in curves:
            command += ["--label", label]
        subprocess.run(command, check=True)
        lines += [
            "## Pretraining loss",
            "",
            f"![MLM training loss]({os.path.relpath(svg, os.path.dirname(os.path.abspath(args.output)) or '.')})",
            "",
            "(c) starts from MiniLM's weights with 2,000 new vocabulary rows initialised from their pieces' mean; "
            "(d) from random weights.",
            "",
        ]
    write(args.output, lines, len(results))


def write(output, lines, targets):
    with open(output, "w", encoding="utf-8") as handle:
        handle.write("\n".join(lines))
    print(f"results_md: wrote {output} ({targets} targets)", file=sys.stderr)


if __name__ == "__main__":
    main()
