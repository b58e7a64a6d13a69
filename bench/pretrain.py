"""pretrain: `tweetkit pretrain` against the Hugging Face Trainer, real tokens per second.

The baseline is `run_mlm.py --line_by_line`: one tweet per example (truncated to 128
tokens), DataCollatorForLanguageModeling(mlm_probability=0.15), padding to the longest
in the batch, vocabulary projection at every position.  tweetkit packs tweets into full
rows of 128 tokens with a block-diagonal mask and projects only at masked positions.
Both train the same tiny RoBERTa with the same tokenizer (train-bpe, --vocab-size pieces) for
one epoch over the same normalised SemEval-2017 tweets, the same number of rows or
examples per step, each run in its own process on 2 threads.  The goal is the
whole-process ratio (each process's wall time, tokenising included: every tweetkit run
has a cold cache of its own); tokens/s over training time alone is printed beside it.

Also measured: the matmul peak, achieved model GFLOP/s (6 x encoder parameters per real
token, plus the head where it is computed), what the block-diagonal mask costs against
cross-tweet attention in the same packed rows (in-process, a few steps), and whether
bf16's validation loss stays within 2% of fp32's.

    python bench/pretrain.py [--tweets 10000] [--batch-size 32] [--vocab-size 8000] [--data ../shared/data]
    python bench/pretrain.py --vocab-size 32000 --tokenizer-tweets 49570 --bf16-steps 0   # a BERTweet-like vocabulary
    python bench/pretrain.py --peak-only   # just the matmul peaks: does this CPU have fast bf16?

The Trainer needs `accelerate` (pip install 'accelerate>=1.1.0').
"""

import argparse
import contextlib
import io
import itertools
import json
import os
import pathlib
import re
import shutil
import sys
import tempfile

THREADS = 2
os.environ.update(OMP_NUM_THREADS=str(THREADS), MKL_NUM_THREADS=str(THREADS))  # before torch loads; children inherit it

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import torch  # noqa: E402
from common import DEFAULT_DATA, matmul_gflops, run  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parent.parent
MAX_LENGTH, MASK_PROB = 128, 0.15
TINY = dict(
    hidden_size=256,
    num_hidden_layers=4,
    num_attention_heads=4,
    intermediate_size=1024,
    max_position_embeddings=130,
    type_vocab_size=1,
)
GOALS = {"tweetkit fp32": 3.0, "tweetkit bf16": 6.0}  # x HF fp32, whole process
ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")  # SemEval-2017 texts carry literal \uXXXX escapes

HF_CHILD = """
import json, sys, torch
s = json.loads(sys.argv[1])
torch.set_num_threads(s["threads"])
from transformers import (AutoTokenizer, DataCollatorForLanguageModeling, RobertaConfig, RobertaForMaskedLM, Trainer,
                          TrainingArguments)
tok = AutoTokenizer.from_pretrained(s["tokenizer"])
texts = [json.loads(line)["text"] for line in open(s["corpus"], encoding="utf-8")]
enc = tok(texts, truncation=True, max_length=s["max_length"], return_special_tokens_mask=True)
examples = [dict(zip(enc.keys(), values)) for values in zip(*enc.values())]
collator = DataCollatorForLanguageModeling(tok, mlm_probability=s["mask_prob"])
seen = {"real": 0, "positions": 0}

def counting(features):
    batch = collator(features)
    seen["real"] += int(batch["attention_mask"].sum())
    seen["positions"] += batch["input_ids"].numel()
    return batch

torch.manual_seed(0)
config = RobertaConfig(**s["shape"], vocab_size=len(tok), pad_token_id=tok.pad_token_id, bos_token_id=tok.bos_token_id,
                       eos_token_id=tok.eos_token_id, attn_implementation="sdpa")
args = TrainingArguments(output_dir=s["output"], per_device_train_batch_size=s["batch_size"], num_train_epochs=1,
    learning_rate=5e-4, weight_decay=0.01, adam_beta2=0.98, adam_epsilon=1e-6,
    warmup_steps=0.06,  # 5.x: a float < 1 is a ratio
    lr_scheduler_type="linear", logging_steps=10**9, save_strategy="no", report_to=[], use_cpu=True, bf16=s["bf16"],
    max_steps=s["max_steps"], dataloader_num_workers=0, seed=0, disable_tqdm=True)
metrics = Trainer(model=RobertaForMaskedLM(config), args=args, train_dataset=examples,
                  data_collator=counting).train().metrics
runtime = metrics["train_runtime"]
print(json.dumps({"tokens_per_s": seen["real"] / runtime, "positions_per_s": seen["positions"] / runtime,
                  "elapsed_s": runtime, "loss": metrics["train_loss"], "real_tokens": seen["real"]}))
"""


def write_corpus(source, count, path, offset=0):
    from tweetkit.text.normalize import TweetNormalizer

    normalize = TweetNormalizer()
    with open(source, encoding="utf-8") as lines, open(path, "w", encoding="utf-8") as out:
        for line in itertools.islice(lines, offset, offset + count):
            text = ESCAPE.sub(lambda m: chr(int(m[1], 16)), json.loads(line)["text"])
            out.write(json.dumps({"text": normalize(text)}, ensure_ascii=False) + "\n")
    return path


def print_peaks():
    from tweetkit.modeling import cpu_has_native_bf16

    peaks = {
        "fp32": matmul_gflops(torch.float32, 2048),
        "bf16": matmul_gflops(torch.bfloat16, 2048, weight_layout=True),
    }
    plain_bf16 = matmul_gflops(torch.bfloat16, 1024, repeats=1)
    print(
        f"matmul peak, {THREADS} threads: fp32 2048x2048 {peaks['fp32']:.1f} GFLOP/s; "
        f"bf16 2048x2048 (A @ B.T) {peaks['bf16']:.1f} GFLOP/s; "
        f"bf16 1024x1024 A @ B (B row-major) {plain_bf16:.1f} GFLOP/s; "
        f"native bf16: {'yes' if cpu_has_native_bf16() else 'no'}"
    )
    return peaks


def hf_run(work, corpus, tok, batch_size, bf16, max_steps=-1):
    settings = dict(
        corpus=corpus,
        tokenizer=tok,
        batch_size=batch_size,
        bf16=bf16,
        threads=THREADS,
        max_length=MAX_LENGTH,
        mask_prob=MASK_PROB,
        shape=TINY,
        output=tempfile.mkdtemp(dir=work),
        max_steps=max_steps,
    )
    label = f"HF Trainer {'bf16' if bf16 else 'fp32'}" + (f" ({max_steps} steps)" if max_steps > 0 else "")
    out, wall = run([sys.executable, "-c", HF_CHILD, json.dumps(settings)], label)
    return {**json.loads(out.strip().splitlines()[-1]), "wall_s": wall, "partial": max_steps > 0} if out else None


def tweetkit_run(work, corpus, val, tok, batch_size, precision, max_steps=None, label=None):
    """One `tweetkit pretrain` process with a cache of its own, so that its wall time counts
    tokenising the corpus, as the Trainer's process does."""
    cmd = [
        sys.executable,
        "-m",
        "tweetkit",
        "pretrain",
        "--train",
        corpus,
        "--validation",
        val,
        "--tokenizer",
        tok,
        "-o",
        tempfile.mkdtemp(dir=work),
        "--model-config",
        "tiny",
        "--epochs",
        "1",
        "--batch-size",
        str(batch_size),
        "--precision",
        precision,
        "--cache-dir",
        tempfile.mkdtemp(dir=work),
        "-q",
        "--log-every",
        "1000000",
    ]
    out, wall = run(
        cmd + (["--max-steps", str(max_steps)] if max_steps else []),
        f"tweetkit {precision}" + (f" ({label or 'speed'}, {max_steps} steps of {batch_size})" if max_steps else ""),
    )
    if out is None:
        return None
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    result = [r for r in records if "tokens_per_s" in r][-1]
    return {
        **result,
        "validation_loss": next((r["validation_loss"] for r in reversed(records) if "validation_loss" in r), None),
        "wall_s": wall,
        "partial": bool(max_steps),  # a cut-short run: its wall time is not an epoch's
    }


def mask_cost(work, corpus_path, tok_dir, cache, batch_size, steps):
    """tokens/s of the training loop with the block-diagonal mask, and with cross-tweet attention."""
    from tweetkit.io import StreamOptions
    from tweetkit.modeling import build_model, load_tokenizer, position_offset
    from tweetkit.tasks.mlm import MLMTask, tokenize_corpus
    from tweetkit.train.config import TrainConfig
    from tweetkit.train.distributed import Dist
    from tweetkit.train.loop import train

    tok = load_tokenizer(tok_dir)
    corpus = tokenize_corpus([corpus_path], tok, StreamOptions(quiet=True), cache, log=lambda message: None)
    best = {}
    for block_diagonal in (False, True, False, True):  # alternate, best of two: the machine is noisy
        model = build_model("tiny", tok, seed=0)
        task = MLMTask(corpus, None, tok, MAX_LENGTH, 0, position_offset(model), mask_prob=MASK_PROB)
        task.block_diagonal = block_diagonal
        config = TrainConfig(
            output_dir=tempfile.mkdtemp(dir=work), batch_size=batch_size, max_steps=steps, log_every=10**9
        )
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            metrics = train(model, task, config, Dist(), log=lambda message: None)
        best[block_diagonal] = max(best.get(block_diagonal, 0.0), metrics["tokens_per_s"])
    return best[True], best[False]


def report(results, peaks, corpus_tokens, encoder_params, head_params):
    """The whole-process ratio against HF fp32 first (each process's wall time: start-up,
    tokenising, training, saving), then tokens/s over training time and its ratio."""
    hf = results["HF Trainer fp32"] or {}
    print(
        f"\n{'run':<16} {'precision':<9} {'wall s':>7} {'x HF fp32 whole':>22} {'real tok/s':>10} {'s/epoch':>8} "
        f"{'x HF fp32':>9} {'GFLOP/s':>8} {'of peak':>8} {'train loss':>10}"
    )
    for name, r in results.items():
        precision = name.split()[-1]
        if r is None:
            print(f"{name:<16} {precision:<9} {'failed':>7}")
            continue
        rate = r["tokens_per_s"]
        # HF projects to the vocabulary at every position, padding included; tweetkit at the masked ones.
        head_rate = r["positions_per_s"] if "positions_per_s" in r else MASK_PROB * rate
        gflops = 6 * (encoder_params * rate + head_params * head_rate) / 1e9
        whole = f"{hf['wall_s'] / r['wall_s']:.2f}x" if hf and not r.get("partial") else "-"
        if name in GOALS and whole != "-":
            whole += f" ({'ok' if hf['wall_s'] / r['wall_s'] >= GOALS[name] else 'MISS'} >={GOALS[name]:.0f}x)"
        inner = f"{rate / hf['tokens_per_s']:.2f}x" if hf else "-"
        print(
            f"{name:<16} {precision:<9} {r['wall_s']:>7.1f} {whole:>22} {rate:>10,.0f} {corpus_tokens / rate:>8.1f} "
            f"{inner:>9} {gflops:>8.1f} {gflops / peaks[precision]:>8.1%} {r['loss']:>10.4f}"
        )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--tweets", type=int, default=10000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument(
        "--vocab-size",
        type=int,
        default=8000,
        help="of the tokenizer both sides use (BERTweet: 64,000); larger "
        "vocabularies favour tweetkit, which projects to the vocabulary at masked positions only",
    )
    parser.add_argument(
        "--tokenizer-tweets",
        type=int,
        default=None,
        help="SemEval-2017 train tweets the tokenizer is trained on "
        "[default: --tweets]; a large --vocab-size needs more",
    )
    parser.add_argument("--mask-steps", type=int, default=30, help="steps per run of the mask-cost measurement")
    parser.add_argument(
        "--bf16-steps",
        type=int,
        default=None,
        help="steps of the bf16 speed runs (default: a full epoch on a CPU with "
        "native bf16, else 5: emulated bf16 is many times slower than fp32); 0 skips HF bf16",
    )
    parser.add_argument(
        "--quality-steps",
        type=int,
        default=40,
        help="steps of the paired fp32/bf16 runs that compare validation loss, "
        "used when the bf16 speed run is not a full epoch",
    )
    parser.add_argument("--quality-batch-size", type=int, default=8)
    parser.add_argument(
        "--peak-only", action="store_true", help="print the matmul peaks and whether the CPU has native bf16, then stop"
    )
    args = parser.parse_args()
    if args.peak_only:
        torch.set_num_threads(THREADS)
        print_peaks()
        return
    from tweetkit.modeling import cpu_has_native_bf16

    native_bf16 = cpu_has_native_bf16()
    if args.bf16_steps is None:
        args.bf16_steps = -1 if native_bf16 else 5
    torch.set_num_threads(THREADS)
    from transformers import AutoTokenizer

    from tweetkit.modeling import build_model

    work = tempfile.mkdtemp(prefix="bench-pretrain-")
    data = pathlib.Path(args.data)
    corpus = write_corpus(data / "semeval2017/train.jsonl", args.tweets, os.path.join(work, "corpus.jsonl"))
    val = write_corpus(data / "semeval2017/test.jsonl", 1000, os.path.join(work, "val.jsonl"))
    tok_dir, cache = os.path.join(work, "tok"), os.path.join(work, "cache")
    tok_corpus = corpus
    if args.tokenizer_tweets:
        tok_corpus = write_corpus(
            data / "semeval2017/train.jsonl", args.tokenizer_tweets, os.path.join(work, "tokenizer-corpus.jsonl")
        )
    summary, _ = run(
        [
            sys.executable,
            "-m",
            "tweetkit",
            "train-bpe",
            tok_corpus,
            "-o",
            tok_dir,
            "--vocab-size",
            str(args.vocab_size),
            "-q",
        ],
        "train-bpe",
    )
    if summary is None:
        sys.exit("train-bpe failed")
    tok = AutoTokenizer.from_pretrained(tok_dir)
    texts = [json.loads(line)["text"] for line in open(corpus, encoding="utf-8")]
    corpus_tokens = sum(len(ids) for ids in tok(texts, truncation=True, max_length=MAX_LENGTH)["input_ids"])
    model = build_model("tiny", tok, seed=0)
    encoder_params = sum(p.numel() for p in model.roberta.encoder.parameters())
    hidden = model.config.hidden_size
    head_params = hidden * hidden + hidden * len(tok)  # lm_head: dense, then the projection to the vocabulary
    print(
        f"{len(texts):,} tweets, {corpus_tokens:,} real tokens (<s> x </s>, <= {MAX_LENGTH}); vocabulary {len(tok):,}; "
        f"encoder {encoder_params / 1e6:.2f} M parameters (non-embedding); {THREADS} threads; batch {args.batch_size}; "
        f"work dir {work}"
    )

    peaks = print_peaks()

    print("runs:", flush=True)
    results = {"HF Trainer fp32": hf_run(work, corpus, tok_dir, args.batch_size, bf16=False)}
    results["tweetkit fp32"] = tweetkit_run(work, corpus, val, tok_dir, args.batch_size, "fp32")
    bf16_steps = args.bf16_steps if args.bf16_steps > 0 else None  # None: a full epoch
    quality = {}
    if args.bf16_steps:  # 0 skips bf16
        results["tweetkit bf16"] = tweetkit_run(
            work, corpus, val, tok_dir, args.batch_size, "bf16", max_steps=bf16_steps
        )
        results["HF Trainer bf16"] = hf_run(
            work, corpus, tok_dir, args.batch_size, bf16=True, max_steps=args.bf16_steps
        )
        if bf16_steps:  # the bf16 run was cut short: compare quality on a paired short schedule
            quality = {
                p: tweetkit_run(
                    work,
                    corpus,
                    val,
                    tok_dir,
                    args.quality_batch_size,
                    p,
                    max_steps=args.quality_steps,
                    label="quality",
                )
                for p in ("fp32", "bf16")
            }
        else:
            quality = {p: results[f"tweetkit {p}"] for p in ("fp32", "bf16")}
    print(f"  mask cost: 4 in-process runs of {args.mask_steps} steps", flush=True)
    with_mask, without_mask = mask_cost(work, corpus, tok_dir, cache, args.batch_size, args.mask_steps)

    report(results, peaks, corpus_tokens, encoder_params, head_params)
    hf = results["HF Trainer fp32"]
    print(
        f"native bf16 on this CPU: {native_bf16}. s/epoch: the whole corpus at the run's rate"
        + (f" (the bf16 runs ran their first {args.bf16_steps} steps only)" if bf16_steps else "")
        + "; train loss: HF = mean over its steps, tweetkit = last step; GFLOP/s omit attention scores; 'of peak': "
        + "of the 2048x2048 matmul peak of the run's precision"
        + (
            f"; HF computes {hf['positions_per_s'] / hf['tokens_per_s']:.2f} positions per real token (padding)"
            if hf
            else ""
        )
    )
    print(
        f"\nblock-diagonal mask cost ({args.mask_steps} steps, best of 2): {with_mask:,.0f} tokens/s with it, "
        f"{without_mask:,.0f} with cross-tweet attention; ratio {with_mask / without_mask:.3f}"
    )
    fp32, bf16 = (quality.get(p) and quality[p]["validation_loss"] for p in ("fp32", "bf16"))
    schedule = (
        "a full epoch" if not bf16_steps else f"{args.quality_steps} steps of {args.quality_batch_size} rows, same seed"
    )
    if fp32 and bf16:
        diff = (bf16 - fp32) / fp32
        print(
            f"bf16 validation loss {bf16:.6f} vs fp32 {fp32:.6f} after {schedule}: {diff:+.4%} "
            f"({'within' if abs(diff) <= 0.02 else 'NOT within'} 2%; "
            "validation runs at the training precision, bf16 autocast for the bf16 run)"
        )
    else:
        print("bf16 validation loss: " + ("skipped (--bf16-steps 0)" if not args.bf16_steps else "no result"))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
