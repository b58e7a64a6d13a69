"""--runtime onnx: the exported graph predicts what torch does (fp32), is cached and exported
anew for changed weights, quantizes only the encoder layers int8 should (and says how many
labels moved), a cached graph runs without importing torch or transformers (its tokenizer gives
the HF tokenizer's ids), and a missing ONNX Runtime is a one-line error naming the extra."""

import json
import os
import re
import shutil
import subprocess
import sys

import onnx
import pytest
from conftest import (
    ROOT,
    jsonl,
    make_micro_model,
    make_tokenizer,
    minilm,
    read_jsonl,
    run_cli,
    sliced,
    write_question_task,
)

from tweetkit.modeling import INT8_FP32_LAYERS
from tweetkit.onnx_runtime import CACHE_DIR

# Four layers: int8 keeps the first INT8_FP32_LAYERS in fp32 and quantizes the rest.
SHAPE = {"hidden_size": 64, "num_hidden_layers": 4, "num_attention_heads": 2, "intermediate_size": 128,
         "max_position_embeddings": 130, "type_vocab_size": 1}  # fmt: skip
EXPORTING = "exporting the model to ONNX"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """A micro RoBERTa fine-tuned as a classifier (tweets with a '?' or not) and as a POS tagger."""
    root = tmp_path_factory.mktemp("onnx")
    mixed = write_question_task(root)
    tagged = read_jsonl(sliced("ark_pos/train.jsonl"))
    (root / "tags.jsonl").write_bytes(jsonl(*tagged[:200]))
    (root / "tags-test.jsonl").write_bytes(jsonl(*tagged[200:]))
    make_tokenizer(root, [r["text"] for r in mixed] + [" ".join(r["tokens"]) for r in tagged], 600)
    make_micro_model(root, SHAPE)
    for task, train, output, epochs in (("classification", "train", "clf", "4"), ("tagging", "tags", "pos", "2")):
        argv = ["finetune", "--model", str(root / "mlm"), "--task", task, "--train", str(root / f"{train}.jsonl"),
                "-o", str(root / output), "--epochs", epochs, "--lr", "2e-3", "--batch-size", "16", "-q"]  # fmt: skip
        result = run_cli(argv)
        assert result.exit_code == 0, result.stderr
    return root


def predict(model, data, *flags):
    result = run_cli(["predict", "--model", str(model), *flags, str(data)])
    assert result.exit_code == 0, result.stderr
    return result


def cached(model, precision):
    return sorted(name for name in os.listdir(model / CACHE_DIR) if name.startswith(f"{precision}-"))


def test_fp32_graph_predicts_the_labels_of_torch(models):
    torch_run = predict(models / "clf", models / "test.jsonl").records()
    onnx_run = predict(models / "clf", models / "test.jsonl", "--runtime", "onnx").records()
    gold = [r["label"] for r in read_jsonl(models / "test.jsonl")]
    assert sum(r["pred"] == g for r, g in zip(torch_run, gold)) / len(gold) > 0.9  # the model is worth comparing
    assert [r["text"] for r in onnx_run] == [r["text"] for r in torch_run]  # input order kept
    assert [r["pred"] for r in onnx_run] == [r["pred"] for r in torch_run]
    gaps = [abs(a["scores"][k] - b["scores"][k]) for a, b in zip(torch_run, onnx_run) for k in a["scores"]]
    assert max(gaps) < 1e-5
    scored = {}
    for runtime in ("torch", "onnx"):
        argv = ["evaluate", "-q", "--model", str(models / "clf"), "--runtime", runtime, str(models / "test.jsonl")]
        result = run_cli(argv)
        assert result.exit_code == 0, result.stderr
        scored[runtime] = json.loads(result.stdout)
    assert scored["onnx"] == scored["torch"]


def test_tagger_graph_predicts_the_tags_of_torch(models):
    """A tagger's batches are padded: its graph takes the attention mask, with dynamic lengths."""
    torch_tags = [r["pred_tags"] for r in predict(models / "pos", models / "tags-test.jsonl").records()]
    onnx_tags = [
        r["pred_tags"] for r in predict(models / "pos", models / "tags-test.jsonl", "--runtime", "onnx").records()
    ]
    assert onnx_tags == torch_tags
    assert len({len(tags) for tags in torch_tags}) > 10  # many lengths through one graph
    graph = onnx.load(str(models / "pos" / CACHE_DIR / cached(models / "pos", "fp32")[0]))
    assert [i.name for i in graph.graph.input] == ["input_ids", "attention_mask"]


def test_graph_is_cached_and_exported_anew_for_changed_weights(models, tmp_path):
    from safetensors.torch import load_file, save_file

    model = tmp_path / "clf"
    shutil.copytree(models / "clf", model, ignore=shutil.ignore_patterns(CACHE_DIR))
    first = predict(model, models / "test.jsonl", "--runtime", "onnx")
    assert EXPORTING in first.stderr
    (name,) = cached(model, "fp32")
    stamp = os.stat(model / CACHE_DIR / name).st_mtime_ns
    second = predict(model, models / "test.jsonl", "--runtime", "onnx")
    assert EXPORTING not in second.stderr and second.records() == first.records()
    assert cached(model, "fp32") == [name] and os.stat(model / CACHE_DIR / name).st_mtime_ns == stamp
    weights = load_file(str(model / "model.safetensors"))
    bias = next(key for key in weights if key.endswith("classifier.out_proj.bias"))
    weights[bias][0] += 1.0  # the first class's logit only: softmax ignores a shift of all
    save_file(weights, str(model / "model.safetensors"), metadata={"format": "pt"})
    third = predict(model, models / "test.jsonl", "--runtime", "onnx")
    assert EXPORTING in third.stderr
    assert len(cached(model, "fp32")) == 1 and cached(model, "fp32") != [name]  # the stale graph is gone
    assert [r["scores"] for r in third.records()] != [r["scores"] for r in first.records()]
    retrained = predict(model, models / "test.jsonl").records()  # torch on the new weights
    assert [r["pred"] for r in third.records()] == [r["pred"] for r in retrained]
    gaps = [abs(a["scores"][k] - b["scores"][k]) for a, b in zip(third.records(), retrained) for k in a["scores"]]
    assert max(gaps) < 1e-5


def test_unwritable_model_directory_caches_in_the_user_cache(models, tmp_path, monkeypatch):
    model = tmp_path / "clf"
    shutil.copytree(models / "clf", model, ignore=shutil.ignore_patterns(CACHE_DIR))
    (model / CACHE_DIR).write_text("")  # a file where the cache directory would go: no graph can be written there
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "user"))
    result = predict(model, models / "test.jsonl", "--runtime", "onnx")
    assert f"{EXPORTING} in {tmp_path / 'user' / 'tweetkit' / 'onnx'}" in result.stderr
    again = predict(model, models / "test.jsonl", "--runtime", "onnx")
    assert EXPORTING not in again.stderr and again.records() == result.records()


def test_int8_quantizes_the_later_layers_and_reports_agreement(models):
    fp32 = predict(models / "clf", models / "test.jsonl", "--runtime", "onnx").records()
    result = predict(models / "clf", models / "test.jsonl", "--runtime", "onnx", "--precision", "int8")
    int8 = result.records()
    share = sum(a["pred"] == b["pred"] for a, b in zip(fp32, int8)) / len(fp32)
    assert f"int8 on onnx: labels = fp32's on {share:.2%} of the first {len(fp32):,} inputs" in result.stderr
    assert share >= 0.95
    assert max(abs(a["scores"][k] - b["scores"][k]) for a, b in zip(fp32, int8) for k in a["scores"]) > 0  # it ran
    graph = onnx.load(str(models / "clf" / CACHE_DIR / cached(models / "clf", "int8")[0])).graph
    quantized = [node.name for node in graph.node if node.op_type == "MatMulInteger"]
    layers = {int(re.search(r"/layer\.(\d+)/", name).group(1)) for name in quantized}
    assert layers == set(range(INT8_FP32_LAYERS, SHAPE["num_hidden_layers"]))
    assert len(quantized) == 6  # query, key, value, attention output, intermediate, output: attention scores stay fp32
    quiet = run_cli(["predict", "-q", "--model", str(models / "clf"), "--runtime", "onnx", "--precision", "int8",
                     str(models / "test.jsonl")])  # fmt: skip
    assert quiet.stderr == "" and quiet.records() == int8


def test_int8_agreement_of_a_tagger_and_of_evaluate(models):
    fp32 = predict(models / "pos", models / "tags-test.jsonl", "--runtime", "onnx").records()
    result = predict(models / "pos", models / "tags-test.jsonl", "--runtime", "onnx", "--precision", "int8")
    pairs = [(a, b) for x, y in zip(fp32, result.records()) for a, b in zip(x["pred_tags"], y["pred_tags"])]
    share = sum(a == b for a, b in pairs) / len(pairs)
    assert f"labels = fp32's on {share:.2%} of {len(pairs):,} words of the first {len(fp32):,} inputs" in result.stderr
    argv = ["evaluate", "--model", str(models / "clf"), "--runtime", "onnx", "--precision", "int8"]
    scored = run_cli([*argv, str(models / "test.jsonl")])
    assert scored.exit_code == 0, scored.stderr
    assert "tweetkit evaluate: int8 on onnx: labels = fp32's on" in scored.stderr


def one_line_error(result, code, text):
    assert result.exit_code == code, result.stderr
    assert text in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_missing_onnx_runtime_names_the_extra(models, monkeypatch):
    import builtins

    real_import = builtins.__import__

    def without_onnxruntime(name, *args, **kwargs):
        if name.split(".")[0] == "onnxruntime":
            raise ImportError(f"No module named '{name}'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_onnxruntime)
    message = "--runtime onnx needs ONNX Runtime, which is not installed: pip install 'tweetkit[onnx]'"
    for command in ("predict", "evaluate"):
        result = run_cli([command, "--model", str(models / "clf"), "--runtime", "onnx", str(models / "test.jsonl")])
        one_line_error(result, 1, f"tweetkit {command}: {message}")


def test_runtime_errors_are_one_line(models, tmp_path):
    test = str(models / "test.jsonl")
    clf = ["--model", str(models / "clf"), "--runtime", "onnx"]
    one_line_error(
        run_cli(["predict", *clf, "--precision", "bf16", test]), 1, "--runtime onnx runs fp32 or int8, not bf16"
    )
    one_line_error(run_cli(["predict", *clf, "--device", "cuda", test]), 1, "--runtime onnx runs on the CPU")
    one_line_error(run_cli(["evaluate", "--runtime", "onnx", test]), 2, "--runtime onnx needs --model")
    one_line_error(run_cli(["evaluate", *clf, "--mlm", test]), 2, "--mlm runs on torch")
    linear = run_cli(["finetune", "--model", "linear", "--task", "classification", "--train",
                      str(models / "train.jsonl"), "-o", str(tmp_path / "linear"), "-q"])  # fmt: skip
    assert linear.exit_code == 0, linear.stderr
    one_line_error(
        run_cli(["predict", "--model", str(tmp_path / "linear"), "--runtime", "onnx", test]),
        1,
        "is a linear model, which scikit-learn runs",
    )


def test_torch_int8_reports_its_agreement_too(models):
    fp32 = predict(models / "clf", models / "test.jsonl").records()
    result = predict(models / "clf", models / "test.jsonl", "--precision", "int8")
    share = sum(a["pred"] == b["pred"] for a, b in zip(fp32, result.records())) / len(fp32)
    assert (
        result.stderr
        == f"tweetkit predict: int8 on torch: labels = fp32's on {share:.2%} of the first {len(fp32):,} inputs\n"
    )


# Runs tweetkit's main in a fresh interpreter, then says on stderr which heavy modules it imported.
IMPORTS_AFTER_MAIN = """
import sys
from tweetkit.cli import main
code = 0
try:
    main(sys.argv[1:])
except SystemExit as exc:
    code = exc.code
heavy = ("torch", "transformers", "onnx")
sys.stderr.write("imported: " + (",".join(m for m in heavy if m in sys.modules) or "none") + "\\n")
sys.exit(code)
"""


def imported_by(*argv):
    """(stdout, the heavy modules a `tweetkit ARGV` process imported) of a process run as a user runs it."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", IMPORTS_AFTER_MAIN, *argv], capture_output=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    last = done.stderr.decode().strip().splitlines()[-1]
    assert last.startswith("imported: "), done.stderr.decode()
    return done.stdout, last.removeprefix("imported: ")


@pytest.mark.parametrize("model, data", [("clf", "test.jsonl"), ("pos", "tags-test.jsonl")])
def test_a_cached_graph_predicts_without_torch_or_transformers(models, tmp_path, model, data):
    copy = tmp_path / model
    shutil.copytree(models / model, copy, ignore=shutil.ignore_patterns(CACHE_DIR))
    onnx_args = ["--model", str(copy), "--runtime", "onnx", str(models / data)]
    first, heavy = imported_by("predict", "-q", *onnx_args)  # exports: torch is needed once
    assert heavy == "torch,transformers,onnx"
    again, heavy = imported_by("predict", "-q", *onnx_args)
    assert heavy == "none" and again == first
    int8, heavy = imported_by("predict", "--precision", "int8", *onnx_args)  # quantizes from the cached fp32 graph
    int8, heavy = imported_by("predict", "--precision", "int8", *onnx_args)  # and its agreement with fp32
    assert heavy == "none"
    scored, heavy = imported_by("evaluate", "-q", *onnx_args)
    assert heavy == "none" and json.loads(scored) == json.loads(run_cli(["evaluate", "-q", *onnx_args]).stdout)


class TorchSession:
    """An OnnxModel called as a torch model, as the ONNX Runtime path ran before it did without torch."""

    def __init__(self, model):
        self.model = model

    def __call__(self, input_ids, attention_mask=None):
        import types

        import torch

        mask = None if attention_mask is None else attention_mask.numpy()
        return types.SimpleNamespace(logits=torch.from_numpy(self.model(input_ids.numpy(), mask)))


def assert_same_as_through_torch(path, inputs):
    """The torch-free path's outputs against those of the same session through the torch path
    (HF tokenizer, torch batches, torch softmax): tags and labels equal, scores to their rounding."""
    from tweetkit.inference import predict_sequences, predict_tags
    from tweetkit.modeling import load_for_inference, load_tokenizer, predict

    loaded = load_for_inference(str(path), runtime="onnx", log=lambda message: None)
    hf = load_tokenizer(str(path), tagging=loaded.kind == "tagging")
    session = TorchSession(loaded.model)
    if loaded.kind == "tagging":
        assert predict(loaded, inputs, 8) == predict_tags(session, hf, inputs, loaded.labels, 8, loaded.max_length)
        return
    new = predict(loaded, inputs, 8)
    old = predict_sequences(session, hf, inputs, loaded.kind, loaded.labels, 8, loaded.max_length)
    assert [pred for pred, _ in new] == [pred for pred, _ in old]
    # float64 numpy against torch's float32 exp: at most one unit of the sixth decimal apart
    assert max(abs(a[k] - b[k]) for (_, a), (_, b) in zip(new, old) for k in a) <= 1.5e-6


def test_torch_free_outputs_equal_those_through_torch(models):
    texts = [r["text"] for r in read_jsonl(models / "test.jsonl")]
    assert_same_as_through_torch(models / "clf", texts + [" ".join(texts)])  # the last one truncated
    words = [r["tokens"] for r in read_jsonl(models / "tags-test.jsonl")]
    assert_same_as_through_torch(models / "pos", words + [sum(words[:20], [])])


def test_minilm_classifier_without_torch_equals_through_torch(models, tmp_path):
    """BERT's WordPiece (lower-cased, accents stripped) through the saved backend, as a
    classifier of the packaged MiniLM with a seeded head."""
    import torch
    from transformers import AutoModelForSequenceClassification

    from tweetkit.modeling import load_tokenizer, save_model

    torch.manual_seed(0)
    labels = {0: "negative", 1: "neutral", 2: "positive"}
    model = AutoModelForSequenceClassification.from_pretrained(minilm(), num_labels=3, id2label=labels)
    save_model(model, load_tokenizer(minilm()), str(tmp_path / "minilm"))
    texts = [r["text"] for r in read_jsonl(models / "test.jsonl")][:40]
    texts += ["Ça VA très Bien 😀 @user http://t.co/x #Ünïcödé", "x " * 300]
    assert_same_as_through_torch(tmp_path / "minilm", texts)


@pytest.mark.parametrize("which", ["bpe", "minilm"])
def test_saved_tokenizer_gives_the_ids_of_the_hf_tokenizer(models, tmp_path, which):
    """Ids and word ids of onnx_runtime.load_tokenizer equal modeling.load_tokenizer's, for a
    train-bpe byte-level BPE and BERT's WordPiece, on whole texts and on pre-split words."""
    from tweetkit.modeling import load_tokenizer
    from tweetkit.onnx_runtime import load_tokenizer as load_backend

    source = str(models / "tok") if which == "bpe" else minilm()
    path = tmp_path / which
    shutil.copytree(source, path)
    rows = read_jsonl(models / "tags-test.jsonl")
    texts = [" ".join(r["tokens"]) for r in rows] + ["  Ça VA très Bien 😀\tÜnïcödé  ", "word " * 200, ""]
    for kind in ("classification", "tagging"):
        hf, backend = load_tokenizer(str(path), tagging=kind == "tagging"), load_backend(str(path), kind, 32)
        saved = sorted(os.listdir(path / CACHE_DIR))
        assert len(saved) == 1 and saved[0].startswith("tokenizer-")
        if kind == "classification":
            expected = hf(texts, truncation=True, max_length=32)["input_ids"]
            assert [e.ids for e in backend.encode_batch(texts)] == expected
            continue
        words = [r["tokens"] for r in rows] + [["Ça", "VA", "😀", "Ünïcödé"], ["word"] * 100]
        expected = hf(words, is_split_into_words=True, truncation=True, max_length=32, padding=True)
        got = backend.encode_batch(words, is_pretokenized=True)
        assert [e.ids for e in got] == expected["input_ids"]
        assert [e.attention_mask for e in got] == expected["attention_mask"]
        assert [e.word_ids for e in got] == [expected.word_ids(i) for i in range(len(words))]
        assert load_backend(str(path), kind, 32).to_str() == backend.to_str()  # read back from the cache


def test_weights_key_reads_digests_from_the_memo_until_a_file_changes(models, tmp_path, monkeypatch):
    """A run takes each weight file's SHA-256 from onnx-cache/digests.json while its stat is unchanged."""
    from tweetkit import onnx_runtime

    model = tmp_path / "clf"
    shutil.copytree(models / "clf", model, ignore=shutil.ignore_patterns(CACHE_DIR))
    (model / CACHE_DIR).mkdir()  # made by the first export
    true_key = onnx_runtime.weights_key(str(model), "fp32")
    assert not (model / CACHE_DIR / onnx_runtime.DIGESTS).exists()  # files just written: not recorded yet
    monkeypatch.setattr(onnx_runtime, "RACY_NS", -1)
    assert onnx_runtime.weights_key(str(model), "fp32") == true_key
    memo = json.loads((model / CACHE_DIR / onnx_runtime.DIGESTS).read_text())
    assert sorted(memo) == ["config.json", "model.safetensors"]
    memo["config.json"]["sha256"] = "00" * 32  # a memo entry is believed while the file's stat holds
    (model / CACHE_DIR / onnx_runtime.DIGESTS).write_text(json.dumps(memo))
    assert onnx_runtime.weights_key(str(model), "fp32") != true_key
    (model / "config.json").write_bytes((model / "config.json").read_bytes())  # the same bytes, a new stat
    assert onnx_runtime.weights_key(str(model), "fp32") == true_key
