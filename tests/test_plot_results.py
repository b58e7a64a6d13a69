"""tweetkit plot (SVG loss curves) and scripts/results_md.py (RESULTS.md from results/*.json)."""

import json
import re
import subprocess
import sys
import xml.etree.ElementTree as ElementTree

from conftest import ROOT, run_cli

from tweetkit.plotting import line_chart, nice_ticks

SVG = "{http://www.w3.org/2000/svg}"


def write_metrics(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def test_plot_draws_one_line_per_metric_and_file(tmp_path):
    a = write_metrics(
        tmp_path / "a.metrics.jsonl",
        [{"step": s, "loss": 9 - s / 10, "lr": 1e-4} for s in range(5, 55, 5)]
        + [{"step": 50, "validation_loss": 8.1}, {"best": {"validation_loss": 8.1}}],
    )
    b = write_metrics(tmp_path / "b.jsonl", [{"step": s, "loss": 8 - s / 20} for s in range(5, 55, 5)])
    out = tmp_path / "loss.svg"
    result = run_cli(
        ["plot", str(a), str(b), "-o", str(out), "--label", "scratch", "--label", "continued", "--title", "MLM"]
    )
    assert result.exit_code == 0, result.stderr
    assert result.stdout == b""  # the chart goes to -o, stdout stays clean
    root = ElementTree.parse(out).getroot()
    lines = root.findall(f"{SVG}polyline")
    assert len(lines) == 2  # scratch loss, continued loss
    dots = root.findall(f"{SVG}circle")
    assert len(dots) == 1  # scratch validation_loss: a single point
    legend = [t.text for t in root.findall(f"{SVG}text")]
    assert (
        "scratch loss" in legend
        and "continued loss" in legend
        and "scratch validation_loss" in legend
        and "MLM" in legend
    )
    # 10 points per line, drawn left to right, the falling loss rising on screen (SVG y grows downwards)
    points = [tuple(map(float, p.split(","))) for p in lines[0].get("points").split()]
    assert len(points) == 10 and points == sorted(points) and points[0][1] < points[-1][1]


def test_plot_errors(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"step": 1, "loss": 2}\nnot json\n', encoding="utf-8")
    result = run_cli(["plot", str(bad), "-o", str(tmp_path / "x.svg")])
    assert result.exit_code == 1 and result.stderr.strip() == f"tweetkit plot: {bad}:2: invalid JSON"
    skipped = run_cli(["plot", str(bad), "-o", str(tmp_path / "skip.svg"), "--on-error", "skip"])
    assert skipped.exit_code == 0 and (tmp_path / "skip.svg").exists()
    empty = write_metrics(tmp_path / "other.jsonl", [{"step": 1, "accuracy": 0.5}])
    result = run_cli(["plot", str(empty), "-o", str(tmp_path / "x.svg")])
    assert result.exit_code == 1 and "no records with 'step'" in result.stderr
    assert not (tmp_path / "x.svg").exists()


def test_nice_ticks_cover_the_range():
    assert nice_ticks(0, 10) == [0, 2, 4, 6, 8, 10]
    ticks = nice_ticks(7.93, 9.02)
    assert ticks[0] >= 7.93 and ticks[-1] <= 9.02 and len(ticks) >= 3
    assert len(re.findall("<polyline", line_chart([("x", [(0, 1.0), (1, float("nan")), (2, 0.5)])]))) == 1


def test_results_md_table_and_paired_seed_difference(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    curve = write_metrics(
        results / "pretrain-minilm-tweets.metrics.jsonl", [{"step": s, "loss": 4 - s / 100} for s in range(5, 100, 5)]
    )

    def row(key, name, values, **extra):
        mean = sum(values) / len(values)
        std = (sum((v - mean) ** 2 for v in values) / (len(values) - 1)) ** 0.5
        return {
            "row": key,
            "name": name,
            "seeds": [1, 2, 3],
            "test": {"macro_recall": {"mean": mean, "std": std, "values": values}},
            "finetune_minutes": 5.0,
            **extra,
        }

    result = {
        "target": "semeval17",
        "metrics": ["macro_recall"],
        "minutes": 42.0,
        "hardware": "2 CPU cores",
        "command": "scripts/repro.py semeval17",
        "data": {"train": 8000, "validation": 1000, "test": 12284},
        "settings": {
            "train_limit": 8000,
            "epochs": "1",
            "lr": "5e-5",
            "batch_size": "32",
            "tiny_epochs": "3",
            "tiny_lr": "2e-4",
            "seeds": "1,2,3",
            "pretrain_steps": "300",
            "pretrain_batch_size": "32",
        },
        "corpus": {
            "sources": ["a.jsonl"],
            "tweets_in": 100,
            "after_langid_normalize_dedup": 90,
            "removed_as_test_duplicates": 3,
            "test_sets": ["t.jsonl"],
            "tweets": 87,
        },
        "rows": [
            row("minilm", "(b) MiniLM", [68.0, 69.0, 70.0]),
            row(
                "minilm-tweets",
                "(c) MiniLM + tweets",
                [69.0, 70.5, 70.5],
                pretrain_minutes=10.0,
                pretrain_metrics=str(curve),
            ),
            row(
                "minilm-tweets-basevocab",
                "(c') MiniLM + tweets, base vocabulary",
                [67.0, 69.0, 68.0],
                pretrain_minutes=10.0,
            ),
        ],
    }
    (results / "semeval17.json").write_text(json.dumps(result), encoding="utf-8")
    output = tmp_path / "RESULTS.md"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts/results_md.py"), "--results", str(results), "-o", str(output)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    text = output.read_text(encoding="utf-8")
    assert "| (b) MiniLM | 69.0 ± 1.0 | 3 | 5 |" in text
    assert "| (c) MiniLM + tweets | 70.0 ± 0.9 | 3 | 15 |" in text
    assert "*73.4*" in text  # BERTweet's published AvgRec beside the rows
    # paired by seed: +1.0, +1.5, +0.5 -> +1.00 ± 0.50: beats
    assert "(c) continued pretraining beats (b) direct fine-tuning" in text and "(c) − (b) = +1.00 ± 0.50" in text
    assert (
        "Ablation (c') MiniLM + tweets, base vocabulary: AvgRec 68.00 ± 1.00; "
        "(c') − (b) = -1.00 ± 1.00 (per seed: -1.00, +0.00, -2.00)." in text
    )
    assert "What (c) amounted to: 300 steps of 32 packed rows of 128 tokens (~1.2M tokens) in 10 minutes" in text
    assert "the MLM loss fell from 3.90 to 3.10" in text
    assert (results / "pretrain-loss.svg").exists() and "pretrain-loss.svg)" in text


def test_results_md_named_run_beside_the_default_and_ablation_without_c(tmp_path):
    """A run given its own --name (e.g. the full train set) gets its own section, after the
    default run of its target, and its (c'') row is compared with (b) even without (c)."""
    results = tmp_path / "results"
    results.mkdir()

    def result(name, rows):
        return {
            "target": "semeval17",
            "name": name,
            "metrics": ["macro_recall"],
            "minutes": 80.0,
            "hardware": "2 CPU cores",
            "command": "repro.py",
            "data": {"train": 48500, "validation": 1000, "test": 12284},
            "settings": {
                "train_limit": 0,
                "epochs": "1",
                "lr": "5e-5",
                "batch_size": "32",
                "tiny_epochs": "3",
                "tiny_lr": "2e-4",
                "seeds": "1",
            },
            "corpus": {
                "sources": ["a.jsonl"],
                "tweets_in": 100,
                "after_langid_normalize_dedup": 90,
                "removed_as_test_duplicates": 3,
                "test_sets": ["t.jsonl"],
                "tweets": 87,
            },
            "rows": [
                {
                    "row": key,
                    "name": label,
                    "seeds": [1],
                    "test": {"macro_recall": {"mean": v, "std": 0.0, "values": [v]}},
                    "finetune_minutes": 20.0,
                }
                for key, label, v in rows
            ],
        }

    (results / "a-full.json").write_text(
        json.dumps(
            result(
                "semeval17-full",
                [("minilm", "(b) MiniLM", 70.9), ("minilm-tweets-warmhead", "(c'') MiniLM + warm head", 72.4)],
            )
        )
    )
    (results / "semeval17.json").write_text(json.dumps(result("semeval17", [("minilm", "(b) MiniLM", 69.0)])))
    output = tmp_path / "RESULTS.md"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts/results_md.py"), "--results", str(results), "-o", str(output)],
        capture_output=True,
        text=True,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr
    text = output.read_text(encoding="utf-8")
    default, named = (
        text.index("## SemEval-2017 4A sentiment (`make repro-semeval17`)"),
        text.index("## SemEval-2017 4A sentiment, semeval17-full (`make repro-semeval17 NAME=semeval17-full`)"),
    )
    assert default < named
    assert (
        "**Domain adaptation on SemEval-2017 4A sentiment, semeval17-full:** "
        "(b) direct fine-tuning: AvgRec 70.90 ± 0.00. "
        "The goal of 72.0 AvgRec for (c) is met at these settings (best (c) variant: 72.40)." in text
    )
    assert "(c'') − (b) = +1.50 ± 0.00 (per seed: +1.50)." in text


def test_mapped_accuracy_from_a_summed_confusion_matrix_equals_scoring_the_mapped_labels():
    """RESULTS.md derives COVID's 3-class accuracy of older runs from their 5-class confusion
    matrices: it must equal what `evaluate --label-map` computes from the labels themselves."""
    import random

    sys.path.insert(0, str(ROOT / "scripts"))
    import results_md

    from tweetkit.kinds import get
    from tweetkit.metrics import classification_metrics, parse_label_map

    map_labels = get("classification").map_labels

    labels = ["Extremely Negative", "Negative", "Neutral", "Positive", "Extremely Positive"]
    rng = random.Random(3)
    gold = [rng.choice(labels) for _ in range(500)]
    pred = [g if rng.random() < 0.5 else rng.choice(labels) for g in gold]
    matrix = [[sum(1 for g, p in zip(gold, pred) if (g, p) == (a, b)) for b in labels] for a in labels]
    label_map = parse_label_map("Extremely Positive=Positive,Extremely Negative=Negative")
    mapped = classification_metrics([map_labels(g, label_map) for g in gold], [map_labels(p, label_map) for p in pred])[
        "accuracy"
    ]
    from_matrix = results_md.mapped_accuracy({"labels": labels, "matrix": matrix}, label_map)
    assert abs(from_matrix - 100 * mapped) < 1e-9
    assert from_matrix > 100 * classification_metrics(gold, pred)["accuracy"]  # merging only adds agreements
