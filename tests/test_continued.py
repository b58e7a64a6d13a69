"""Continued-pretraining levers: the tied MLM decoder, the head warm-up (LP-FT) in one
resumable run, and keeping the weights of the lowest validation loss."""

import json
import shutil

import pytest
import torch
from conftest import jsonl, minilm, read_jsonl, run_cli, sliced
from safetensors.torch import load_file

from tweetkit.text.normalize import TweetNormalizer
from tweetkit.train.config import TrainConfig
from tweetkit.train.loop import lr_for

MICRO = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
         "max_position_embeddings": 130, "type_vocab_size": 1}  # fmt: skip


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("continued")
    normalize = TweetNormalizer()
    texts = [normalize(r["text"]) for r in read_jsonl(sliced("semeval2017/train.jsonl"), 700)]
    (root / "train.jsonl").write_bytes(jsonl(*[{"text": t} for t in texts[:600]]))
    (root / "valid.jsonl").write_bytes(jsonl(*[{"text": t} for t in texts[600:]]))
    extend = ["train-bpe", str(root / "train.jsonl"), "-o", str(root / "ext"), "--extend", minilm(),
              "--vocab-size", "100", "-q"]  # fmt: skip
    assert run_cli(extend).exit_code == 0
    assert run_cli(["train-bpe", str(root / "train.jsonl"), "-o", str(root / "tok"),
                    "--vocab-size", "600", "-q"]).exit_code == 0  # fmt: skip
    (root / "micro.json").write_text(json.dumps(MICRO))
    return root


def pretrain(setup, out, *args, code=0):
    base = ["pretrain", "--train", str(setup / "train.jsonl"), "-o", str(out), "--cache-dir", str(setup / "cache"),
            "--max-length", "32", "--batch-size", "4", "--log-every", "1"]  # fmt: skip
    result = run_cli([*base, *args])
    assert result.exit_code == code, result.stderr
    return result


def losses(result):
    return [(m["step"], m["loss"]) for m in result.records() if "loss" in m]


def continued(setup, out, *args):
    return pretrain(setup, out, "--init-from", minilm(), "--tokenizer", str(setup / "ext"), *args)


def test_the_mlm_decoder_is_tied_to_the_input_embeddings(setup, tmp_path):
    from transformers import AutoModelForMaskedLM, BertConfig, BertForMaskedLM

    from tweetkit.modeling import load_tokenizer
    from tweetkit.train.continued import decoder_is_tied, load_for_continued_pretraining, tie_decoder

    model, new = load_for_continued_pretraining(minilm(), load_tokenizer(str(setup / "ext")), "mean", 0, lambda _: None)
    assert new["tied"] and decoder_is_tied(model)
    assert "cls.predictions.transform.dense.weight" in new["head"] and len(new["new_ids"]) == 100
    assert not any("decoder.weight" in name for name in new["head"])  # the decoder is not a new matrix
    result = continued(setup, tmp_path / "c", "--max-steps", "2")
    assert "MLM decoder tied to the input embeddings" in result.stderr
    trained = AutoModelForMaskedLM.from_pretrained(tmp_path / "c")
    assert torch.equal(trained.cls.predictions.decoder.weight, trained.get_input_embeddings().weight)
    # A checkpoint without a decoder whose config unties it gets a tied one; a saved untied one stays.
    untied = BertForMaskedLM(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                        intermediate_size=32, tie_word_embeddings=False))  # fmt: skip
    assert not decoder_is_tied(untied) and not tie_decoder(untied, [])
    assert tie_decoder(untied, ["cls.predictions.decoder.weight"]) and decoder_is_tied(untied)


def test_lr_schedule_restarts_after_the_head_warmup():
    config = TrainConfig(lr=1.0, warmup_steps=2, head_warmup_steps=4)
    assert [lr_for(s, 10, config) for s in range(10)] == [0.5, 1.0, 1.0, 0.5, 0.5, 1.0, 1.0, 0.75, 0.5, 0.25]
    plain = TrainConfig(lr=1.0, warmup_steps=2)
    assert [lr_for(s, 4, plain) for s in range(4)] == [0.5, 1.0, 1.0, 0.5]


def test_head_warmup_trains_only_the_new_head_and_rows_then_everything(setup, tmp_path):
    init, run = tmp_path / "init", tmp_path / "run"
    continued(setup, init, "--max-steps", "0")
    result = continued(setup, run, "--max-steps", "5", "--head-warmup-steps", "3", "--save-every", "1",
                       "--keep-checkpoints", "0")  # fmt: skip
    assert "head warm-up" in result.stderr and "100 new vocabulary rows" in result.stderr
    before = load_file(init / "model.safetensors")
    warm, full = (
        load_file(run / "checkpoint-3" / "model.safetensors"),
        load_file(run / "checkpoint-5" / "model.safetensors"),
    )
    embeddings = "bert.embeddings.word_embeddings.weight"
    old = before[embeddings].shape[0] - 100
    for name in before:
        if name.startswith("bert.") and name != embeddings:
            assert torch.equal(before[name], warm[name]), name  # the encoder untouched for 3 steps
    assert torch.equal(before[embeddings][:old], warm[embeddings][:old])  # old rows exactly kept
    assert not torch.equal(before[embeddings][old:], warm[embeddings][old:])  # new rows trained
    assert not torch.equal(
        before["cls.predictions.transform.dense.weight"], warm["cls.predictions.transform.dense.weight"]
    )
    layer = "bert.encoder.layer.0.attention.self.query.weight"
    assert not torch.equal(warm[layer], full[layer]) and not torch.equal(warm[embeddings][:old], full[embeddings][:old])
    assert torch.equal(before["bert.pooler.dense.weight"], full["bert.pooler.dense.weight"])  # frozen throughout


@pytest.mark.parametrize("kept", [2, 4])
def test_head_warmup_resumes_to_the_straight_run(setup, tmp_path, kept):
    """Resumed inside the warm-up (2) and after the switch (4): the same losses and weights."""
    args = ["--max-steps", "6", "--head-warmup-steps", "3"]
    straight = continued(setup, tmp_path / "straight", *args)
    continued(setup, tmp_path / "resumed", *args, "--save-every", "2", "--keep-checkpoints", "0")
    for step in (s for s in (2, 4, 6) if s > kept):
        shutil.rmtree(tmp_path / "resumed" / f"checkpoint-{step}")
    resumed = continued(setup, tmp_path / "resumed", *args, "--resume")
    assert losses(resumed) == losses(straight)[kept:]
    a, b = load_file(tmp_path / "straight" / "model.safetensors"), load_file(tmp_path / "resumed" / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_keep_best_saves_the_lowest_validation_loss_and_survives_resume(setup, tmp_path):
    args = ["--tokenizer", str(setup / "tok"), "--model-config", str(setup / "micro.json"), "--validation",
            str(setup / "valid.jsonl"), "--eval-every", "2", "--max-steps", "10", "--lr", "0.3", "--keep-best",
            "--save-every", "2", "--keep-checkpoints", "0"]  # fmt: skip
    out = tmp_path / "best"
    result = pretrain(setup, out, *args)
    scored = {m["step"]: m["validation_loss"] for m in result.records() if "validation_loss" in m}
    assert sorted(scored) == [2, 4, 6, 8, 10]
    best_step = min(scored, key=scored.get)
    summary = json.loads((out / "validation_metrics.json").read_text())
    assert summary["best_step"] == best_step and summary["validation_loss"] == scored[best_step]
    saved = load_file(out / "model.safetensors")
    at_best = load_file(out / f"checkpoint-{best_step}" / "model.safetensors")
    assert all(torch.equal(saved[k], at_best[k]) for k in saved)
    # Resumed from a checkpoint after the best step: the same best weights come out.
    assert best_step < 8  # lr 0.3 overshoots: the last weights are not the best, so keeping matters here
    for step in (s for s in (2, 4, 6, 8, 10) if s > 8):
        shutil.rmtree(out / f"checkpoint-{step}")
    (out / "model.safetensors").unlink()
    pretrain(setup, out, *args, "--resume")
    again = load_file(out / "model.safetensors")
    assert all(torch.equal(again[k], saved[k]) for k in saved)


def test_lever_usage_errors(setup, tmp_path):
    no_validation = pretrain(setup, tmp_path / "a", "--tokenizer", str(setup / "tok"), "--keep-best", code=2)
    assert "--keep-best needs --validation" in no_validation.stderr
    scratch = pretrain(setup, tmp_path / "b", "--tokenizer", str(setup / "tok"), "--head-warmup-steps", "2", code=2)
    assert "--head-warmup-steps needs --init-from" in scratch.stderr
    # A model that has an MLM head and the same vocabulary has nothing new to warm up.
    pretrain(setup, tmp_path / "m", "--tokenizer", str(setup / "tok"), "--model-config", str(setup / "micro.json"),
             "--max-steps", "0")  # fmt: skip
    nothing = pretrain(setup, tmp_path / "c", "--tokenizer", str(setup / "tok"), "--init-from", str(tmp_path / "m"),
                       "--head-warmup-steps", "2", code=1)  # fmt: skip
    assert "no new MLM head" in nothing.stderr


def test_new_token_init_mean_or_random(setup, tmp_path):
    from tweetkit.modeling import load_tokenizer

    continued(setup, tmp_path / "mean", "--max-steps", "0")
    continued(setup, tmp_path / "random", "--max-steps", "0", "--new-token-init", "random")
    name = "bert.embeddings.word_embeddings.weight"
    mean, drawn = (load_file(tmp_path / run / "model.safetensors")[name] for run in ("mean", "random"))
    base, extended = load_tokenizer(minilm()), load_tokenizer(str(setup / "ext"))
    old = len(base.get_vocab())
    assert mean.shape[0] == drawn.shape[0] == old + 100
    assert torch.equal(mean[:old], drawn[:old])  # the base pieces keep their rows either way
    # mean: a new piece starts from the mean of the base rows of the pieces the base tokenizer splits it into
    for index in range(old, old + 100):
        surface = extended.convert_tokens_to_string([extended.convert_ids_to_tokens(index)]).strip()
        parts = base(surface, add_special_tokens=False)["input_ids"]
        torch.testing.assert_close(mean[index], mean[parts].mean(0))
    # random: E-MBERT's start, drawn as BERT initialises, N(0, initializer_range 0.02), seeded
    assert drawn[old:].mean().item() == pytest.approx(0.0, abs=1e-3)
    assert drawn[old:].std().item() == pytest.approx(0.02, rel=0.03)
    again = tmp_path / "random-again"
    continued(setup, again, "--max-steps", "0", "--new-token-init", "random")
    assert torch.equal(load_file(again / "model.safetensors")[name], drawn)
