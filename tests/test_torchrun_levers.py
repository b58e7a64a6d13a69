"""The continued-pretraining levers under a real 2-process torchrun: TSDAE's decoder and the
anchor's frozen encoder must leave DDP no parameter without a gradient (a hang or an error
at the second step otherwise)."""

import pytest
import torch
from conftest import MICRO_NO_DROPOUT, ROOT, jsonl, make_micro_model, make_tokenizer, read_jsonl
from safetensors.torch import load_file
from test_torchrun import lines, single, torchrun

pytestmark = pytest.mark.torchrun  # `make test-torchrun`


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    root = tmp_path_factory.mktemp("levers")
    texts = [r["text"] for r in read_jsonl(ROOT / "examples" / "tweets.jsonl")]
    make_tokenizer(root, texts, 600)
    make_micro_model(root, MICRO_NO_DROPOUT)
    (root / "train.jsonl").write_bytes(jsonl(*[{"text": t} for t in texts[:300]]))
    return root


@pytest.mark.parametrize("objective", ["mlm", "tsdae"])
def test_anchored_objectives_train_under_ddp_as_in_one_process(base, tmp_path, objective):
    args = ["pretrain", "--init-from", base / "mlm", "--tokenizer", base / "tok", "--objective", objective,
            "--anchor", "0.1,1", "--anchor-kind", "both", "--train", base / "train.jsonl", "--cache-dir",
            base / "cache", "--max-length", "64", "--batch-size", "8", "--max-steps", "3", "--log-every", "1",
            "--lr", "1e-3", "-q"]  # fmt: skip
    two = torchrun([*args, "-o", tmp_path / "two"])
    assert two.returncode == 0, two.stderr[-3000:]
    one = single([*args, "-o", tmp_path / "one"])
    assert one.returncode == 0, one.stderr[-3000:]
    assert [line["step"] for line in lines(two)] == [1, 2, 3]
    # L2-SP is exact across process counts; the distillation is a mean per micro-batch, so close.
    assert [line["loss"] for line in lines(two)] == pytest.approx([line["loss"] for line in lines(one)], rel=1e-3)
    start, trained = load_file(base / "mlm" / "model.safetensors"), load_file(tmp_path / "two" / "model.safetensors")
    assert trained.keys() == start.keys() and any(not torch.equal(trained[k], start[k]) for k in trained)
