"""bench/adaptation.py: the adaptation curve at smoke size (every step a real tweetkit command),
a rerun that resumes, and the RESULTS.md section it generates."""

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, shared_data

sys.path.insert(0, str(ROOT / "scripts"))
import results_md  # noqa: E402


def run(work, results, *extra):
    command = [sys.executable, str(ROOT / "bench/adaptation.py"), "--smoke", "--data", str(shared_data()), "--work",
               str(work), "--results", str(results), *extra]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.mark.slow
def test_smoke_curve_runs_resumes_and_renders(tmp_path):
    work, results = tmp_path / "work", tmp_path / "results"
    proc = run(work, results)
    result = json.loads((results / "adaptation.json").read_text())
    assert result["kind"] == "adaptation" and list(result["tasks"]) == ["semeval17", "irony"]
    for task in result["tasks"].values():
        metric, direct = task["metric"], task["direct"]["test"][task["metric"]]["values"]
        assert [b["tokens"] for b in task["budgets"]] == [0, 1024] and [b["steps"] for b in task["budgets"]] == [0, 2]
        zero, adapted = task["budgets"]
        assert zero["same_as_direct"] and zero["paired"]["values"] == [0.0]  # no tokens, no new vocabulary: (c) is (b)
        assert not adapted["same_as_direct"] and adapted["model"].endswith("2x4-lr1e-4-fp32")
        expected = [round(c - b, 2) for b, c in zip(direct, adapted["test"][metric]["values"])]
        assert adapted["paired"]["values"] == expected
    for name in ("adaptation.png", "adaptation.svg", "adaptation-tsne.png", "adaptation-tsne.svg", "adaptation.md"):
        assert (results / name).stat().st_size > 1000, name
    assert [p["points"] for p in result["embeddings"]["panels"]] == [24, 24]
    assert "## Adaptation curve" in proc.stdout and "| 1,024 | 2 |" in proc.stdout
    # A rerun trains and scores nothing again, and gives the same curve.
    again = run(work, results)
    for command in ("pretrain", "finetune", "evaluate", "embed"):
        assert f"-m tweetkit {command}" not in again.stderr, command
    assert json.loads((results / "adaptation.json").read_text())["tasks"] == result["tasks"]
    output = tmp_path / "RESULTS.md"
    rendered = subprocess.run(
        [sys.executable, str(ROOT / "scripts/results_md.py"), "--results", str(results), "-o", str(output)],
        capture_output=True, text=True, cwd=ROOT, env=dict(os.environ, PYTHONPATH=str(ROOT)),
    )  # fmt: skip
    assert rendered.returncode == 0, rendered.stderr
    text = output.read_text()
    assert "## Adaptation curve" in text and "](results/adaptation.svg)" in text.replace(str(tmp_path) + "/", "")


def curve(diffs_by_budget):
    budgets = [
        {"tokens": tokens, "steps": tokens // 4096, "pretrain_minutes": tokens / 1e5,
         "paired": {"mean": sum(d) / len(d), "std": (max(d) - min(d)) / 2, "values": d}}
        for tokens, d in diffs_by_budget
    ]  # fmt: skip
    task = {"metric": "macro_recall", "budgets": budgets, "epochs": "1",
            "direct": {"test": {"macro_recall": {"mean": 60.0, "std": 0.5, "values": [59.5, 60.0, 60.5]}}},
            "data": {"train": 10, "validation": 5, "test": 5}}  # fmt: skip
    return {"kind": "adaptation", "name": "adaptation", "levers": "TAPT", "tasks": {"semeval17": task},
            "picture": {"svg": "adaptation.svg"}, "hardware": "a CPU", "minutes": 3.0, "command": "x",
            "settings": {"pretrain_batch_size": "32", "precision": "fp32", "lr": "5e-5", "batch_size": "32",
                         "seeds": "1,2,3"}}  # fmt: skip


def test_break_even_is_the_first_budget_beyond_the_seed_spread():
    result = curve(
        [(0, [0.0, 0.0, 0.0]), (409600, [-1.0, 0.5, 0.2]), (1638400, [0.8, 1.2, 1.0]), (6553600, [2.0, 1.0, 3.0])]
    )
    assert results_md.break_even(result["tasks"]["semeval17"])["tokens"] == 1638400
    text = "\n".join(results_md.adaptation_section(result, "results", "."))
    assert "beyond the seed spread from 1,638,400 tokens" in text and "| 409,600 | 100 | 4 | -0.10 ± 0.75" in text
    never = curve([(0, [0.0, 0.0]), (409600, [-1.0, 0.5])])
    assert results_md.break_even(never["tasks"]["semeval17"]) is None
    assert "does not beat (b) beyond the seed spread at any budget up to 409,600" in "\n".join(
        results_md.adaptation_section(never, "results", ".")
    )


@pytest.mark.slow
def test_repro_gpu_at_smoke_size_on_the_cpu(tmp_path):
    """scripts/repro_gpu.py's path (bf16, head warm-up) with toy sizes: results/gpu.json."""
    results = tmp_path / "results"
    command = [sys.executable, str(ROOT / "scripts/repro_gpu.py"), "--smoke", "--data", str(shared_data()), "--work",
               str(tmp_path / "work"), "--results", str(results)]  # fmt: skip
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    proc = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((results / "gpu.json").read_text())
    assert result["name"] == "gpu" and result["settings"]["precision"] == "bf16"
    adapted = result["tasks"]["irony"]["budgets"][-1]
    assert adapted["model"].endswith("head1-2x4-lr1e-4-bf16") and "--head-warmup-steps 1" in proc.stderr
    assert (results / "gpu.png").exists() and (results / "gpu-tsne.svg").exists()
    no_gpu = subprocess.run([sys.executable, str(ROOT / "scripts/repro_gpu.py")], capture_output=True, text=True,
                            cwd=ROOT, env=dict(env, CUDA_VISIBLE_DEVICES=""))  # fmt: skip
    assert no_gpu.returncode == 1 and "no CUDA GPU" in no_gpu.stderr
