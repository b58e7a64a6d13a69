"""dedup at scale: the staged path over many files (`dedup -o DIR/`) against the streaming
single process, on millions of tweets built from the shared real ones.

The corpus: real tweets (bases) with planted trivial and near variants (bench/dedup.py's
kinds) placed anywhere later in the corpus, so most twins land in other files; distinct
short tweets; and, to reach the size, distinct "spliced" tweets (the first half of one
real tweet, the second half of another).  Written as FILES equal JSONL files; each
record's id says what it is.  Seeded: every run builds the same corpus.

Runs, one after the other (nothing else should run on the machine):
  streaming  `tweetkit dedup FILES > out` (one process; the reference)
  staged     `tweetkit dedup -o DIR/ FILES --workers W` for W in --workers, and the same
             corpus in 4x more, smaller files (memory per task follows the file), and
             the first half of the files (memory per task does not follow the corpus).
Reports tweets/s per stage, peak memory per task, recall and precision of the staged
path against the streaming one, planted recall/precision for both, near duplicates
found across files (what deduplicating each file alone, e.g. with GNU parallel, misses),
and writes results/dedup-scale.json.

    python bench/dedup_scale.py [--data ../shared/data] [--tweets 2000000] [--files 16] [--workers 1,2]
"""

import argparse
import json
import os
import pathlib
import platform
import random
import re
import shutil
import subprocess
import sys
import time

from common import DEFAULT_DATA, real_tweets
from dedup import TRIVIAL, near_variants

from tweetkit.text.dedup import dedup_key

ROOT = pathlib.Path(__file__).resolve().parent.parent
# The CLI, reporting its own peak memory (VmHWM) on exit: getrusage would report this
# benchmark's, whose memory the child inherits the peak of across fork and exec.
TWEETKIT = [
    sys.executable,
    "-c",
    "import atexit, sys\n"
    "from tweetkit.text.staged_dedup import peak_rss_mb\n"
    "atexit.register(lambda: print(f'peak_rss_mb {peak_rss_mb():.1f}', file=sys.stderr))\n"
    "from tweetkit.cli import main\n"
    "sys.argv[0] = 'tweetkit'\n"
    "main()",
]


def build(data, total, n_bases, n_shorts, seed):
    """[(id, text)] in corpus order; ids: b (base), t/n (trivial/near variant of base i),
    s (short), f (filler)."""
    rng = random.Random(seed)
    pool, keys = [], set()
    for text in real_tweets(data):
        key = dedup_key(text)
        if len(key.split()) >= 8 and key not in keys:
            keys.add(key)
            pool.append(text)
    rng.shuffle(pool)
    bases, fillers_from = pool[:n_bases], pool[n_bases:]
    hashtags = sorted({h for text in pool[:20000] for h in re.findall(r"#\w+", text)})
    vocab = sorted({w for text in bases[:5000] for w in text.lower().split() if w.isalpha() and len(w) > 2})
    near = near_variants(hashtags, vocab)
    groups = []
    for i, text in enumerate(bases):
        group = [(f"b{i}", text)]
        for kind, variants in (("t", TRIVIAL), ("n", near)):
            for name, make in variants.items():
                variant = make(text, rng)
                if variant is not None:
                    group.append((f"{kind}{i}:{name}", variant))
        groups.append(group)
    shorts, short_keys = [], set()
    for text in pool:
        short = " ".join(text.split()[: rng.randint(2, 4)])
        key = dedup_key(short)
        if len(key.split()) >= 2 and key not in short_keys:
            short_keys.add(key)
            shorts.append(short)
        if len(shorts) == n_shorts:
            break
    groups += [[(f"s{i}", text)] for i, text in enumerate(shorts)]
    planted = sum(len(group) for group in groups)
    halves = [text.split() for text in fillers_from]
    seen = set()
    while len(seen) < total - planted:
        a, b = rng.choice(halves), rng.choice(halves)
        text = " ".join(a[: len(a) // 2] + b[len(b) // 2 :])
        if text not in seen:
            seen.add(text)
            groups.append([(f"f{len(seen)}", text)])
    placed = []
    for group in groups:
        slots = sorted(rng.random() for _ in group)
        rest = group[1:]
        rng.shuffle(rest)
        placed += zip(slots, [group[0]] + rest)
    placed.sort()
    return [item for _, item in placed]


def write_files(items, directory, count):
    directory.mkdir(parents=True, exist_ok=True)
    size = -(-len(items) // count)
    paths = []
    for index in range(count):
        path = directory / f"part-{index:03d}.jsonl"
        with open(path, "w", encoding="utf-8") as f:
            for tid, text in items[index * size : (index + 1) * size]:
                f.write(json.dumps({"id": tid, "text": text}, ensure_ascii=False) + "\n")
        paths.append(str(path))
    return paths


def timed(cmd, stdout=None):
    """(seconds, peak RSS MB of the main process) of a child run."""
    begin = time.perf_counter()
    proc = subprocess.run(cmd, stdout=stdout or subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT)
    seconds = time.perf_counter() - begin
    stderr = proc.stderr.decode()
    if proc.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{stderr[-2000:]}")
    return seconds, float(re.findall(r"peak_rss_mb ([0-9.]+)", stderr)[-1])


def dropped_ids(path_or_dir):
    paths = sorted(pathlib.Path(path_or_dir).glob("*.jsonl")) if os.path.isdir(path_or_dir) else [path_or_dir]
    out = {}
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for line in f:
                record = json.loads(line)
                out[record["id"]] = record
    return out


def planted_scores(dropped, ids):
    def share(prefix, want_dropped=True):
        picked = [i for i in ids if i.startswith(prefix)]
        return sum((i in dropped) == want_dropped for i in picked) / max(len(picked), 1)

    false = sum(1 for i in dropped if i[0] in "bs")  # a base or a short tweet dropped
    return {
        "trivial_recall": share("t"),
        "near_recall": share("n"),
        "short_kept": share("s", False),
        "bases_kept": share("b", False),
        "precision_planted": 1 - false / max(len(dropped), 1),
    }


def staged_run(paths, out, workers, ray=None):
    shutil.rmtree(out, ignore_errors=True)
    work = out.parent / f"{out.name}-work"
    shutil.rmtree(work, ignore_errors=True)
    cmd = [*TWEETKIT, "dedup", "-o", f"{out}/", "--dropped", f"{out}-dropped/", "--work-dir", str(work), "--keep-work"]
    cmd += ["--ray", ray, "--workers", str(workers)] if ray else ["--workers", str(workers)]
    seconds, rss = timed([*cmd, *paths])
    stats = json.loads((work / "stats.json").read_text())
    signature_bytes = sum(f.stat().st_size for f in (work / "signatures").rglob("*.npy"))
    shutil.rmtree(work)
    return {"seconds": seconds, "driver_peak_rss_mb": rss, "signature_bytes": signature_bytes, "stats": stats}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--tweets", type=int, default=2_000_000)
    parser.add_argument("--bases", type=int, default=30_000)
    parser.add_argument("--shorts", type=int, default=20_000)
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--ray", action="store_true", help="also run on a local Ray instance")
    parser.add_argument("--work", default=str(ROOT / "bench-work" / "dedup-scale"))
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--output", default=str(ROOT / "results" / "dedup-scale.json"))
    args = parser.parse_args()
    work = pathlib.Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    begin = time.perf_counter()
    items = build(pathlib.Path(args.data), args.tweets, args.bases, args.shorts, args.seed)
    ids = [tid for tid, _ in items]
    position = {tid: i for i, tid in enumerate(ids)}
    print(f"corpus: {len(items):,} tweets built in {time.perf_counter() - begin:.0f} s", file=sys.stderr)
    paths = write_files(items, work / "files", args.files)
    small = write_files(items, work / "small-files", args.files * 4)
    del items

    streaming_out = work / "streaming.jsonl"
    with open(streaming_out, "wb") as out:
        seconds, rss = timed([*TWEETKIT, "dedup", "--dropped", str(work / "streaming-dropped.jsonl"), *paths], out)
    reference = dropped_ids(work / "streaming-dropped.jsonl")
    results = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "tweets": len(ids),
        "files": args.files,
        "streaming": {"seconds": seconds, "tweets_per_s": len(ids) / seconds, "peak_rss_mb": rss},
        "streaming_scores": planted_scores(reference, ids),
        "staged": {},
    }
    print(f"streaming: {seconds:.0f} s, {len(ids) / seconds:,.0f} tweets/s, peak {rss:,.0f} MB", file=sys.stderr)
    runs = [(f"{w} workers, {args.files} files", paths, int(w), None) for w in args.workers.split(",")]
    top = max(int(w) for w in args.workers.split(","))
    runs.append((f"{top} workers, {args.files * 4} files", small, top, None))
    runs.append(
        (f"{top} workers, first {args.files // 2} files (half the corpus)", paths[: args.files // 2], top, None)
    )
    if args.ray:
        runs.append((f"Ray local, {top} CPUs, {args.files} files", paths, top, "local"))
    for name, files, workers, ray in runs:
        out = work / "staged"
        run = staged_run(files, out, workers, ray)
        n = run["stats"]["signatures"]["records"]
        run["tweets_per_s"] = n / run["seconds"]
        run["stage_tweets_per_s"] = {
            stage: n / run["stats"][stage]["seconds"] for stage in ("signatures", "matching", "filtering")
        }
        run["stage_tweets_per_s"]["resolution"] = n / run["stats"]["resolution"]["seconds"]
        if len(files) == len(paths):
            mine = dropped_ids(f"{out}-dropped")
            same = mine.keys() & reference.keys()
            run["vs_streaming"] = {
                "recall": len(same) / len(reference),
                "precision": len(same) / max(len(mine), 1),
                "identical_output": b"".join(pathlib.Path(out, os.path.basename(p)).read_bytes() for p in paths)
                == streaming_out.read_bytes(),
            }
            run["scores"] = planted_scores(mine, ids)
            size = -(-len(ids) // len(paths))
            run["near_duplicates_across_files"] = sum(
                1
                for tid, record in mine.items()
                if record["reason"] == "near-duplicate" and position[record["dup_of"]] // size != position[tid] // size
            )
        results["staged"][name] = run
        print(
            f"staged ({name}): {run['seconds']:.0f} s, {run['tweets_per_s']:,.0f} tweets/s, "
            f"peak per task: signatures {run['stats']['signatures']['task_peak_rss_mb_max']:,.0f} MB, "
            f"matching {run['stats']['matching']['task_peak_rss_mb_max']:,.0f} MB, "
            f"filtering {run['stats']['filtering']['task_peak_rss_mb_max']:,.0f} MB, "
            f"resolution {run['stats']['resolution']['peak_rss_mb']:,.0f} MB",
            file=sys.stderr,
        )
    pathlib.Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.output).write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
