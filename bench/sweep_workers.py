"""Two sweep workers against one, a core each: wall time for a fixed number of trials.

`python bench/sweep_workers.py`: a micro RoBERTa (random weights) fine-tuned on 1,600 real
tweets (is it a question?) for 2 epochs per trial; --trials random-search trials in one
study, run by one `tweetkit finetune --sweep-method random` process, then by two sharing
the study's SQLite file; OMP_NUM_THREADS=1 in every process, so each has one core.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

TWEETKIT = [sys.executable, "-m", "tweetkit"]
ENV = dict(os.environ, OMP_NUM_THREADS="1")
MICRO = {
    "hidden_size": 64,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 128,
    "max_position_embeddings": 130,
    "type_vocab_size": 1,
}


def run(argv, **kwargs):
    return subprocess.run([str(a) for a in argv], check=True, capture_output=True, env=ENV, **kwargs)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data", default="../shared/data")
    parser.add_argument("--trials", type=int, default=8)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="sweep-workers-")
    with open(os.path.join(args.data, "tweeteval/irony/train.jsonl"), encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle][:2000]
    labelled = [{"text": r["text"], "label": "question" if "?" in r["text"] else "statement"} for r in rows]
    for name, part in (("train", labelled[:1600]), ("val", labelled[1600:]), ("corpus", rows)):
        with open(os.path.join(work, f"{name}.jsonl"), "w", encoding="utf-8") as handle:
            handle.writelines(json.dumps(r) + "\n" for r in part)
    with open(os.path.join(work, "micro.json"), "w") as handle:
        json.dump(MICRO, handle)
    run(
        TWEETKIT
        + [
            "train-bpe",
            os.path.join(work, "corpus.jsonl"),
            "-o",
            os.path.join(work, "tok"),
            "--vocab-size",
            "1000",
            "-q",
        ]
    )
    run(TWEETKIT + ["pretrain", "--train", os.path.join(work, "corpus.jsonl"), "--tokenizer", os.path.join(work, "tok"),
                    "-o", os.path.join(work, "mlm"), "--model-config", os.path.join(work, "micro.json"),
                    "--max-steps", "0", "--cache-dir", os.path.join(work, "cache"), "-q"])  # fmt: skip
    base = TWEETKIT + ["finetune", "--model", os.path.join(work, "mlm"), "--task", "classification",
                       "--train", os.path.join(work, "train.jsonl"), "--validation", os.path.join(work, "val.jsonl"),
                       "--epochs", "2", "--patience", "0", "--sweep-method", "random",
                       "--search-space", "lr=log:1e-4:1e-2;batch_size=16,32", "--sweep-trials", str(args.trials),
                       "--no-prune", "-q"]  # fmt: skip
    times = {}
    for workers in (1, 2):
        out = os.path.join(work, f"sweep-{workers}")
        os.makedirs(out)
        started = time.perf_counter()
        processes = [
            subprocess.Popen(base + ["-o", out], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV)
            for _ in range(workers)
        ]
        outputs = [p.communicate() for p in processes]
        if any(p.returncode for p in processes):
            sys.exit("\n".join(err.decode()[-1000:] for _, err in outputs))
        times[workers] = time.perf_counter() - started
        counts = [sum(1 for line in stdout.splitlines() if b'"state"' in line) for stdout, _ in outputs]
        print(f"{workers} worker(s): {args.trials} trials in {times[workers]:.1f} s (trials per worker: {counts})")
    print(f"speed-up with 2 workers: {times[1] / times[2]:.2f}x")


if __name__ == "__main__":
    main()
