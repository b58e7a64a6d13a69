"""bench/gpu.py (make bench-gpu) at its smoke size on the CPU: every part runs and its checks hold."""

import json
import subprocess
import sys

import pytest
from conftest import ROOT, shared_data


@pytest.mark.slow  # about 2 minutes on 2 cores: five child processes load torch and transformers
def test_gpu_bench_smoke_on_the_cpu(tmp_path):
    output = tmp_path / "bench-gpu.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu.py"), "--smoke", "--device", "cpu", "--data", str(shared_data()),
         "--output", str(output)],
        capture_output=True, text=True, timeout=900, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    results = json.loads(output.read_text())
    assert results["smoke"] and results["device"] == "CPU"
    pretrain = results["pretrain"]
    assert pretrain["tokens_per_s"] > 0 and pretrain["timed_steps"] == 3 and pretrain["mfu"] is None  # no CPU peak
    finetune = results["finetune"]
    assert all(finetune[name]["samples_per_s"] > 0 for name in ("HF Trainer", "HF Trainer group_by_length", "tweetkit"))
    assert finetune["tweetkit"]["x HF Trainer group_by_length"] > 0
    predict = results["predict"]
    assert predict["checks"]["fp32_vs_pipeline_differing_labels"] == 0  # identical predictions
    assert predict["fp32"]["tweets_per_s"] > 0 and 0 <= predict["checks"]["int8_agreement_with_fp32"] <= 1
    packed = results["packed_equals_alone"]
    assert packed["fp32"]["equal"] and packed["fp32"]["tweets"] >= 4 and packed["fp32"]["max_abs_diff"] < 1e-4
    assert "MFU" in proc.stdout and "written to" in proc.stdout


def test_peak_table_and_model_flops():
    sys.path.insert(0, str(ROOT / "bench"))
    import gpu

    assert gpu.peak_for("NVIDIA H200") == 989.0 and gpu.peak_for("NVIDIA H100 80GB HBM3") == 989.0
    assert gpu.peak_for("NVIDIA H100 PCIe") == 756.0 and gpu.peak_for("NVIDIA A100-SXM4-80GB") == 312.0
    assert gpu.peak_for("NVIDIA L4") == 121.0 and gpu.peak_for("Quadro P1000") is None
    base = dict(hidden_size=768, num_hidden_layers=12, intermediate_size=3072)
    # 85M encoder parameters: ~510 MFLOP per token, plus attention and the masked-only head (64k vocabulary)
    per_token = gpu.flops_per_token(base, 64000)
    encoder = 12 * (4 * 768 * 768 + 2 * 768 * 3072 + 4 * 768 + 3072 + 768 + 4 * 768)
    assert per_token == 6 * encoder + 12 * 12 * 768 * 128 + 6 * (768 * 768 + 768 * 64000) * 0.15
    assert 0.55e9 < per_token < 0.65e9
