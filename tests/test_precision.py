"""--precision in validation, predict and evaluate: bf16 autocast and int8 dynamic
quantization run, differ from fp32 (so the mode took effect) and agree with it."""

import json

import pytest
import torch
from conftest import make_micro_model, make_tokenizer, read_jsonl, run_cli, write_question_task

from tweetkit.errors import ConfigError

SHAPE = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128,
         "max_position_embeddings": 130, "type_vocab_size": 1}  # fmt: skip


@pytest.fixture(scope="module")
def classifier(tmp_path_factory):
    """A micro RoBERTa fine-tuned to tell real tweets with a '?' from those without
    (balanced), so that its predictions vary and are mostly confident."""
    root = tmp_path_factory.mktemp("precision")
    mixed = write_question_task(root)
    make_tokenizer(root, [r["text"] for r in mixed], 600)
    make_micro_model(root, SHAPE)
    argv = ["finetune", "--model", str(root / "mlm"), "--task", "classification", "--train", str(root / "train.jsonl"),
            "-o", str(root / "clf"), "--epochs", "4", "--lr", "2e-3", "--batch-size", "16", "-q"]  # fmt: skip
    result = run_cli(argv)
    assert result.exit_code == 0, result.stderr
    return root


def predictions(classifier, precision):
    result = run_cli(
        ["predict", "--model", str(classifier / "clf"), "--precision", precision, str(classifier / "test.jsonl")]
    )
    assert result.exit_code == 0, result.stderr
    return result.records()


def test_bf16_and_int8_predictions_agree_with_fp32(classifier):
    fp32 = predictions(classifier, "fp32")
    gold = [r["label"] for r in read_jsonl(classifier / "test.jsonl")]
    assert sum(r["pred"] == g for r, g in zip(fp32, gold)) / len(gold) > 0.9  # the model is worth comparing
    for precision, tolerance in (("bf16", 0.02), ("int8", 0.05)):
        other = predictions(classifier, precision)
        assert [r["text"] for r in other] == [r["text"] for r in fp32]  # input order kept
        agreement = sum(a["pred"] == b["pred"] for a, b in zip(fp32, other)) / len(fp32)
        gaps = [abs(a["scores"][k] - b["scores"][k]) for a, b in zip(fp32, other) for k in a["scores"]]
        assert agreement >= 0.98, (precision, agreement)
        assert max(gaps) < tolerance, (precision, max(gaps))
        assert max(gaps) > 0, precision  # the other precision did run: not one probability moved otherwise


def test_modes_reach_the_model(classifier):
    from tweetkit.modeling import load_for_inference, precision_context

    quantized = load_for_inference(str(classifier / "clf"), "cpu", "int8")
    encoder = list(quantized.model.base_model.encoder.modules())
    assert not any(isinstance(m, torch.nn.Linear) for m in encoder)  # every encoder Linear is quantized
    weight = next(m for m in encoder if type(m).__module__.startswith("torch.ao.nn.quantized.dynamic")).weight()
    head = [m for m in quantized.model.classifier.modules() if "Linear" in type(m).__name__]
    assert head and all(isinstance(m, torch.nn.Linear) for m in head)  # the head stays fp32
    assert weight.qscheme() == torch.per_channel_affine  # a scale per output channel
    loaded = load_for_inference(str(classifier / "clf"), "cpu", "bf16")
    seen = []
    layer = next(m for m in loaded.model.modules() if isinstance(m, torch.nn.Linear))
    handle = layer.register_forward_hook(lambda module, inputs, output: seen.append(output.dtype))
    with precision_context("bf16", torch.device("cpu")):
        loaded.model(input_ids=torch.tensor([[0, 5, 6, 2]]))
    handle.remove()
    assert seen == [torch.bfloat16]


def test_evaluate_at_each_precision(classifier):
    scores = {}
    for precision in ("fp32", "bf16", "int8"):
        argv = ["evaluate", "-q", "--model", str(classifier / "clf"), "--precision", precision]
        result = run_cli([*argv, str(classifier / "test.jsonl")])
        assert result.exit_code == 0, result.stderr
        scores[precision] = json.loads(result.stdout)["macro_recall"]
    assert scores["bf16"] == pytest.approx(scores["fp32"], abs=0.02)
    assert scores["int8"] == pytest.approx(scores["fp32"], abs=0.02)


def one_line_error(result, code, text):
    assert result.exit_code == code, result.stderr
    assert text in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_option_errors_are_one_line(classifier, tmp_path, monkeypatch):
    import tweetkit.modeling

    test = str(classifier / "test.jsonl")
    one_line_error(
        run_cli(["evaluate", "--precision", "bf16", test]), 2, "tweetkit evaluate: --precision bf16 needs --model"
    )
    linear = run_cli(["finetune", "--model", "linear", "--task", "classification", "--train",
                      str(classifier / "train.jsonl"), "-o", str(tmp_path / "linear"), "-q"])  # fmt: skip
    assert linear.exit_code == 0, linear.stderr
    one_line_error(
        run_cli(["predict", "--model", str(tmp_path / "linear"), "--precision", "int8", test]),
        1,
        "is a linear model, which has one precision (fp32)",
    )
    # int8 on a GPU: refused before the model is read (the GPU is faked; none is needed to refuse it)
    monkeypatch.setattr(tweetkit.modeling, "resolve_device", lambda name="auto": torch.device("cuda"))
    for command in (["predict", "--model", str(classifier / "clf")], ["evaluate", "--model", str(classifier / "clf")]):
        one_line_error(run_cli([*command, "--precision", "int8", test]), 1, "--precision int8 runs on the CPU only")
    with pytest.raises(ConfigError, match="CPU only"):
        tweetkit.modeling.check_precision("int8", torch.device("cuda"))
    tweetkit.modeling.check_precision("bf16", torch.device("cuda"))  # bf16 runs anywhere


class Layer(torch.nn.Linear):
    """A Linear the training loop can checkpoint."""

    def save_pretrained(self, directory, safe_serialization=True):
        from safetensors.torch import save_file

        save_file(self.state_dict(), f"{directory}/model.safetensors")


class Probe:
    """A task whose validation reports the dtype a Linear layer computes in."""

    def num_examples(self):
        return 4

    def collate(self, indices, epoch):
        return {"x": torch.ones(len(indices), 4), "count": len(indices)}

    def loss(self, module, batch):
        return module(batch["x"]).float().sum(), batch["count"]

    def evaluate(self, module):
        return {"validation_dtype": str(module(torch.ones(1, 4)).dtype)}

    def wrap(self, model):
        return model


@pytest.mark.parametrize("precision,dtype", [("fp32", "torch.float32"), ("bf16", "torch.bfloat16")])
def test_validation_inside_training_runs_at_the_training_precision(tmp_path, precision, dtype, capsys):
    from tweetkit.train.config import TrainConfig
    from tweetkit.train.distributed import Dist
    from tweetkit.train.loop import train

    config = TrainConfig(output_dir=str(tmp_path), batch_size=2, max_steps=2, eval_every=1, precision=precision)
    metrics = train(Layer(4, 1), Probe(), config, Dist(), log=lambda message: None)
    assert metrics["validation_dtype"] == dtype
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["validation_dtype"] for r in lines if "validation_dtype" in r] == [dtype, dtype]  # mid-run and final


def test_pretrain_validation_under_bf16(classifier, tmp_path):
    """bf16 pretraining with a validation set runs, and its validation loss stays close to fp32's."""
    losses = {}
    for precision in ("fp32", "bf16"):
        argv = ["pretrain", "--train", str(classifier / "corpus.jsonl"), "--validation", str(classifier / "test.jsonl"),
                "--tokenizer", str(classifier / "tok"), "-o", str(tmp_path / precision), "--model-config",
                str(classifier / "micro.json"), "--max-steps", "4", "--batch-size", "8", "--precision", precision,
                "--cache-dir", str(tmp_path / "cache"), "-q"]  # fmt: skip
        result = run_cli(argv)
        assert result.exit_code == 0, result.stderr
        losses[precision] = [r for r in result.records() if "validation_loss" in r][-1]["validation_loss"]
    assert losses["bf16"] == pytest.approx(losses["fp32"], rel=0.02)


def test_sort_window_changes_batches_not_predictions(classifier):
    """--sort-window decides which lines are sorted by length together (so how much padding
    each batch carries); input order and predictions stay the same."""
    default = predictions(classifier, "fp32")
    result = run_cli(["predict", "--model", str(classifier / "clf"), "--sort-window", "7", "--batch-size", "4",
                      str(classifier / "test.jsonl")])  # fmt: skip
    assert result.exit_code == 0, result.stderr
    small = result.records()
    assert [r["text"] for r in small] == [r["text"] for r in default]
    assert [r["pred"] for r in small] == [r["pred"] for r in default]
    gaps = [abs(a["scores"][k] - b["scores"][k]) for a, b in zip(default, small) for k in a["scores"]]
    assert max(gaps) < 1e-4


def test_int8_with_device_auto_runs_on_the_cpu_of_a_gpu_server(classifier, monkeypatch):
    """The help's cron example, `predict --precision int8`, on a server with a GPU (faked: none
    is needed to choose): auto picks the CPU for int8; an explicit --device cuda is refused."""
    import tweetkit.modeling
    from tweetkit.modeling import load_for_inference

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert tweetkit.modeling.resolve_device("auto").type == "cuda"
    loaded = load_for_inference(str(classifier / "clf"), "auto", "int8")
    assert next(loaded.model.parameters()).device.type == "cpu"
    test = str(classifier / "test.jsonl")
    auto = run_cli(["predict", "--model", str(classifier / "clf"), "--precision", "int8", test])
    assert auto.exit_code == 0, auto.stderr
    assert auto.records() == predictions(classifier, "int8")
    with pytest.raises(ConfigError, match="CPU only"):
        load_for_inference(str(classifier / "clf"), "cuda", "int8")


@pytest.mark.parametrize("command", ["pretrain", "finetune"])
def test_fp16_is_refused_without_a_gpu_before_any_step(classifier, tmp_path, command):
    out = tmp_path / "out"
    argv = (
        ["pretrain", "--train", str(classifier / "corpus.jsonl"), "--tokenizer", str(classifier / "tok"),
         "--model-config", str(classifier / "micro.json"), "--max-steps", "2", "--cache-dir", str(tmp_path / "cache")]
        if command == "pretrain"
        else ["finetune", "--model", str(classifier / "mlm"), "--task", "classification", "--train",
              str(classifier / "train.jsonl")]
    )  # fmt: skip
    result = run_cli([*argv, "-o", str(out), "--precision", "fp16", "--device", "cpu"])
    # Refused once the device is known, before the first step: no metrics, no model, no checkpoint.
    assert result.exit_code == 1, result.stderr
    assert result.stderr.splitlines()[-1] == f"tweetkit {command}: --precision fp16 needs a GPU; use bf16 on the CPU"
    assert not result.stdout and not list(out.glob("*")), list(out.glob("*"))
