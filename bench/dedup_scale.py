"""dedup at scale: the staged path over many files (`dedup -o DIR/`) against the streaming
single process, on millions of tweets built from the shared real ones.

The corpus: real tweets (bases) with planted trivial and near variants (bench/dedup.py's
kinds) placed anywhere later in the corpus, so most twins land in other files; distinct
short tweets; and, to reach the size, distinct "spliced" tweets (the first half of one
real tweet, the second half of another).  Written as FILES equal JSONL files; each
record's id says what it is.  Seeded: every run builds the same corpus.

Runs, one after the other (nothing else should run on the machine):
  streaming  `tweetkit dedup FILES > out` over the first --streaming-files files (one
             process; the reference)
  staged     `tweetkit dedup -o DIR/ FILES --workers W` for W in --workers; over the
             streaming prefix when it is not the whole corpus; with --more-files the same
             corpus in 4x more, smaller files (memory per task follows the file); with
             --half the first half of the files (memory per task does not follow the corpus).
Reports each stage's seconds and peak memory per task, the driver's peak memory,
signature bytes per tweet, edges per near duplicate, equality with the streaming path
(byte for byte) and its recall and precision against it, planted recall/precision for
both, near duplicates found across files (what deduplicating each file alone, e.g. with
GNU parallel, misses), and the per-tweet figures that scale a run to another size
("per_tweet"); writes results/dedup-scale.json.

    python bench/dedup_scale.py [--data ../shared/data] [--tweets 2000000] [--files 16] [--workers 1,2]
        [--partitions P] [--streaming-files N] [--more-files] [--half] [--ray]
    # at 10M tweets, 125k tweets per file as at 2M, compared with streaming on a 2M prefix:
    python bench/dedup_scale.py --tweets 10000000 --files 80 --streaming-files 16 --workers 2
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


STAGES = ("signatures", "matching", "merge", "components", "join", "resolution", "filtering")


def staged_run(paths, out, workers, partitions=None, ray=None):
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(f"{out}-dropped", ignore_errors=True)  # an earlier run's files would be counted
    work = out.parent / f"{out.name}-work"
    shutil.rmtree(work, ignore_errors=True)
    cmd = [*TWEETKIT, "dedup", "-o", f"{out}/", "--dropped", f"{out}-dropped/", "--work-dir", str(work), "--keep-work"]
    cmd += ["--ray", ray, "--workers", str(workers)] if ray else ["--workers", str(workers)]
    cmd += ["--partitions", str(partitions)] if partitions else []
    seconds, rss = timed([*cmd, *paths])
    stats = json.loads((work / "stats.json").read_text())
    files = [f for f in (work / "signatures").rglob("*.bin")]
    label_bytes = sum(f.stat().st_size for f in files if f.name.startswith("label"))
    signature_bytes = sum(f.stat().st_size for f in files) - label_bytes
    shutil.rmtree(work)
    return {
        "seconds": seconds,
        "driver_peak_rss_mb": rss,
        "signature_bytes": signature_bytes,
        "label_bytes": label_bytes,
        "stats": stats,
    }


def per_tweet(run):
    """The figures that scale a run to another corpus size: per tweet, per near duplicate."""
    stats, n = run["stats"], run["stats"]["signatures"]["records"]
    near = max(stats["resolution"]["near_duplicates"], 1)
    return {
        "signature_bytes_per_tweet": run["signature_bytes"] / n,
        "label_bytes_per_tweet": run["label_bytes"] / n,
        "edges_written_by_matching_per_near_duplicate": stats["matching"]["edges"] / near,
        "edges_per_near_duplicate": stats["merge"]["near_edges"] / near,
        "matches_per_tweet": stats["merge"]["edges"] / n,
        "near_duplicates_per_tweet": near / n,
        "core_seconds_per_million": {stage: stats[stage]["seconds"] * 1e6 / n for stage in STAGES},
        "task_peak_rss_mb": {stage: stats[stage].get("task_peak_rss_mb_max") for stage in STAGES},
        "components_rounds": stats["components"]["rounds"],
    }


def report(name, run):
    figures = run["per_tweet"]
    stages = ", ".join(f"{stage} {run['stats'][stage]['seconds']:.1f} s" for stage in STAGES)
    peaks = ", ".join(f"{stage} {peak:,.0f} MB" for stage, peak in figures["task_peak_rss_mb"].items())
    print(
        f"staged ({name}): {run['seconds']:.0f} s, {run['tweets_per_s']:,.0f} tweets/s\n"
        f"  stages: {stages} ({figures['components_rounds']} component rounds)\n"
        f"  peak per task: {peaks}; driver {run['driver_peak_rss_mb']:,.0f} MB\n"
        f"  signatures {figures['signature_bytes_per_tweet']:.0f} bytes/tweet (+ ids "
        f"{figures['label_bytes_per_tweet']:.0f}); edges per near duplicate "
        f"{figures['edges_per_near_duplicate']:.2f} (matching wrote "
        f"{figures['edges_written_by_matching_per_near_duplicate']:.2f})"
        + (f"; identical to streaming: {run['vs_streaming']['identical_output']}" if "vs_streaming" in run else ""),
        file=sys.stderr,
    )


def compare(run, out, paths, reference, streaming_out, ids, position):
    """The staged run against the streaming one over the same files."""
    mine = dropped_ids(f"{out}-dropped")
    same = mine.keys() & reference.keys()
    run["vs_streaming"] = {
        "recall": len(same) / len(reference),
        "precision": len(same) / max(len(mine), 1),
        "identical_output": b"".join(pathlib.Path(out, os.path.basename(p)).read_bytes() for p in paths)
        == streaming_out.read_bytes(),
    }
    run["scores"] = planted_scores(mine, ids)
    size = -(-len(position) // len(paths))
    run["near_duplicates_across_files"] = sum(
        1
        for tid, record in mine.items()
        if record["reason"] == "near-duplicate" and position[record["dup_of"]] // size != position[tid] // size
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--tweets", type=int, default=2_000_000)
    parser.add_argument("--bases", type=int, default=30_000)
    parser.add_argument("--shorts", type=int, default=20_000)
    parser.add_argument("--files", type=int, default=16)
    parser.add_argument("--partitions", type=int, help="of the staged runs [default: one per file]")
    parser.add_argument(
        "--streaming-files",
        type=int,
        help="compare with the streaming path on the first N files only (a prefix: at 10M tweets, "
        "--tweets 10000000 --files 80 --streaming-files 16 compares on 2M) [default: all]",
    )
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--more-files", action="store_true", help="also the corpus in 4x more, smaller files")
    parser.add_argument("--half", action="store_true", help="also the first half of the files")
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
    print(f"corpus: {len(items):,} tweets built in {time.perf_counter() - begin:.0f} s", file=sys.stderr)
    paths = write_files(items, work / "files", args.files)
    small = write_files(items, work / "small-files", args.files * 4) if args.more_files else None
    del items
    prefix = paths[: args.streaming_files or len(paths)]
    prefix_ids = ids[: sum(1 for path in prefix for _ in open(path, encoding="utf-8"))]
    position = {tid: i for i, tid in enumerate(prefix_ids)}

    streaming_out = work / "streaming.jsonl"
    with open(streaming_out, "wb") as out:
        seconds, rss = timed([*TWEETKIT, "dedup", "--dropped", str(work / "streaming-dropped.jsonl"), *prefix], out)
    reference = dropped_ids(work / "streaming-dropped.jsonl")
    n = len(prefix_ids)
    results = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count()},
        "tweets": len(ids),
        "files": args.files,
        "partitions": args.partitions or args.files,
        "streaming": {"tweets": n, "seconds": seconds, "tweets_per_s": n / seconds, "peak_rss_mb": rss},
        "streaming_scores": planted_scores(reference, prefix_ids),
        "staged": {},
    }
    print(
        f"streaming ({n:,} tweets): {seconds:.0f} s, {n / seconds:,.0f} tweets/s, peak {rss:,.0f} MB", file=sys.stderr
    )
    runs = [(f"{w} workers, {args.files} files", paths, int(w), None) for w in args.workers.split(",")]
    top = max(int(w) for w in args.workers.split(","))
    if len(prefix) < len(paths):
        runs.append((f"{top} workers, first {len(prefix)} files (the streaming prefix)", prefix, top, None))
    if small:
        runs.append((f"{top} workers, {args.files * 4} files", small, top, None))
    if args.half:
        runs.append(
            (f"{top} workers, first {args.files // 2} files (half the corpus)", paths[: args.files // 2], top, None)
        )
    if args.ray:
        runs.append((f"Ray local, {top} CPUs, {args.files} files", paths, top, "local"))
    for name, files, workers, ray in runs:
        out = work / "staged"
        run = staged_run(files, out, workers, args.partitions, ray)
        run["tweets_per_s"] = run["stats"]["signatures"]["records"] / run["seconds"]
        run["per_tweet"] = per_tweet(run)
        if files == prefix:
            compare(run, out, prefix, reference, streaming_out, prefix_ids, position)
        results["staged"][name] = run
        report(name, run)
    pathlib.Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.output).write_text(json.dumps(results, indent=1) + "\n")
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
