"""tweetkit benchmark: a two-task suite of the test's own, run end to end on a micro model
through the real finetune/predict/evaluate subprocesses; resume, changed settings, the
official pooled scorer, suite and data errors."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT, SUBPROCESS_ENV, jsonl, make_micro_model, make_tokenizer, run_cli

from tweetkit.metrics import stance_favor_against_f1

WORDS = {
    "pos": ["good", "great", "lovely", "happy"],
    "neg": ["bad", "awful", "sad", "angry"],
    "neu": ["table", "chair", "window", "paper"],
    "favor": ["support", "yes", "agree", "for"],
    "against": ["oppose", "no", "reject", "never"],
    "none": ["lunch", "bus", "rain", "music"],
}

SUITE = """
name = "tiny"
title = "Tiny suite"
aggregate = "ALL"

[defaults]
epochs = {epochs}
lr = 3e-3
max_length = 16
batch_size = 8
patience = 0

[[tasks]]
name = "polarity"
data = "polarity"
metric = "f1_pos"
positive_label = "pos"

[[tasks]]
name = "polarity_merged"
predictions_of = "polarity"
label_map = "neg=other,neu=other"
metric = "accuracy"

[[tasks]]
name = "stance_a"
data = "stance_a"
metric = "macro_f1"
group = "stance"

[[groups]]
name = "stance"
metric = "stance_favor_against_f1"

[[published]]
name = "Paper"
source = "Someone et al. 2020, Table 1"
scores = {{ polarity = 70.0, stance = 60.0, ALL = 65.0 }}
"""


def records(labels: list[str], count: int, offset: int) -> list[dict]:
    out = []
    for i in range(count):
        label = labels[i % len(labels)]
        words = WORDS[label]
        text = f"{words[(i + offset) % 4]} {words[(i + offset + 1) % 4]} thing {i}"
        out.append({"id": f"{label}-{offset}-{i}", "text": text, "label": label})
    return out


def write_data(root):
    for task, labels in (("polarity", ["pos", "neg", "neu"]), ("stance_a", ["favor", "against", "none"])):
        folder = root / "data" / task
        folder.mkdir(parents=True)
        for split, count, offset in (("train", 24, 0), ("validation", 9, 1), ("test", 12, 2)):
            (folder / f"{split}.jsonl").write_bytes(jsonl(*records(labels, count, offset)))
    return root / "data"


def write_suite(root, epochs: int = 8):
    path = root / "tiny.toml"
    path.write_text(SUITE.format(epochs=epochs))
    return path


def benchmark(suite, model, data, output, *extra):
    args = [sys.executable, "-m", "tweetkit", "benchmark", str(suite), "--model", str(model), "--data", str(data),
            "-o", str(output), "--workers", "2", "--threads", "2", "-q", *extra]  # fmt: skip
    return subprocess.run(args, capture_output=True, text=True, env=SUBPROCESS_ENV, cwd=ROOT)


def lines(result) -> list[dict]:
    return [json.loads(line) for line in result.stdout.splitlines()]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench")
    data = write_data(root)
    texts = [r["text"] for f in data.glob("*/*.jsonl") for r in map(json.loads, f.read_text().splitlines())]
    make_tokenizer(root, texts, 200)
    model = make_micro_model(root)
    suite = write_suite(root)
    result = benchmark(suite, model, data, root / "out")
    assert result.returncode == 0, result.stderr
    return root, suite, model, data, result


def unit_lines(result) -> dict:
    return {(r["task"], r["seed"]): r for r in lines(result) if "task" in r}


def test_two_task_suite_end_to_end(first_run):
    root, _, _, _, result = first_run
    out = root / "out"
    units = unit_lines(result)
    assert sorted(units) == [("polarity", 1), ("stance_a", 1)]
    assert not any(u["reused"] for u in units.values())
    summary = lines(result)[-1]
    assert sorted(summary["summary"]) == ["ALL", "polarity", "polarity_merged", "stance"]
    saved = json.loads((out / "results.json").read_text())
    assert [r["name"] for r in saved["rows"]] == ["polarity", "polarity_merged", "stance"]
    means = [r["mean"] for r in saved["rows"]]
    assert saved["aggregate"]["mean"] == pytest.approx(sum(means) / 3)
    assert saved["rows"][0]["published"] == [{"name": "Paper", "value": 70.0, "source": "Someone et al. 2020, Table 1"}]
    table = (out / "results.md").read_text()
    assert "| polarity | F1 of the positive class |" in table and "- Paper: Someone et al. 2020, Table 1" in table
    assert "| **ALL** | mean of the rows |" in table
    for name in ("results.png", "results.svg", "units/polarity/seed-1/test.predictions.jsonl"):
        assert (out / name).stat().st_size > 0
    assert not (out / "units/polarity/seed-1/model").exists()  # deleted without --keep-models


def test_each_figure_is_what_evaluate_gives(first_run):
    root = first_run[0]
    unit = root / "out/units/polarity/seed-1"
    rows = {r["name"]: r for r in json.loads((root / "out/results.json").read_text())["rows"]}
    assert any(0 < v < 100 for row in rows.values() for v in row["per_seed"].values())  # a model that learned something
    own = run_cli(["evaluate", str(unit / "test.predictions.jsonl"), "--positive-label", "pos", "-q"]).records()[0]
    assert rows["polarity"]["per_seed"]["1"] == 100 * own["f1_pos"]
    merged = run_cli(["evaluate", str(unit / "test.predictions.jsonl"), "--label-map", "neg=other,neu=other", "-q"])
    assert rows["polarity_merged"]["per_seed"]["1"] == 100 * merged.records()[0]["accuracy"]
    stance = [json.loads(line) for line in (root / "out/units/stance_a/seed-1/test.predictions.jsonl").open()]
    gold, pred = [r["label"] for r in stance], [r["pred"] for r in stance]
    assert rows["stance"]["per_seed"]["1"] == 100 * stance_favor_against_f1(gold, pred)


def test_resume_reruns_only_the_unfinished_unit(first_run, tmp_path):
    root, suite, model, data, _ = first_run
    out = tmp_path / "out"
    shutil.copytree(root / "out", out)
    (out / "units/polarity/seed-1/unit.json").unlink()  # as if killed before it finished
    kept = (out / "units/stance_a/seed-1/unit.json").read_bytes()
    result = benchmark(suite, model, data, out)
    assert result.returncode == 0, result.stderr
    reused = {task: line["reused"] for (task, _), line in unit_lines(result).items()}
    assert reused == {"polarity": False, "stance_a": True}
    assert (out / "units/stance_a/seed-1/unit.json").read_bytes() == kept
    before = json.loads((root / "out/results.json").read_text())["rows"]
    after = json.loads((out / "results.json").read_text())["rows"]
    assert [r["per_seed"] for r in after] == [r["per_seed"] for r in before]


def test_a_changed_setting_reruns_the_unit(first_run, tmp_path):
    """The decision a rerun makes (units.finished, which the resume test sees at work):
    a task whose epochs changed is not finished, the other one still is."""
    from tweetkit.benchmark import suite as suites
    from tweetkit.benchmark import units as work

    root, _, model, data, _ = first_run
    changed = tmp_path / "tiny.toml"
    changed.write_text(SUITE.format(epochs=8).replace('positive_label = "pos"', 'positive_label = "pos"\nepochs = 2'))
    for path, expected in (
        (first_run[1], {"polarity": True, "stance_a": True}),
        (changed, {"polarity": False, "stance_a": True}),
    ):
        suite = suites.load(str(path))
        options = {"train_limit": None, "tuning": {"epochs": None}}
        units = work.plan(suite, suite.trained(), [1], str(model), str(data), str(root / "out"), options)
        assert {u.task.name: work.finished(u) is not None for u in units} == expected
    units = work.plan(
        suite,
        suite.trained(),
        [1],
        str(model),
        str(data),
        str(root / "out"),
        {"train_limit": None, "tuning": {"lr": 0.1}},
    )
    assert not any(work.finished(u) for u in units)  # a flag overrides every task


def test_stance_score_pools_targets_as_sklearn_does():
    from sklearn.metrics import f1_score

    gold = ["favor", "against", "none", "against", "favor", "against", "none", "favor"]
    pred = ["favor", "against", "against", "none", "against", "against", "none", "none"]
    expected = f1_score(gold, pred, labels=["favor", "against"], average="macro")
    assert stance_favor_against_f1(gold, pred) == pytest.approx(expected)
    # favor: precision 1/1, recall 1/3 -> 0.5; against: precision 2/4, recall 2/3 -> 4/7
    assert stance_favor_against_f1(gold, pred) == pytest.approx((0.5 + 4 / 7) / 2)


BAD_SUITES = [
    ('name = "x"\nbogus = 1\n[[tasks]]\nname = "a"\ndata = "a"\nmetric = "accuracy"\n', "unknown key 'bogus'"),
    ('name = "x"\n[[tasks]]\nname = "a"\ndata = "a"\n', "tasks[0] (a): missing 'metric'"),
    ('name = "x"\n[[tasks]]\nname = "a"\ndata = "a"\nmetric = "f1"\n', "task a: metric 'f1' is not one of"),
    (
        'name = "x"\n[[tasks]]\nname = "a"\ndata = "a"\nmetric = "accuracy"\ngroup = "g"\n',
        "group 'g' has no [[groups]]",
    ),
    ('name = "x"\n[[tasks]]\nname = "a"\ndata = "a"\nmetric = "f1_pos"\n', "'f1_pos' needs positive_label"),
    ('name = "x"\n[[tasks]]\nname = "a"\ndata = "a"\nmetric = "accuracy"\nepochs = "two"\n', "epochs must be a number"),
    ('name = "x"\n[[tasks]]\nname = "a"\nmetric = "accuracy"\n', "no 'train' path and no 'data' folder"),
    (
        'name = "x"\n[[tasks]]\nname = "a"\ndata = "a"\nmetric = "accuracy"\n'
        '[[published]]\nname = "P"\nsource = "s"\nscores = { b = 1.0 }\n',
        "published P: 'b' is not a row of this suite",
    ),
    ('name = "x"\n[[tasks]\n', "not valid TOML"),
]


@pytest.mark.parametrize("text,message", BAD_SUITES)
def test_a_bad_suite_is_one_line(tmp_path, text, message):
    suite = tmp_path / "bad.toml"
    suite.write_text(text)
    result = run_cli(["benchmark", str(suite), "--model", "linear", "--data", str(tmp_path), "-o", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert result.stderr.count("\n") == 1 and message in result.stderr and str(suite) in result.stderr
    assert not (tmp_path / "o").exists()


def test_missing_or_malformed_data_is_one_line_before_training(tmp_path):
    data = write_data(tmp_path)
    suite = write_suite(tmp_path)
    (data / "stance_a" / "validation.jsonl").unlink()
    args = ["benchmark", str(suite), "--model", "linear", "--data", str(data), "-o", str(tmp_path / "o")]
    result = run_cli(args)
    assert result.exit_code == 1 and result.stderr.count("\n") == 1
    assert f"{data / 'stance_a' / 'validation.jsonl'}: no such file" in result.stderr
    (data / "stance_a" / "validation.jsonl").write_text('{"text": "a"}\n')
    result = run_cli(args)
    assert result.exit_code == 1 and "validation.jsonl:1: no field 'label'" in result.stderr
    assert not (tmp_path / "o").exists()


def test_a_failed_unit_is_one_line_naming_its_log(tmp_path):
    data = write_data(tmp_path)
    (tmp_path / "empty-model").mkdir()
    args = ["benchmark", str(write_suite(tmp_path)), "--model", str(tmp_path / "empty-model"), "--data", str(data)]
    result = run_cli([*args, "-o", str(tmp_path / "o"), "--tasks", "stance_a", "-q"])
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.stderr
    assert "unit stance_a/seed-1: `tweetkit finetune` failed (exit 1)" in result.stderr
    assert str(tmp_path / "o/units/stance_a/seed-1/finetune.log") in result.stderr
    assert not (tmp_path / "o/units/stance_a/seed-1/unit.json").exists()


def test_unknown_suite_and_task_are_usage_errors(tmp_path):
    result = run_cli(["benchmark", "nosuch", "--model", "linear", "--data", str(tmp_path), "-o", str(tmp_path / "o")])
    assert result.exit_code == 2 and "not one of bertweet, covid19, tweeteval" in result.stderr
    result = run_cli(
        ["benchmark", "tweeteval", "--tasks", "emoj", "--model", "linear", "--data", str(tmp_path), "-o", "x"]
    )
    assert result.exit_code == 2 and "--tasks emoj: not a task of suite tweeteval" in result.stderr


def test_shipped_suites_load():
    from tweetkit.benchmark import suite

    tweeteval = suite.load("tweeteval")
    assert tweeteval.rows() == ["emoji", "emotion", "hate", "irony", "offensive", "sentiment", "stance"]
    assert tweeteval.task("sentiment").train == "semeval2017/train.jsonl"
    assert [p.scores["ALL"] for p in tweeteval.published if p.name == "RoBERTa-Base"] == [61.3]
    assert suite.load("covid19").task("covid3").predictions_of == "covid5"
    assert len(suite.load("bertweet").trained()) == 6
    assert os.path.isfile(suite.resolve_path("bertweet"))


def test_precision_override_reaches_finetune_and_is_a_setting(first_run):
    """--precision changes results, so it is in each unit's settings (a changed precision
    reruns the unit) and it is passed to `tweetkit finetune`."""
    from tweetkit.benchmark import suite as suites
    from tweetkit.benchmark import units as work

    root, suite_path, model, data, _ = first_run
    suite = suites.load(str(suite_path))
    options = {"train_limit": None, "tuning": {"precision": "bf16"}}
    units = work.plan(suite, suite.trained(), [1], str(model), str(data), str(root / "out"), options)
    assert not any(work.finished(u) for u in units)
    runtime = work.Runtime(threads=1, device="cpu", keep_models=False)
    args = work.finetune_args(units[0], runtime, "model-dir")
    assert args[args.index("--precision") + 1] == "bf16"
    default = work.plan(
        suite, suite.trained(), [1], str(model), str(data), str(root / "out"), {"train_limit": None, "tuning": {}}
    )
    assert "--precision" not in work.finetune_args(default[0], runtime, "model-dir")
