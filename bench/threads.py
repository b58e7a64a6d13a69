"""threads: `tweetkit pretrain` alone and beside other jobs, per thread setting.

The measured job pretrains the tiny RoBERTa on normalised SemEval-2017 tweets (batch 32,
packed rows of 128) for --steps steps; its speed is the real tokens/s between its first
logged step (after warm-up) and its last.  It runs under each setting:

  default       no flag, no variable: tweetkit's default (physical cores; threads spin as
                libgomp does, since nothing tells it that it shares the cores)
  shared        --shared: what tweetkit does where it knows it shares (OMP_WAIT_POLICY=PASSIVE)
  threads-1     --threads 1
  spinning      the behaviour before --threads: one thread per core, and libgomp's
                default of spinning ~3 ms before sleeping (GOMP_SPINCOUNT=300000)
  passive       OMP_WAIT_POLICY=PASSIVE: threads sleep as soon as they wait
  short-spin    GOMP_SPINCOUNT=30000: a tenth of libgomp's default spin

alone, and beside each companion, started first and kept busy (restarted when done) until
the measured job ends:

  normalize     a `tweetkit normalize --workers 1` pipeline over real tweets (Python, one core)
  same          a second pretrain with the same setting (two users of tweetkit)
  torch         a 2-thread torch job as other tools run it: pretrain with the spinning setting
  heavy         two of those torch jobs

Each speed is given as a share of the same setting's alone speed (fair share beside one
busy job: 0.5x on 2 cores) and of the default's alone speed.  Results also go to
results/bench-threads.json.

    python bench/threads.py [--steps 40] [--settings default,shared,threads-1,spinning]
                            [--companions normalize,same,torch,heavy]
    python bench/threads.py --smoke     # a few steps of a micro model: checks the script, measures nothing
"""

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from common import DEFAULT_DATA, clean_env, read_rows, write_normalized  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parent.parent
TWEETKIT = [sys.executable, "-m", "tweetkit"]
MICRO = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
         "max_position_embeddings": 130, "type_vocab_size": 1}  # fmt: skip


def cores() -> int:
    sys.path.insert(0, str(REPO))
    from tweetkit.threads import available_cpus, physical_cores

    return physical_cores(available_cpus())


def settings_table(n_cores: int) -> dict:
    """name -> (extra flags, extra environment)."""
    return {
        "default": ([], {}),
        "shared": (["--shared"], {}),
        "threads-1": (["--threads", "1"], {}),
        "spinning": (["--threads", str(n_cores)], {"GOMP_SPINCOUNT": "300000"}),
        "passive": ([], {"OMP_WAIT_POLICY": "PASSIVE"}),  # threads sleep at once
        "short-spin": ([], {"GOMP_SPINCOUNT": "30000"}),  # a tenth of libgomp's default spin
    }


class Companion:
    """A command rerun in a loop from a thread until stop(); output discarded."""

    def __init__(self, argv, env, stdin_path=None):
        self.argv, self.env, self.stdin_path = argv, env, stdin_path
        self.stopping, self.process, self.runs = threading.Event(), None, 0
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def loop(self):
        while not self.stopping.is_set():
            stdin = open(self.stdin_path, "rb") if self.stdin_path else subprocess.DEVNULL
            self.process = subprocess.Popen(
                self.argv, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=self.env, cwd=REPO
            )
            self.process.wait()
            if self.stdin_path:
                stdin.close()
            self.runs += 1

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.stopping.set()
        while self.thread.is_alive():
            if self.process is not None and self.process.poll() is None:
                self.process.terminate()
            self.thread.join(timeout=1)


def pretrain_argv(work, flags, steps, model_config, out_name):
    return TWEETKIT + [
        "pretrain", "--train", str(work / "corpus.jsonl"), "--tokenizer", str(work / "tok"), "-o", str(work / out_name),
        "--overwrite", "--model-config", model_config, "--max-steps", str(steps), "--batch-size", "32",
        "--cache-dir", str(work / "cache"), "--log-every", "1", "-q", *flags,
    ]  # fmt: skip


def measured_rate(stdout: str, skip: int) -> float | None:
    """Real tokens/s between logged step `skip` (warm-up excluded) and the last step."""
    lines = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    lines = [r for r in lines if "tokens_per_s" in r]
    if len(lines) <= skip:
        return None
    first, last = lines[skip - 1] if skip else {"tokens_per_s": 0, "elapsed_s": 0}, lines[-1]
    tokens = last["tokens_per_s"] * last["elapsed_s"] - first["tokens_per_s"] * first["elapsed_s"]
    seconds = last["elapsed_s"] - first["elapsed_s"]
    return tokens / seconds if seconds > 0 else None


def companions_for(name, work, table, model_config):
    env = clean_env()
    torch_flags, torch_env = table["spinning"]
    busy = 10**6  # steps: the companion never finishes first (it is restarted if it does)
    if name == "normalize":
        return [Companion(TWEETKIT + ["normalize", "--workers", "1"], env, stdin_path=work / "raw.jsonl")]
    if name == "torch":
        return [Companion(pretrain_argv(work, torch_flags, busy, model_config, "c0"), clean_env(**torch_env))]
    if name == "heavy":
        return [
            Companion(pretrain_argv(work, torch_flags, busy, model_config, f"c{i}"), clean_env(**torch_env))
            for i in range(2)
        ]
    raise ValueError(name)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--tweets", type=int, default=10000, help="SemEval-2017 train tweets to pretrain on")
    parser.add_argument("--steps", type=int, default=40, help="steps of each measured run")
    parser.add_argument("--warmup-steps", type=int, default=3, help="first steps left out of the speed")
    parser.add_argument("--settle", type=float, default=8.0, help="seconds companions run before the measured job")
    parser.add_argument("--settings", default="default,shared,threads-1,spinning")
    parser.add_argument("--companions", default="normalize,same,torch,heavy")
    parser.add_argument("--model-config", default="tiny")
    parser.add_argument("--output", default=str(REPO / "results" / "bench-threads.json"))
    parser.add_argument("--smoke", action="store_true", help="micro model, few tweets and steps: checks the script")
    args = parser.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="bench-threads-"))
    if args.smoke:
        args.tweets, args.steps, args.warmup_steps, args.settle = min(args.tweets, 300), min(args.steps, 4), 1, 1.0
        (work / "micro.json").write_text(json.dumps(MICRO))
        args.model_config = str(work / "micro.json")
    n_cores = cores()
    table = settings_table(n_cores)
    settings = [s for s in args.settings.split(",") if s]
    companions = [c for c in args.companions.split(",") if c]
    unknown = sorted(set(settings) - set(table)) + sorted(set(companions) - {"normalize", "same", "torch", "heavy"})
    if unknown:
        sys.exit(f"unknown setting or companion: {', '.join(unknown)}")

    source = pathlib.Path(args.data) / "semeval2017/train.jsonl"
    write_normalized(source, args.tweets, work / "corpus.jsonl")
    raw = [json.dumps({"text": r["text"]}) for r in read_rows(source)[: max(args.tweets, 2000)]]
    (work / "raw.jsonl").write_text("\n".join(raw * 5) + "\n", encoding="utf-8")  # for the normalize companion
    env = clean_env()
    vocab = "300" if args.smoke else "8000"
    tokenizer = TWEETKIT + [
        "train-bpe",
        str(work / "corpus.jsonl"),
        "-o",
        str(work / "tok"),
        "--vocab-size",
        vocab,
        "-q",
    ]
    subprocess.run(tokenizer, check=True, env=env, cwd=REPO, stdout=subprocess.DEVNULL)
    # One step tokenises the corpus into the cache; every later run memory-maps it.
    warm = pretrain_argv(work, [], 1, args.model_config, "warm")
    subprocess.run(warm, check=True, env=env, cwd=REPO, stdout=subprocess.DEVNULL)
    print(
        f"{args.tweets:,} tweets, {args.model_config} model, batch 32, {args.steps} steps per run "
        f"({args.warmup_steps} left out); {n_cores} physical cores; load average {os.getloadavg()[0]:.1f} at start",
        flush=True,
    )

    results = {}
    for setting in settings:
        flags, extra = table[setting]
        for scenario in ["alone", *companions]:
            if scenario == "same":
                running = [Companion(pretrain_argv(work, flags, 10**6, args.model_config, "c0"), clean_env(**extra))]
            else:
                running = [] if scenario == "alone" else companions_for(scenario, work, table, args.model_config)
            for companion in running:
                companion.start()
            time.sleep(args.settle if running else 0)
            start = time.perf_counter()
            proc = subprocess.run(
                pretrain_argv(work, flags, args.steps, args.model_config, "measured"),
                capture_output=True, text=True, env=clean_env(**extra), cwd=REPO,
            )  # fmt: skip
            wall = time.perf_counter() - start
            for companion in running:
                companion.stop()
            rate = measured_rate(proc.stdout, args.warmup_steps) if proc.returncode == 0 else None
            results.setdefault(setting, {})[scenario] = rate
            status = f"{rate:,.0f} tokens/s" if rate else f"FAILED: {proc.stderr.strip()[-300:]}"
            print(f"  {setting:<10} {scenario:<10} {status} ({wall:.0f} s wall)", flush=True)

    alone_default = (results.get("default") or {}).get("alone")
    print(f"\n{'setting':<10} {'beside':<10} {'tokens/s':>9} {'x own alone':>11} {'x default alone':>15}")
    rows = []
    for setting, by_scenario in results.items():
        alone = by_scenario.get("alone")
        for scenario, rate in by_scenario.items():
            own = rate / alone if rate and alone else None
            versus_default = rate / alone_default if rate and alone_default else None
            rows.append(
                dict(
                    setting=setting,
                    beside=scenario,
                    tokens_per_s=rate,
                    of_own_alone=own,
                    of_default_alone=versus_default,
                )
            )
            fmt = lambda x, spec: format(x, spec) if x is not None else "-"  # noqa: E731
            print(
                f"{setting:<10} {scenario:<10} {fmt(rate, '>9,.0f')} {fmt(own, '>10.2f')}x "
                f"{fmt(versus_default, '>14.2f')}x"
            )
    print(
        "fair share beside one busy companion on 2 cores: 0.5x of alone; 'torch' and 'heavy' companions spin "
        "(GOMP_SPINCOUNT=300000) as a torch job does by default"
    )
    if not args.smoke:
        pathlib.Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        with open(args.output, "w", encoding="utf-8") as handle:
            json.dump({"cores": n_cores, "steps": args.steps, "tweets": args.tweets, "rows": rows}, handle, indent=2)
            handle.write("\n")
        print(f"written to {args.output}")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
