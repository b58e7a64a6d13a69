"""`pretrain --objective tsdae`: deletion, the paper's decoder, training and resume, on a micro
RoBERTa over the example tweets (no shared data)."""

import json
import shutil

import pytest
import torch
from conftest import MICRO_NO_DROPOUT, ROOT, jsonl, make_micro_model, make_tokenizer, read_jsonl, run_cli
from safetensors.torch import load_file


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("tsdae")
    texts = [r["text"] for r in read_jsonl(ROOT / "examples" / "tweets.jsonl")]
    make_tokenizer(root, texts, 600)
    make_micro_model(root, MICRO_NO_DROPOUT)
    (root / "train.jsonl").write_bytes(jsonl(*[{"text": t} for t in texts[:300]]))
    (root / "valid.jsonl").write_bytes(jsonl(*[{"text": t} for t in texts[300:340]]))
    (root / "few.jsonl").write_bytes(jsonl(*[{"text": t} for t in texts[:6] * 24]))  # a handful, repeated
    return root


def make_task(base, deletion=0.6):
    from tweetkit.io import StreamOptions
    from tweetkit.modeling import load_tokenizer, position_offset
    from tweetkit.tasks.mlm import tokenize_corpus
    from tweetkit.tasks.tsdae import TSDAEModel, TSDAETask, build_decoder
    from tweetkit.train.continued import load_for_continued_pretraining

    tok = load_tokenizer(str(base / "tok"))
    corpus = tokenize_corpus([str(base / "train.jsonl")], tok, StreamOptions(quiet=True), str(base / "cache"),
                             log=lambda m: None)  # fmt: skip
    model, _ = load_for_continued_pretraining(str(base / "mlm"), tok, "mean", 0, log=lambda m: None)
    task = TSDAETask(corpus, None, tok, 64, 0, position_offset(model), deletion=deletion)
    return task, TSDAEModel(model, build_decoder(model, 0)), tok


def tweets_of(ids, segments):
    """Each tweet of packed rows as its list of token ids, in order."""
    out = []
    for row_ids, row_segments in zip(ids.tolist(), segments.tolist()):
        for segment in range(1, max(row_segments) + 1):
            out.append([i for i, s in zip(row_ids, row_segments) if s == segment])
    return out


def is_subsequence(short, long) -> bool:
    it = iter(long)
    return all(token in it for token in short)


def test_deletion_is_deterministic_keeps_the_ends_and_deletes_sixty_percent(base):
    task, _, tok = make_task(base)
    rows = list(range(40))
    batch = task.collate(rows, epoch=0)
    assert all(torch.equal(batch[k], task.collate(rows, epoch=0)[k]) for k in ("input_ids", "position_ids"))
    assert not torch.equal(batch["input_ids"], task.collate(rows, epoch=1)["input_ids"])  # a new draw each epoch
    original = task.packed(rows)
    before, after = tweets_of(original["input_ids"], original["segments"]), tweets_of(batch["input_ids"],
                                                                                      batch["segments"])  # fmt: skip
    assert len(before) == len(after) == batch["tweets"]
    kept = total = 0
    for whole, damaged in zip(before, after):
        assert damaged[0] == tok.bos_token_id and damaged[-1] == tok.eos_token_id and len(damaged) >= 3
        assert is_subsequence(damaged, whole)
        kept, total = kept + len(damaged) - 2, total + len(whole) - 2
    assert abs(kept / total - 0.4) < 0.03
    # Positions restart for every damaged tweet; the targets are the whole tweets, <s> x -> x </s>.
    place = batch["position_ids"] - task.position_offset
    assert torch.equal(place[batch["segments"] > 0], torch.cat([torch.arange(len(t)) for t in after]))
    first = before[0]
    assert batch["decoder_ids"][0, : len(first) - 1].tolist() == first[:-1]
    assert batch["labels"][: len(first) - 1].tolist() == first[1:]
    assert batch["count"] == sum(len(t) - 1 for t in before)


def test_the_decoder_reads_only_the_pooled_vector_causally_with_tied_embeddings(base):
    task, model, _ = make_task(base)
    decoder = model.decoder
    embeddings = model.mlm.get_input_embeddings().weight
    assert decoder.get_input_embeddings().weight is embeddings and decoder.get_output_embeddings().weight is embeddings
    start = model.mlm.state_dict()
    layer = "roberta.encoder.layer.0.attention.self.query.weight"
    assert torch.equal(decoder.state_dict()[layer], start[layer])  # initialised from the encoder
    assert decoder.config.is_decoder and decoder.config.add_cross_attention
    module = task.wrap(model).eval()
    batch = task.collate([0, 1, 2], epoch=0)
    with torch.no_grad():
        logits = task.logits(module, batch)
        # A later target token changes no earlier prediction (causal); the damaged input changes them all.
        later = dict(batch, decoder_ids=batch["decoder_ids"].clone())
        length = int(batch["decoder_mask"][0].sum())
        later["decoder_ids"][0, length - 1] = 7
        changed = task.logits(module, later)
        assert torch.equal(changed[: length - 1], logits[: length - 1]) and not torch.equal(changed, logits)
        other = dict(batch, input_ids=torch.where(batch["segments"] > 0, 9, batch["input_ids"]))
        assert not torch.allclose(task.logits(module, other)[:length], logits[:length])
        # Each tweet is decoded from its own pooled vector alone: row 1 by itself gives the same logits.
        alone = task.collate([1], epoch=0)
        row0 = task.packed([0])
        skip = sum(len(t) - 1 for t in tweets_of(row0["input_ids"], row0["segments"]))
        expected = logits[skip : skip + alone["count"]]
        torch.testing.assert_close(task.logits(module, alone), expected, atol=1e-5, rtol=1e-4)


def pretrain(base, out, *args, code=0):
    command = ["pretrain", "--tokenizer", str(base / "tok"), "--init-from", str(base / "mlm"), "-o", str(out),
               "--cache-dir", str(base / "cache"), "--max-length", "64", "--batch-size", "8", "--log-every", "1",
               "--objective", "tsdae", *args]  # fmt: skip
    result = run_cli(command)
    assert result.exit_code == code, result.stderr
    return result


def losses(result):
    return [(m["step"], m["loss"]) for m in result.records() if "loss" in m]


def test_tsdae_learns_to_reconstruct_a_handful_of_tweets_and_writes_a_plain_model(base, tmp_path):
    from transformers import AutoModel, AutoModelForMaskedLM

    out = tmp_path / "few"
    result = pretrain(base, out, "--train", str(base / "few.jsonl"), "--max-steps", "40", "--lr", "3e-3")
    values = [loss for _, loss in losses(result)]
    assert len(values) == 40 and sum(values[-5:]) / 5 < sum(values[:5]) / 5 - 1.0
    saved = load_file(out / "model.safetensors")
    assert saved.keys() == load_file(base / "mlm" / "model.safetensors").keys()  # the MLM model, no TSDAE decoder
    assert AutoModelForMaskedLM.from_pretrained(out).config.model_type == "roberta"
    AutoModel.from_pretrained(out)
    checkpoint = load_file(out / "checkpoint-40" / "model.safetensors")
    assert any(key.startswith("decoder.") and "crossattention" in key for key in checkpoint)


def test_tsdae_resumes_bit_identically_with_an_anchor(base, tmp_path):
    args = ["--train", str(base / "train.jsonl"), "--max-steps", "6", "--lr", "1e-3", "--anchor", "1",
            "--validation", str(base / "valid.jsonl"), "--eval-every", "3", "--save-every", "2",
            "--keep-checkpoints", "0"]  # fmt: skip
    straight = pretrain(base, tmp_path / "straight", *args)
    scored = [m for m in straight.records() if "validation_loss" in m]
    assert [m["step"] for m in scored] == [3, 6] and 0 < scored[-1]["validation_reconstruction_accuracy"] < 1
    assert scored[-1]["validation_drift"] > 0
    config = json.loads((tmp_path / "straight" / "tweetkit_train_config.json").read_text())
    assert config["run"]["objective"] == "tsdae" and config["run"]["deletion"] == 0.6
    resumed = tmp_path / "resumed"
    pretrain(base, resumed, *args)
    shutil.rmtree(resumed / "checkpoint-6")
    again = pretrain(base, resumed, *args, "--resume")
    assert losses(again) == losses(straight)[4:]
    a, b = load_file(tmp_path / "straight" / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_tsdae_usage_errors(base, tmp_path):
    warm = pretrain(base, tmp_path / "w", "--train", str(base / "train.jsonl"), "--head-warmup-steps", "2", code=2)
    assert "--objective tsdae cannot run with --head-warmup-steps: TSDAE trains no head" in warm.stderr
