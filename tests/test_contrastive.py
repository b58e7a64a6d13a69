"""`pretrain --objective simcse`: unsupervised SimCSE on packed rows, on the real MiniLM."""

import json

import pytest
import torch
import torch.nn.functional as F
from conftest import jsonl, minilm, read_jsonl, run_cli, sliced
from safetensors.torch import load_file

from tweetkit.text.normalize import TweetNormalizer


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("simcse")
    normalize = TweetNormalizer()
    texts = [normalize(r["text"]) for r in read_jsonl(sliced("semeval2017/train.jsonl"), 260)]
    (root / "train.jsonl").write_bytes(jsonl(*[{"text": t} for t in texts[:200]]))
    (root / "valid.jsonl").write_bytes(jsonl(*[{"text": t} for t in texts[200:]]))
    return root


def make_task(setup, temperature=0.05):
    from tweetkit.io import StreamOptions
    from tweetkit.modeling import load_tokenizer, position_offset
    from tweetkit.tasks.contrastive import SimCSETask
    from tweetkit.tasks.mlm import tokenize_corpus
    from tweetkit.train.continued import load_for_continued_pretraining

    tok = load_tokenizer(minilm())
    corpus = tokenize_corpus(
        [str(setup / "train.jsonl")], tok, StreamOptions(quiet=True), str(setup / "cache"), log=lambda m: None
    )
    model, _ = load_for_continued_pretraining(minilm(), tok, "mean", 0, log=lambda m: None)
    model.eval()
    return SimCSETask(corpus, None, tok, 128, 0, position_offset(model), temperature=temperature), model, tok


def alone(model, tok, texts):
    """Each tweet encoded by itself, mean-pooled over its tokens (sentence-transformers' pooling)."""
    out = []
    with torch.no_grad():
        for text in texts:
            encoded = tok(text, return_tensors="pt", truncation=True, max_length=128)
            out.append(model.base_model(**encoded).last_hidden_state[0].mean(0))
    return torch.stack(out)


def test_packed_tweets_embed_as_they_would_alone_and_pair_with_their_other_view(setup):
    task, model, tok = make_task(setup)
    rows = [0, 1, 2]
    batch = task.collate(rows, epoch=0)
    first, last = task.train_rows[0][0], task.train_rows[2][1]
    assert batch["tweets"] == last - first and last - first > len(rows)  # several tweets per row
    texts = [r["text"] for r in read_jsonl(str(setup / "train.jsonl"), last)][first:last]
    module = task.wrap(model)
    with torch.no_grad():
        embeddings = module(*(batch[k] for k in ("input_ids", "segments", "position_ids", "token_positions",
                                                 "tweet_index")), batch["tweets"])  # fmt: skip
        expected = alone(model, tok, texts)
        torch.testing.assert_close(embeddings[: len(texts)], expected, atol=2e-5, rtol=1e-4)
        torch.testing.assert_close(embeddings[len(texts) :], expected, atol=2e-5, rtol=1e-4)  # no dropout in eval
        # InfoNCE: each tweet's positive is its own other view, the negatives the batch's other tweets
        loss, count = task.loss(module, batch)
        normal = F.normalize(expected, dim=-1)
        scores = normal @ normal.T / 0.05
        assert count == len(texts)
        expected = F.cross_entropy(scores, torch.arange(len(texts)), reduction="sum")
        torch.testing.assert_close(loss, expected, atol=1e-3, rtol=1e-4)


def simcse(setup, out, *args, code=0):
    command = ["pretrain", "--train", str(setup / "train.jsonl"), "--tokenizer", minilm(), "--init-from", minilm(),
               "-o", str(out), "--cache-dir", str(setup / "cache"), "--objective", "simcse", "--max-length", "64",
               "--batch-size", "8", "--lr", "3e-5", "--log-every", "1", *args]  # fmt: skip
    result = run_cli(command)
    assert result.exit_code == code, result.stderr
    return result


def test_the_two_views_differ_by_dropout_in_training_and_make_the_loss(setup):
    task, model, _ = make_task(setup)
    batch = task.collate([0, 1, 2], epoch=0)
    module = task.wrap(model)
    module.train()  # as the training loop runs it: the views differ only by their dropout draws
    names = ("input_ids", "segments", "position_ids", "token_positions", "tweet_index")
    with torch.no_grad():
        torch.manual_seed(0)
        first, second = module(*(batch[k] for k in names), batch["tweets"]).chunk(2)
        torch.manual_seed(0)  # the same draws again: the loss is made of these two views
        loss, count = task.loss(module, batch)
    assert count == batch["tweets"] == len(first)
    cosines = F.cosine_similarity(first, second)
    assert bool((cosines < 0.999).all()), cosines  # each view drew its own dropout
    scores = F.normalize(first, dim=-1) @ F.normalize(second, dim=-1).T / 0.05
    torch.testing.assert_close(loss, F.cross_entropy(scores, torch.arange(count), reduction="sum"))
    module.eval()  # without dropout the two views are one
    with torch.no_grad():
        same_first, same_second = module(*(batch[k] for k in names), batch["tweets"]).chunk(2)
    torch.testing.assert_close(same_first, same_second)


def test_simcse_pretraining_adapts_the_encoder_deterministically_and_keeps_the_best(setup, tmp_path):
    from transformers import AutoModel

    args = ["--max-steps", "6", "--validation", str(setup / "valid.jsonl"), "--eval-every", "2", "--keep-best"]
    first = simcse(setup, tmp_path / "a", *args)
    records = first.records()
    scored = {m["step"]: m for m in records if "validation_loss" in m}
    assert sorted(scored) == [2, 4, 6]
    # Recorded (torch 2.13.0, CPU). MiniLM was itself trained contrastively, so a tweet's two dropout views are
    # already far nearer each other than any other tweet: the losses are small, and every pair is found.
    assert [scored[step]["validation_loss"] for step in (2, 4, 6)] == pytest.approx(
        [7.8e-05, 6.8e-05, 6.4e-05], abs=1e-6
    )
    assert [scored[step]["validation_pair_accuracy"] for step in (2, 4, 6)] == [1.0, 1.0, 1.0]
    losses = [m["loss"] for m in records if "loss" in m]
    assert losses == pytest.approx([2.3e-05, 8e-06, 3e-06, 2e-05, 6e-06, 7e-06], abs=1e-6)
    summary = json.loads((tmp_path / "a" / "validation_metrics.json").read_text())
    assert summary["validation_loss"] == min(m["validation_loss"] for m in scored.values())
    # The same seed gives the same weights; the encoder moved, and the output loads as a plain encoder.
    simcse(setup, tmp_path / "b", *args)
    a, b = load_file(tmp_path / "a" / "model.safetensors"), load_file(tmp_path / "b" / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    base = AutoModel.from_pretrained(minilm())
    adapted = AutoModel.from_pretrained(str(tmp_path / "a"))
    moved = [
        k for k, v in adapted.state_dict().items() if "encoder.layer" in k and not torch.equal(v, base.state_dict()[k])
    ]
    assert moved, "SimCSE left the encoder unchanged"
    config = json.loads((tmp_path / "a" / "tweetkit_train_config.json").read_text())
    assert config["run"]["objective"] == "simcse" and config["run"]["temperature"] == 0.05


def test_simcse_usage_errors(setup, tmp_path):
    scratch = run_cli(["pretrain", "--train", str(setup / "train.jsonl"), "--tokenizer", minilm(), "-o",
                       str(tmp_path / "s"), "--objective", "simcse"])  # fmt: skip
    assert scratch.exit_code == 2 and "cannot run without --init-from" in scratch.stderr
    warm = simcse(setup, tmp_path / "w", "--head-warmup-steps", "2", code=2)
    assert "SimCSE trains no head" in warm.stderr


def test_a_simcse_resume_keeps_the_micro_batch_size(setup, tmp_path):
    # The negatives are the micro-batch's other tweets: another --micro-batch-size is another loss.
    from tweetkit.train import checkpoint

    out = tmp_path / "r"
    simcse(setup, out, "--max-steps", "1", "--micro-batch-size", "4", "-q")
    weights = (out / "checkpoint-1" / "model.safetensors").read_bytes()
    changed = simcse(setup, out, "--max-steps", "1", "--resume", "--micro-batch-size", "2", "-q", code=1)
    assert changed.stderr == (
        f"tweetkit pretrain: --resume: {out / 'checkpoint-1'} was written with other settings "
        "(micro_batch_size: 4 -> 2); use the same settings, or --overwrite to start again\n"
    )
    assert (out / "checkpoint-1" / "model.safetensors").read_bytes() == weights

    mlm = {"run": {"max_length": 64}, "micro_batch_size": 4}
    assert checkpoint.differences(mlm, dict(mlm, micro_batch_size=2), checkpoint.may_differ(mlm)) == []
