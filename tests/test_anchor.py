"""`pretrain --anchor`: L2-SP and embedding distillation toward the starting encoder, on a
micro RoBERTa over the example tweets (no shared data)."""

import json
import shutil

import pytest
import torch
from conftest import MICRO_NO_DROPOUT, ROOT, jsonl, make_micro_model, make_tokenizer, read_jsonl, run_cli
from safetensors.torch import load_file


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("anchor")
    texts = [r["text"] for r in read_jsonl(ROOT / "examples" / "tweets.jsonl")]
    make_tokenizer(root, texts, 600)
    make_micro_model(root, MICRO_NO_DROPOUT)
    (root / "train.jsonl").write_bytes(jsonl(*[{"text": t} for t in texts[:400]]))
    (root / "valid.jsonl").write_bytes(jsonl(*[{"text": t} for t in texts[400:460]]))
    return root


def anchored_task(base, weights, objective="mlm"):
    """(anchored task, its inner task, the model) on the micro model, as pretrain builds them."""
    from tweetkit.io import StreamOptions
    from tweetkit.modeling import load_tokenizer, position_offset
    from tweetkit.recipes.pretrain import PretrainConfig, pretraining_task
    from tweetkit.tasks.anchor import AnchoredTask
    from tweetkit.tasks.mlm import split_mlm_model, tokenize_corpus
    from tweetkit.train.continued import load_for_continued_pretraining

    tok = load_tokenizer(str(base / "tok"))
    corpus = tokenize_corpus([str(base / "train.jsonl")], tok, StreamOptions(quiet=True), str(base / "cache"),
                             log=lambda m: None)  # fmt: skip
    model, _ = load_for_continued_pretraining(str(base / "mlm"), tok, "mean", 0, log=lambda m: None)
    config = PretrainConfig([str(base / "train.jsonl")], str(base / "tok"), str(base / "out"), objective=objective,
                            max_length=64, mask_prob=0.15, temperature=0.05)  # fmt: skip
    inner = pretraining_task(config, corpus, None, tok, 0, position_offset(model))
    return AnchoredTask(inner, split_mlm_model(model)[0], weights), inner, model


def encoder_distance(model, start) -> float:
    return sum(
        float((p.detach() - q).double().pow(2).sum()) for p, q in zip(model.roberta.parameters(), start.parameters())
    )


def test_l2sp_is_zero_at_the_start_and_its_gradient_points_back(base):
    task, _, model = anchored_task(base, {"l2sp": 0.5})
    module = task.wrap(model).eval()
    batch = task.collate([0, 1], epoch=0)
    names = ("input_ids", "segments", "position_ids", "masked_positions")
    _, terms = module(*(batch[k] for k in names))
    assert float(terms["l2sp"].detach()) == 0.0 and float(task.penalty(terms).detach()) == 0.0
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for param in model.roberta.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 1e-2)
    moved = encoder_distance(model, task.start)
    _, terms = module(*(batch[k] for k in names))
    assert float(terms["l2sp"].detach()) == pytest.approx(moved, rel=1e-5) and moved > 1.0
    model.zero_grad()
    task.penalty(terms).backward()
    for param, start in zip(model.roberta.parameters(), task.start.parameters()):
        if param.requires_grad:  # d/dtheta 0.5 ||theta - start||^2 = theta - start
            torch.testing.assert_close(param.grad, param.detach() - start, rtol=1e-6, atol=1e-7)
    # One SGD step on the penalty alone, lr 0.2: theta - start shrinks by 1 - 2 x 0.5 x 0.2, the distance by 0.64.
    with torch.no_grad():
        for param in model.roberta.parameters():
            if param.grad is not None:
                param.sub_(0.2 * param.grad)
    assert encoder_distance(model, task.start) == pytest.approx(0.64 * moved, rel=1e-4)
    assert all(not p.requires_grad for p in task.start.parameters())  # the start never trains


@pytest.mark.parametrize("objective", ["mlm", "simcse"])
def test_distillation_is_zero_at_the_start_and_grows_as_the_encoder_moves(base, objective):
    task, inner, model = anchored_task(base, {"distill": 2.0}, objective)
    module = task.wrap(model).eval()
    batch = task.collate([0, 1, 2], epoch=0)
    loss, count = task.loss(module, batch)
    plain, plain_count = inner.loss(inner.wrap(model).eval(), batch)
    assert count == plain_count and loss.item() == plain.item()  # the anchor adds exactly nothing at the start
    generator = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for param in model.roberta.encoder.parameters():
            param.add_(torch.randn(param.shape, generator=generator) * 0.1)
    from tweetkit.tasks.anchor import SplitTerms
    from tweetkit.tasks.contrastive import number_tweets

    split = SplitTerms(module)
    loss, count = inner.loss(split, batch)
    terms = split.terms[-1]

    assert int(terms["tweets"]) == number_tweets(batch["segments"])["tweets"]
    drift = float(terms["distill_sum"].detach()) / int(terms["tweets"])
    assert drift > 1e-4
    anchored, _ = task.loss(module, batch)
    assert anchored.item() == pytest.approx(loss.item() + 2.0 * drift * count, rel=1e-5)


def pretrain(base, out, *args, code=0):
    command = ["pretrain", "--train", str(base / "train.jsonl"), "--tokenizer", str(base / "tok"), "--init-from",
               str(base / "mlm"), "-o", str(out), "--cache-dir", str(base / "cache"), "--max-length", "64",
               "--batch-size", "8", "--lr", "3e-3", "--log-every", "1", *args]  # fmt: skip
    result = run_cli(command)
    assert result.exit_code == code, result.stderr
    return result


def losses(result):
    return [(m["step"], m["loss"]) for m in result.records() if "loss" in m]


def test_anchored_pretraining_resumes_bit_identically(base, tmp_path):
    args = ["--max-steps", "6", "--anchor", "0.05,2", "--anchor-kind", "both", "--validation",
            str(base / "valid.jsonl"), "--eval-every", "3"]  # fmt: skip
    straight = pretrain(base, tmp_path / "straight", *args)
    assert "anchored to the starting encoder: l2sp x 0.05, distill x 2" in straight.stderr
    plain = pretrain(base, tmp_path / "plain", "--max-steps", "2")
    assert losses(straight)[0] == losses(plain)[0]  # the anchor is zero at the start
    assert losses(straight)[1] != losses(plain)[1]
    scored = [m for m in straight.records() if "validation_loss" in m]
    assert [m["step"] for m in scored] == [3, 6] and 0 < scored[0]["validation_l2sp"] < scored[1]["validation_l2sp"]
    assert 0 < scored[0]["validation_drift"]
    config = json.loads((tmp_path / "straight" / "tweetkit_train_config.json").read_text())
    assert config["run"]["anchor"] == {"l2sp": 0.05, "distill": 2.0}

    resumed = tmp_path / "resumed"
    pretrain(base, resumed, *args, "--save-every", "2", "--keep-checkpoints", "0")
    shutil.rmtree(resumed / "checkpoint-6")  # as if interrupted after step 4
    again = pretrain(base, resumed, *args, "--save-every", "2", "--keep-checkpoints", "0", "--resume")
    assert losses(again) == losses(straight)[4:]
    a, b = load_file(tmp_path / "straight" / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    # Another anchor is another run: refused on resume.
    changed = pretrain(base, resumed, *args[:2], "--anchor", "0.1", "--anchor-kind", "l2sp", *args[6:], "--resume",
                       "-q", code=1)  # fmt: skip
    assert (
        changed.stderr.count("\n") == 1
        and "run.anchor.distill: 2.0 -> null; run.anchor.l2sp: 0.05 -> 0.1" in changed.stderr
    )


def test_anchor_usage_errors(base, tmp_path):
    scratch = run_cli(["pretrain", "--train", str(base / "train.jsonl"), "--tokenizer", str(base / "tok"), "-o",
                       str(tmp_path / "s"), "--anchor", "1"])  # fmt: skip
    assert scratch.exit_code == 2 and scratch.stderr.strip().splitlines() == [
        "tweetkit pretrain: --anchor needs --init-from: it pulls toward the starting model's weights"
    ]
    for args, message in ((["--anchor-kind", "l2sp"], "--anchor-kind needs --anchor"),
                          (["--anchor", "x"], "--anchor x: expected a number"),
                          (["--anchor", "1,2"], "expected one positive weight"),
                          (["--anchor", "-1"], "expected one positive weight"),
                          (["--anchor", "1", "--freeze-base"], "the encoder it anchors does not train")):  # fmt: skip
        result = pretrain(base, tmp_path / "u", *args, code=2)
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not (tmp_path / "u").exists()  # refused before any work
