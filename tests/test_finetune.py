"""finetune, predict and evaluate on real data with tiny models the tests build."""

import json

import pytest
import torch
from conftest import jsonl, make_micro_model, make_tokenizer, read_jsonl, run_cli, run_subprocess, sliced
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoModelForTokenClassification

MICRO = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 128,
    "max_position_embeddings": 130,
    "type_vocab_size": 1,
}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A tiny RoBERTa (random weights) with a tokenizer trained on real tweets, and data subsets."""
    root = tmp_path_factory.mktemp("ft")
    irony = read_jsonl(sliced("tweeteval/irony/train.jsonl"))
    (root / "irony_train.jsonl").write_bytes(jsonl(*irony[:400]))
    (root / "irony_val.jsonl").write_bytes(jsonl(*read_jsonl(sliced("tweeteval/irony/validation.jsonl"), 120)))
    (root / "wnut_train.jsonl").write_bytes(jsonl(*read_jsonl(sliced("wnut17/train.jsonl"), 300)))
    (root / "wnut_val.jsonl").write_bytes(jsonl(*read_jsonl(sliced("wnut17/validation.jsonl"), 80)))
    corpus = [{"text": r["text"]} for r in irony] + [
        {"text": " ".join(r["tokens"])} for r in read_jsonl(sliced("wnut17/train.jsonl"))
    ]
    make_tokenizer(root, [r["text"] for r in corpus], 1500)
    make_micro_model(root, MICRO)
    return root


def finetune(base, out, *args):
    result = run_cli(
        ["finetune", "--model", str(base / "mlm"), "-o", str(out), "-q", "--lr", "5e-4", "--batch-size", "16", *args]
    )
    assert result.exit_code == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_classification_end_to_end(base, tmp_path):
    lines = finetune(
        base,
        tmp_path / "cls",
        "--task",
        "classification",
        "--train",
        str(base / "irony_train.jsonl"),
        "--validation",
        str(base / "irony_val.jsonl"),
        "--epochs",
        "2",
        "--positive-label",
        "irony",
    )
    scored_epochs = [line for line in lines if "validation_f1_pos" in line]
    assert [line["step"] for line in scored_epochs] == [25, 50]  # 400 examples / 16: every epoch is scored
    best = lines[-1]["best"]
    assert best["metric"] == "f1_pos" and best["validation_f1_pos"] == max(
        e["validation_f1_pos"] for e in scored_epochs
    )
    assert best["best_step"] == max(scored_epochs, key=lambda e: e["validation_f1_pos"])["step"]
    model = AutoModelForSequenceClassification.from_pretrained(tmp_path / "cls")
    assert model.config.id2label == {0: "irony", 1: "non_irony"}
    predicted = run_cli(["predict", "--model", str(tmp_path / "cls")], stdin=(base / "irony_val.jsonl").read_bytes())
    rows = predicted.records()
    assert [r["id"] for r in rows] == [r["id"] for r in read_jsonl(base / "irony_val.jsonl")]
    assert all(r["pred"] in ("irony", "non_irony") and abs(sum(r["scores"].values()) - 1) < 1e-4 for r in rows)
    scored = run_cli(["evaluate", "-q", "--positive-label", "irony"], stdin=predicted.stdout)
    direct = run_cli(
        ["evaluate", "-q", "--model", str(tmp_path / "cls"), "--positive-label", "irony", str(base / "irony_val.jsonl")]
    )
    assert json.loads(scored.stdout) == json.loads(direct.stdout)
    # The saved model is the best epoch's: scoring it again gives the validation figure it was kept for.
    assert json.loads(direct.stdout)["f1_pos"] == pytest.approx(best["validation_f1_pos"], abs=1e-9)


def test_tagging_first_subword_and_entity_f1(base, tmp_path):
    finetune(
        base,
        tmp_path / "ner",
        "--task",
        "tagging",
        "--train",
        str(base / "wnut_train.jsonl"),
        "--validation",
        str(base / "wnut_val.jsonl"),
        "--epochs",
        "2",
    )
    model = AutoModelForTokenClassification.from_pretrained(tmp_path / "ner")
    assert "B-location" in model.config.label2id
    result = run_cli(["predict", "--model", str(tmp_path / "ner"), "--field", "tokens", str(base / "wnut_val.jsonl")])
    assert result.exit_code == 0, result.stderr
    rows = result.records()
    assert all(len(r["pred_tags"]) == len(r["tokens"]) for r in rows)
    scored = json.loads(run_cli(["evaluate", "-q"], stdin=result.stdout).stdout)
    assert scored["task"] == "tagging"
    # Recorded (torch 2.13.0, CPU): two epochs teach the micro model the O tag only, not yet an entity.
    assert {k: scored[k] for k in ("f1", "precision", "recall", "token_accuracy")} == pytest.approx(
        {"f1": 0.0, "precision": 0.0, "recall": 0.0, "token_accuracy": 0.9071322436849926}, abs=1e-9
    )
    bad = run_cli(
        ["predict", "--model", str(tmp_path / "ner"), "--field", "tokens"], stdin=jsonl({"tokens": "not a list"})
    )
    assert bad.exit_code == 1 and "<stdin>:1: field 'tokens' is not a list of strings" in bad.stderr


def test_task_first_subword_labels(base):
    from tweetkit.modeling import load_tokenizer
    from tweetkit.tasks.supervised import TaggingTask

    tokenizer = load_tokenizer(str(base / "tok"))
    words, tags = ["Supercalifragilistic", "in", "London"], ["B-person", "O", "B-location"]
    task = TaggingTask(tokenizer, [(words, tags)], [], ["B-location", "B-person", "O"], 128, 8, 0)
    encoded = tokenizer(words, is_split_into_words=True)
    labels = task.train_labels[0]
    firsts = [
        i for i, w in enumerate(encoded.word_ids()) if w is not None and (i == 0 or encoded.word_ids()[i - 1] != w)
    ]
    assert [labels[i] for i in firsts] == [1, 2, 0]
    assert sum(label != -100 for label in labels) == 3 and len(labels) > 5  # the long word has several pieces


def test_regression_and_multilabel(base, tmp_path):
    rows = read_jsonl(sliced("tweeteval/emotion/train.jsonl"), 300)
    regression = [{"text": r["text"], "label": float(len(r["text"].split()))} for r in rows]
    multi = [{"text": r["text"], "label": [r["label"]] + (["long"] if len(r["text"]) > 80 else [])} for r in rows]
    (tmp_path / "reg.jsonl").write_bytes(jsonl(*regression))
    (tmp_path / "multi.jsonl").write_bytes(jsonl(*multi))
    reg = finetune(
        base,
        tmp_path / "reg",
        "--task",
        "regression",
        "--train",
        str(tmp_path / "reg.jsonl"),
        "--validation",
        str(tmp_path / "reg.jsonl"),
        "--epochs",
        "1",
    )
    # recorded (torch 2.13.0, CPU, one thread: see conftest)
    assert reg[-1]["best"].pop("metric") == "pearson"
    # Spearman ranks 300 predictions, some nearly tied: the vector unit's rounding (AVX2, AVX-512,
    # AMX) can swap two of them, a step of about 1e-4, so it gets a tolerance of its own.
    assert reg[-1]["best"].pop("validation_spearman") == pytest.approx(-0.5530687127535503, abs=1e-3)
    assert reg[-1]["best"] == pytest.approx(
        {"seed": 1, "best_step": 18, "best_epoch": 1, "validation_pearson": -0.5871627262838844,
         "validation_mse": 292.6261631047411,
         "validation_mae": 15.77747198820114, "validation_count": 300}, rel=1e-4, abs=1e-5)  # fmt: skip
    predicted = run_cli(["predict", "--model", str(tmp_path / "reg")], stdin=jsonl({"text": "hello there"})).records()
    assert isinstance(predicted[0]["pred"], float)
    ml = finetune(
        base,
        tmp_path / "ml",
        "--task",
        "multilabel",
        "--train",
        str(tmp_path / "multi.jsonl"),
        "--validation",
        str(tmp_path / "multi.jsonl"),
        "--epochs",
        "1",
    )
    assert ml[-1]["best"] == pytest.approx(  # recorded (torch 2.13.0, CPU)
        {"seed": 1, "metric": "macro_f1", "best_step": 18, "best_epoch": 1, "validation_top1_accuracy": 0.65,
         "validation_micro_f1": 0.49056603773584906, "validation_macro_f1": 0.15757575757575756,
         "validation_jaccard": 0.325, "validation_exact_match": 0.0, "validation_count": 300}, abs=1e-6)  # fmt: skip
    out = run_cli(["predict", "--model", str(tmp_path / "ml")], stdin=jsonl({"text": "so angry today"})).records()[0]
    assert isinstance(out["pred"], list) and set(out["scores"]) == {"anger", "joy", "long", "optimism", "sadness"}


def test_seeds_patience_and_sweep(base, tmp_path):
    lines = finetune(
        base,
        tmp_path / "seeds",
        "--task",
        "classification",
        "--train",
        str(base / "irony_train.jsonl"),
        "--validation",
        str(base / "irony_val.jsonl"),
        "--epochs",
        "1",
        "--seeds",
        "1,2",
    )
    assert (tmp_path / "seeds" / "seed-1" / "config.json").exists() and (
        tmp_path / "seeds" / "seed-2" / "config.json"
    ).exists()
    summary = lines[-1]["mean_std"]["validation_macro_f1"]
    # Recorded (torch 2.13.0, CPU): after one epoch both seeds answer the majority class, so their scores agree;
    # their weights must not (each seed draws its own head).
    assert summary == pytest.approx({"mean": 0.329608938547486, "std": 0.0}, abs=1e-9)
    assert lines[-1]["mean_std"]["validation_accuracy"] == pytest.approx({"mean": 0.49166666666666664, "std": 0.0})
    one, two = (load_file(tmp_path / "seeds" / f"seed-{seed}" / "model.safetensors") for seed in (1, 2))
    assert not torch.equal(one["classifier.out_proj.weight"], two["classifier.out_proj.weight"])
    stopped = finetune(
        base,
        tmp_path / "stop",
        "--task",
        "classification",
        "--train",
        str(base / "irony_train.jsonl"),
        "--validation",
        str(base / "irony_val.jsonl"),
        "--epochs",
        "6",
        "--patience",
        "1",
        "--lr",
        "0",
    )
    epochs_run = [line["epoch"] for line in stopped if "loss" in line]
    assert max(epochs_run) == 2.0  # no improvement after epoch 1 with lr 0: stop after one more
    sweep = finetune(
        base,
        tmp_path / "sweep",
        "--task",
        "classification",
        "--train",
        str(base / "irony_train.jsonl"),
        "--validation",
        str(base / "irony_val.jsonl"),
        "--epochs",
        "1",
        "--sweep",
        "lr=1e-4,5e-4",
    )
    trials = [line for line in sweep if "trial" in line and "state" in line]
    assert sorted(t["lr"] for t in trials) == [1e-4, 5e-4] and all(t["state"] == "complete" for t in trials)
    assert sweep[-1]["sweep_best"]["value"] == max(t["value"] for t in trials)


def test_tfidf_baseline(base, tmp_path):
    result = run_cli(
        [
            "finetune",
            "--model",
            "tfidf",
            "--task",
            "classification",
            "--train",
            str(sliced("tweeteval/irony/train.jsonl")),
            "--validation",
            str(sliced("tweeteval/irony/validation.jsonl")),
            "-o",
            str(tmp_path / "tfidf"),
            "-q",
        ]
    )
    assert result.exit_code == 0, result.stderr
    best = json.loads(result.stdout)["best"]
    assert best == pytest.approx(  # recorded: the TF-IDF baseline beats the majority class (0.535 here)
        {"model": "linear", "validation_accuracy": 0.63, "validation_macro_f1": 0.6298519407763106,
         "validation_macro_recall": 0.6316953070043212, "validation_count": 200}, abs=1e-9)  # fmt: skip
    scored = json.loads(
        run_cli(
            ["evaluate", "-q", "--model", str(tmp_path / "tfidf"), str(sliced("tweeteval/irony/validation.jsonl"))]
        ).stdout
    )
    assert scored["accuracy"] == pytest.approx(best["validation_accuracy"])


def test_linear_tagging_baseline(tmp_path):
    # ARK POS: 300 training tweets; a per-word logistic regression tags most validation words right.
    train = tmp_path / "train.jsonl"
    train.write_text(
        "".join(sliced("ark_pos/train.jsonl").read_text(encoding="utf-8").splitlines(keepends=True)[:300]),
        encoding="utf-8",
    )
    validation = sliced("ark_pos/validation.jsonl")
    result = run_cli(
        [
            "finetune",
            "--model",
            "tfidf",
            "--task",
            "tagging",
            "--train",
            str(train),
            "--validation",
            str(validation),
            "-o",
            str(tmp_path / "pos"),
            "-q",
        ]
    )
    assert result.exit_code == 0, result.stderr
    best = json.loads(result.stdout)["best"]
    assert 0.75 < best["validation_token_accuracy"] < 1.0
    scored = json.loads(run_cli(["evaluate", "-q", "--model", str(tmp_path / "pos"), str(validation)]).stdout)
    assert scored["token_accuracy"] == pytest.approx(best["validation_token_accuracy"])
    # predict: one tag per word, from the tag set of the training data.
    output = run_cli(
        ["predict", "--model", str(tmp_path / "pos"), "--field", "tokens"],
        stdin=jsonl({"tokens": ["@USER", "lol", "this", "is", "great", "!"]}, {"tokens": []}),
    ).stdout
    predicted = [json.loads(line) for line in output.splitlines()]
    assert (
        len(predicted[0]["pred_tags"]) == 6 and predicted[0]["pred_tags"][0] == "@" and predicted[1]["pred_tags"] == []
    )


def test_word_shape_and_features():
    from tweetkit.linear import word_features, word_shape

    assert [word_shape(w) for w in ["Obama2020", "lol", "#NYC", "3:30"]] == ["Xx0", "x", "#X", "0:0"]
    first, second = word_features(["#Obama", "wins"])
    assert {"w=#obama", "w=obama", "hashtag", "first", "w-1=<s>", "w+1=wins"} <= set(first) and "w-1=#obama" in second


def test_finetune_errors(base, tmp_path):
    (tmp_path / "bad.jsonl").write_text('{"text": "x"}\n')
    missing_label = run_cli(
        [
            "finetune",
            "--model",
            str(base / "mlm"),
            "--task",
            "classification",
            "--train",
            str(tmp_path / "bad.jsonl"),
            "-o",
            str(tmp_path / "o"),
        ]
    )
    assert missing_label.exit_code == 1 and f"{tmp_path / 'bad.jsonl'}:1: missing field 'label'" in missing_label.stderr
    no_model = run_cli(["evaluate", "--model", str(tmp_path / "nothing"), str(base / "irony_val.jsonl")])
    assert no_model.exit_code == 1 and "cannot load model" in no_model.stderr and "Traceback" not in no_model.stderr
    (tmp_path / "empty.jsonl").write_text("")
    empty_validation = run_cli(
        [
            "finetune",
            "--model",
            "tfidf",
            "--task",
            "classification",
            "--train",
            str(base / "irony_train.jsonl"),
            "--validation",
            str(tmp_path / "empty.jsonl"),
            "-o",
            str(tmp_path / "o"),
        ]
    )
    assert empty_validation.exit_code == 1 and "no validation examples" in empty_validation.stderr
    assert (
        run_cli(
            [
                "finetune",
                "--model",
                "tfidf",
                "--task",
                "classification",
                "--train",
                str(base / "irony_train.jsonl"),
                "-o",
                str(tmp_path / "t"),
                "-q",
            ]
        ).exit_code
        == 0
    )
    (tmp_path / "one_tag.jsonl").write_text(json.dumps({"tokens": ["hi", "there"], "tags": ["O", "O"]}) + "\n")
    one_tag = run_cli(
        [
            "finetune",
            "--model",
            "tfidf",
            "--task",
            "tagging",
            "--train",
            str(tmp_path / "one_tag.jsonl"),
            "-o",
            str(tmp_path / "one"),
        ]
    )
    assert (
        one_tag.exit_code == 1
        and "at least two different labels" in one_tag.stderr
        and "Traceback" not in one_tag.stderr
    )
    unknown = run_cli(
        ["evaluate", "--model", str(tmp_path / "t")], stdin=jsonl({"text": "so ironic", "label": "sarcasm"})
    )
    assert unknown.exit_code == 1 and "sarcasm" in unknown.stderr and "Traceback" not in unknown.stderr


def test_evaluate_mlm_top_k(base):
    result = run_cli(
        ["evaluate", "--mlm", "--model", str(base / "mlm"), "--top-k", "1,5", "-q", str(base / "irony_val.jsonl")]
    )
    assert result.exit_code == 0, result.stderr
    scores = json.loads(result.stdout)
    assert scores["task"] == "mlm" and scores["masked_words"] == 120
    assert 0 <= scores["top1_accuracy"] <= scores["top5_accuracy"] <= 1 and scores["pseudo_perplexity"] > 1
    again = json.loads(
        run_cli(
            ["evaluate", "--mlm", "--model", str(base / "mlm"), "--top-k", "1,5", "-q", str(base / "irony_val.jsonl")]
        ).stdout
    )
    assert again == scores  # the masked word of each tweet is seeded


def test_bucketed_batches_stay_aligned_with_the_loop_slices():
    """Every slice the loop takes (batch_size examples) is one length bucket: a short
    batch in the middle would misalign all later slices and mix short and long tweets."""
    import random

    from tweetkit.tasks.supervised import bucketed_order

    rng = random.Random(0)
    lengths = [rng.randint(5, 120) for _ in range(3000)]  # 3000 = 93 full batches of 32 + 24
    for epoch in range(3):
        order = bucketed_order(lengths, 32, seed=1, epoch=epoch)
        assert sorted(order) == list(range(3000))  # a permutation: nothing lost
        padded = 0
        for start in range(0, 93 * 32, 32):
            batch = [lengths[i] for i in order[start : start + 32]]
            padded += 32 * max(batch) - sum(batch)
        # sorted within chunks of 50 batches, a slice spans ~1/50 of the length range
        assert padded / sum(lengths[i] for i in order[: 93 * 32]) < 0.05


def test_inference_batches_hold_one_length_each_and_every_index_once():
    """predict's batches need no padding (so no attention mask): one token length per batch."""
    import random

    from tweetkit.inference import equal_length_batches

    rng = random.Random(0)
    lengths = [rng.randint(5, 40) for _ in range(1000)]
    batches = equal_length_batches(lengths, 16)
    assert sorted(i for batch in batches for i in batch) == list(range(1000))
    assert all(1 <= len(batch) <= 16 and len({lengths[i] for i in batch}) == 1 for batch in batches)
    assert [lengths[b[0]] for b in batches] == sorted(lengths[b[0]] for b in batches)  # shortest first
    # one short batch at most per length: about as few batches as padded ones would need
    assert len(batches) <= 1000 // 16 + len(set(lengths))


@pytest.mark.slow  # inductor compiles C++ kernels: minutes on 2 cores
def test_compiled_finetune_does_not_recompile_per_length(base, tmp_path, monkeypatch):
    """finetune's batches hold tweets of one length bucket each, so their shapes change at
    nearly every step; with dynamic shapes the graph is compiled for the first shapes and
    reused, not recompiled per length (TORCH_LOGS=recompiles names each recompilation)."""
    monkeypatch.setenv("TORCH_LOGS", "recompiles")
    args = ["finetune", "--model", str(base / "mlm"), "-o", str(tmp_path / "out"), "--task", "classification",
            "--train", str(base / "irony_train.jsonl"), "--epochs", "1", "--batch-size", "16", "-q",
            "--compile"]  # fmt: skip
    result = run_subprocess(args)
    log = result.stderr.decode()
    assert result.returncode == 0, log[-2000:]
    assert json.loads(result.stdout.splitlines()[-1])["best"]["best_step"] == 25  # 400 tweets, batches of 16
    # At most once: the first batch's shapes are compiled static, the next length makes them dynamic.
    assert log.count("Recompiling function") <= 1, log[-3000:]
