"""`tweetkit merge`: weight interpolation of a start and its adaptation (the real MiniLM and
a micro RoBERTa over the example tweets)."""

import json

import pytest
import torch
from conftest import ROOT, jsonl, make_micro_model, make_tokenizer, minilm, read_jsonl, run_cli
from safetensors.torch import load_file


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """MiniLM, and MiniLM after two steps of continued MLM (bert.* names, an MLM head)."""
    root = tmp_path_factory.mktemp("merge")
    texts = [r["text"] for r in read_jsonl(ROOT / "examples" / "tweets.jsonl", 120)]
    (root / "train.jsonl").write_bytes(jsonl(*[{"text": t} for t in texts]))
    adapted = root / "adapted"
    result = run_cli(["pretrain", "--train", str(root / "train.jsonl"), "--tokenizer", minilm(), "--init-from",
                      minilm(), "-o", str(adapted), "--cache-dir", str(root / "cache"), "--max-length", "64",
                      "--batch-size", "4", "--max-steps", "2", "--lr", "1e-3", "-q"])  # fmt: skip
    assert result.exit_code == 0, result.stderr
    return root, adapted


def merge(*args, code=0):
    result = run_cli(["merge", *map(str, args)])
    assert result.exit_code == code, result.stderr
    return result


def test_alpha_zero_is_the_start_one_the_adapted_and_a_half_the_mean(models, tmp_path):
    from transformers import AutoModel, AutoModelForMaskedLM

    root, adapted = models
    result = merge("--start", minilm(), "--adapted", adapted, "--alpha", "0,0.5,1", "-o", tmp_path / "m")
    records = result.records()
    assert [r["alpha"] for r in records] == [0.0, 0.5, 1.0]
    assert [r["output"] for r in records] == [str(tmp_path / "m" / f"alpha-{a}") for a in ("0", "0.5", "1")]
    start, after = load_file(f"{minilm()}/model.safetensors"), load_file(adapted / "model.safetensors")
    zero, half, one = (load_file(tmp_path / "m" / f"alpha-{a}" / "model.safetensors") for a in ("0", "0.5", "1"))
    assert zero.keys() == after.keys() == one.keys() == half.keys()
    layer = "bert.encoder.layer.3.attention.self.query.weight"
    assert not torch.equal(start[layer[5:]], after[layer])  # adaptation moved it
    shared = [k for k in after if k.startswith("bert.") and k[5:] in start]
    assert len(shared) == records[0]["interpolated"] == 103  # all of MiniLM but its position_ids buffer
    for key in shared:
        assert torch.equal(zero[key], start[key[5:]]), key
        assert torch.equal(one[key], after[key]), key
        assert torch.equal(half[key], (start[key[5:]] + after[key]) / 2), key
    head = "cls.predictions.transform.dense.weight"  # only the adapted model has it
    assert torch.equal(zero[head], after[head]) and torch.equal(half[head], after[head])
    merged = AutoModelForMaskedLM.from_pretrained(tmp_path / "m" / "alpha-0.5")
    assert torch.equal(merged.state_dict()[layer], half[layer])
    assert torch.equal(merged.cls.predictions.decoder.weight, merged.get_input_embeddings().weight)
    bare = AutoModel.from_pretrained(tmp_path / "m" / "alpha-0")
    assert torch.equal(bare.state_dict()["encoder.layer.3.attention.self.query.weight"], start[layer[5:]])
    note = json.loads((tmp_path / "m" / "alpha-0.5" / "tweetkit_merge.json").read_text())
    assert note["alpha"] == 0.5 and note["adapted"] == str(adapted)
    # One alpha writes into -o itself; a second run there is refused, --overwrite replaces.
    merge("--start", minilm(), "--adapted", adapted, "--alpha", "0.25", "-o", tmp_path / "q")
    assert (tmp_path / "q" / "model.safetensors").exists() and (tmp_path / "q" / "tokenizer.json").exists()
    again = merge("--start", minilm(), "--adapted", adapted, "--alpha", "0.25", "-o", tmp_path / "q", code=2)
    assert "holds a model: add --overwrite" in again.stderr
    merge("--start", minilm(), "--adapted", adapted, "--alpha", "0.25", "-o", tmp_path / "q", "--overwrite")


def test_models_of_another_shape_or_vocabulary_are_refused(models, tmp_path):
    root, adapted = models
    make_tokenizer(tmp_path, [r["text"] for r in read_jsonl(ROOT / "examples" / "tweets.jsonl")], 500)
    micro = make_micro_model(tmp_path)
    other = merge("--start", micro, "--adapted", adapted, "--alpha", "0.5", "-o", tmp_path / "x", code=1)
    assert other.stderr.count("\n") == 1 and "differ in model_type (roberta vs bert)" in other.stderr
    empty = tmp_path / "empty"
    empty.mkdir()
    missing = merge("--start", empty, "--adapted", adapted, "--alpha", "0.5", "-o", tmp_path / "y", code=1)
    assert missing.stderr.count("\n") == 1 and "no config.json" in missing.stderr
    bad = merge("--start", minilm(), "--adapted", adapted, "--alpha", "half", "-o", tmp_path / "z", code=2)
    assert "--alpha half: expected a number" in bad.stderr
    assert not (tmp_path / "x").exists() and not (tmp_path / "z").exists()
