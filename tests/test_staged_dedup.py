"""dedup -o DIR/: the staged path over many files equals the streaming path, on local
processes and on Ray; normalize and langid write one output per input file."""

import json
import os
import random
import signal
import subprocess
import sys

import numpy as np
import pytest
from conftest import SUBPROCESS_ENV, jsonl, run_cli

from tweetkit import executors
from tweetkit.text import components, staged_dedup
from tweetkit.text.dedup import NearConfig

SYLLABLES = ["ka", "lo", "mi", "ne", "ru", "ta", "vo", "zi", "pe", "shu", "dra", "ko", "bel", "tin", "mar", "os"]


def made_up_tweets(rng, count):
    """Distinct tweets of 3-18 words drawn from a skewed vocabulary of made-up words, so
    that unrelated tweets share words as real ones do."""
    vocabulary = sorted({"".join(rng.choices(SYLLABLES, k=rng.randint(1, 3))) for _ in range(1500)})
    weights = [1 / (rank + 1) for rank in range(len(vocabulary))]
    tweets, keys = [], set()
    while len(tweets) < count:
        words = rng.choices(vocabulary, weights, k=rng.randint(3, 18))
        if " ".join(words) not in keys:
            keys.add(" ".join(words))
            tweets.append(" ".join(words) + rng.choice(["", "!", " http://t.co/x1", " @amy"]))
    return tweets


def planted_files(tmp_path, count=3, per_file=500, seed=3):
    """Made-up tweets split into files, with exact copies and near variants planted in
    later files (so duplicates cross files), some records without an id."""
    rng = random.Random(seed)
    rows = [{"id": f"t{i}", "text": text} for i, text in enumerate(made_up_tweets(rng, count * per_file))]
    paths = []
    for index in range(count):
        records = [dict(row) for row in rows[index * per_file : (index + 1) * per_file]]
        if index:
            for earlier in rng.sample(rows[: index * per_file], 60):
                text = earlier["text"]
                variant = rng.choice([text.upper(), text + " #news", "RT @bob: " + text, text.replace(" ", " so ", 1)])
                records.insert(rng.randrange(len(records) + 1), {"id": f"v{index}-{len(records)}", "text": variant})
        for record in rng.sample(records, 20):
            del record["id"]
        path = tmp_path / f"part-{index}.jsonl"
        path.write_bytes(jsonl(*records))
        paths.append(str(path))
    return paths


def streaming(paths, tmp_path, *flags):
    dropped = tmp_path / "stream-dropped.jsonl"
    result = run_cli(["dedup", "--dropped", str(dropped), *flags, *paths])
    assert result.exit_code == 0, result.stderr
    return result.stdout, dropped.read_bytes()


def staged(paths, out, *flags):
    result = run_cli(["dedup", "-o", f"{out}/", "--dropped", f"{out}-dropped/", *flags, *paths])
    assert result.exit_code == 0, result.stderr
    names = [os.path.basename(p) for p in paths]
    kept = b"".join((out / name).read_bytes() for name in names)
    dropped = b"".join((out.parent / f"{out.name}-dropped" / name).read_bytes() for name in names)
    return kept, dropped, result


@pytest.mark.parametrize(
    "flags, staged_flags",
    [
        ((), ()),
        ((), ("--partitions", "5", "--workers", "2")),
        (("--mode", "exact", "--drop-retweets", "--min-tokens", "6", "--id-field", "missing"), ("--workers", "2")),
    ],
)
def test_staged_equals_streaming(tmp_path, flags, staged_flags):
    paths = planted_files(tmp_path)
    want_kept, want_dropped = streaming(paths, tmp_path, *flags)
    kept, dropped, result = staged(paths, tmp_path / "out", *flags, *staged_flags)
    assert kept == want_kept
    assert dropped == want_dropped  # reasons and dup_of (ids, or "record N" in the global order)
    reasons = {json.loads(line)["reason"] for line in dropped.splitlines()}
    assert "duplicate" in reasons and ("near-duplicate" in reasons or "--mode" in flags)
    assert not (tmp_path / "out" / ".tweetkit-dedup-work").exists()


def test_duplicates_across_files_are_found(tmp_path):
    # The copy is in another file: --num-shards would miss nothing here either, but
    # near variants of a tweet in another file are found only by comparing files.
    base = "the council voted tonight to keep the public library open on sundays after months of protest"
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_bytes(jsonl({"id": 1, "text": base}, {"id": 2, "text": "something else entirely today"}))
    second.write_bytes(jsonl({"id": 3, "text": base + " #library"}, {"id": 4, "text": base.upper()}))
    kept, dropped, _ = staged([str(first), str(second)], tmp_path / "out")
    assert [r["id"] for r in map(json.loads, kept.splitlines())] == [1, 2]
    assert [(r["id"], r["reason"], r["dup_of"]) for r in map(json.loads, dropped.splitlines())] == [
        (3, "near-duplicate", "1"),
        (4, "duplicate", "1"),
    ]


def test_transitive_chain_keeps_what_streaming_keeps(tmp_path):
    # A~B and B~C but A and C differ: streaming keeps A, drops B, keeps C (B is gone
    # when C comes); a union-find clustering would drop C too.  Staged keeps C, counts it.
    words = [f"w{i}" for i in range(12)]
    a = " ".join(words)
    b = " ".join(words[:10] + ["x1", "x2"])
    c = " ".join(words[:8] + ["x1", "x2", "y1", "y2"])
    config = NearConfig(threshold=0.5)
    path = tmp_path / "chain.jsonl"
    path.write_bytes(jsonl(*[{"id": n, "text": t} for n, t in (("a", a), ("b", b), ("c", c))]))
    flags = ("--threshold", "0.5")
    want_kept, _ = streaming([str(path)], tmp_path, *flags)
    kept, _, result = staged([str(path)], tmp_path / "out", "--progress", *flags)
    assert kept == want_kept
    assert [r["id"] for r in map(json.loads, kept.splitlines())] == ["a", "c"]
    assert "(1 more a union-find clustering would drop)" in result.stderr
    assert config.threshold == 0.5


def test_big_buckets_are_matched_against_representatives(monkeypatch):
    # A bucket larger than FULL_PAIRS_UP_TO compares each member with the running
    # representatives only; copies of an earlier member (same exact key) are skipped.
    calls = []

    def similar(earlier, later):
        calls.append((earlier, later))
        return earlier % 2 == later % 2  # two clusters: even and odd ids

    keys = np.zeros(10, dtype=np.uint32)
    gids = np.arange(10, dtype=np.int64)[::-1].copy()
    exacts = [9, 9, 3, 4, 5, 6, 7, 8, 10, 11]  # ids 0 and 1 share a key
    monkeypatch.setattr(staged_dedup, "FULL_PAIRS_UP_TO", 3)
    edges = staged_dedup.near_edges(keys, gids, exacts.__getitem__, similar)
    assert {tuple(e) for e in edges.tolist()} == {(0, n) for n in (2, 4, 6, 8)} | {(3, n) for n in (5, 7, 9)}
    assert len(calls) < 10 * 9 // 2
    assert components.first_kept_twin(edges) == {n: 0 for n in (2, 4, 6, 8)} | {n: 3 for n in (5, 7, 9)}


def test_bad_lines_name_file_and_line_and_skip_goes_to_rejects(tmp_path):
    good, bad = tmp_path / "good.jsonl", tmp_path / "bad.jsonl"
    good.write_bytes(jsonl({"text": "one tweet with words"}, {"text": "another tweet with words"}))
    bad.write_bytes(b'{"text": "fine words here"}\nnot json\n')
    result = run_cli(["dedup", "-o", f"{tmp_path}/out/", "--workers", "2", str(good), str(bad)])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1] == f"tweetkit dedup: {bad}:2: invalid JSON"
    out = tmp_path / "out2"
    result = run_cli(
        ["dedup", "-o", f"{out}/", "--on-error", "skip", "--rejects", f"{tmp_path}/rej/", str(good), str(bad)]
    )
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "rej" / "bad.jsonl").read_bytes() == b"not json\n"
    assert len((out / "good.jsonl").read_bytes().splitlines()) == 2
    assert "1 rejected (invalid JSON: 1)" in result.stderr


def test_usage_errors_are_one_line(tmp_path):
    a = tmp_path / "x" / "a.jsonl"
    b = tmp_path / "y" / "a.jsonl"
    for path in (a, b):
        path.parent.mkdir()
        path.write_bytes(jsonl({"text": "hello there"}))
    cases = [
        (["dedup", "-o", f"{tmp_path}/out/", str(a), str(b)], "would both be written to a.jsonl"),
        (["dedup", "-o", f"{tmp_path}/out/", "-"], "needs input files, not stdin"),
        (["dedup", "-o", f"{tmp_path}/out/", "--num-shards", "2", str(a)], "--num-shards"),
        (["dedup", "--workers", "2", str(a)], "are for the staged path"),
        (["dedup", "--cluster-ids", str(a)], "are for the staged path"),
        (["dedup", "-o", f"{tmp_path}/out/", "--dropped", f"{tmp_path}/d.jsonl", str(a)], "give a directory"),
        (["dedup", "-o", f"{a.parent}/", str(a)], "is both an input and an output"),
        (["normalize", "--ray", "auto", str(a)], "end -o with / for one output per input file (-o DIR/)"),
        (
            ["dedup", "--keep-work", "-o", "out3", str(a), str(b)],
            "end -o with / for one output per input file (-o out3/)",
        ),
    ]
    for args, message in cases:
        result = run_cli(args)
        assert result.exit_code == 2, (args, result.stderr)
        assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr


def test_kept_work_is_reused_and_a_changed_setting_starts_over(tmp_path):
    paths = planted_files(tmp_path, count=2, per_file=200)
    work = tmp_path / "work"
    flags = ("--work-dir", str(work), "--keep-work")
    first, _, _ = staged(paths, tmp_path / "out", *flags)
    meta = work / "signatures" / "0" / "meta.json"
    stamp = meta.stat().st_mtime_ns
    again, _, rerun = staged(paths, tmp_path / "out2", *flags, "--progress")
    assert again == first and meta.stat().st_mtime_ns == stamp  # finished tasks skipped, and said so:
    assert "signatures: 2 tasks (2 reused from an earlier run's work: 0, 1)" in rerun.stderr
    assert "matching: 2 tasks (2 reused from an earlier run's work: 0, 1)" in rerun.stderr
    changed, _, _ = staged(paths, tmp_path / "out3", *flags, "--threshold", "0.9")
    assert meta.stat().st_mtime_ns != stamp  # another job: its work starts over
    assert len(changed.splitlines()) >= len(first.splitlines())


@pytest.mark.parametrize("command", ["normalize", "langid"])
def test_many_files_write_one_output_each(tmp_path, command):
    paths = planted_files(tmp_path, count=3, per_file=100)
    result = run_cli([command, "-o", f"{tmp_path}/out/", "--workers", "2", *paths])
    assert result.exit_code == 0, result.stderr
    for path in paths:
        alone = run_cli([command, path])
        assert (tmp_path / "out" / os.path.basename(path)).read_bytes() == alone.stdout
    assert not [name for name in os.listdir(tmp_path / "out") if name.startswith(".partial")]


@pytest.fixture(scope="module")
def ray_cluster():
    import ray  # the [ray] extra, which make install brings: a missing Ray fails, not skips

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_ray_equals_local(tmp_path, ray_cluster):
    paths = planted_files(tmp_path)
    local, local_dropped, _ = staged(paths, tmp_path / "local", "--workers", "2")
    on_ray, ray_dropped, result = staged(paths, tmp_path / "ray", "--ray", "local", "--progress")
    assert "on Ray (local, 2 CPUs)" in result.stderr
    assert (on_ray, ray_dropped) == (local, local_dropped)
    out = tmp_path / "norm"
    result = run_cli(["normalize", "-o", f"{out}/", "--ray", "local", *paths])
    assert result.exit_code == 0, result.stderr
    assert (out / "part-1.jsonl").read_bytes() == run_cli(["normalize", paths[1]]).stdout


def test_ray_task_errors_name_file_and_line(tmp_path, ray_cluster):
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(b'{"text": "fine words here"}\n{"text": 5}\n')
    result = run_cli(["dedup", "-o", f"{tmp_path}/out/", "--ray", "local", str(bad)])
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines()[-1].startswith(f"tweetkit dedup: {bad}:2: ")


def union_find_roots(edges):
    parent = {}

    def root(node):
        while parent.setdefault(node, node) != node:
            node = parent[node]
        return node

    for a, b in edges:
        ra, rb = root(a), root(b)
        parent[max(ra, rb)] = min(ra, rb)
    return {node: root(node) for node in parent}


@pytest.mark.parametrize("seed", range(4))
def test_large_star_small_star_finds_the_components(seed):
    # Random graphs with chains and cycles, as the rounds see them: in memory, one partition.
    rng = random.Random(seed)
    nodes = rng.sample(range(1, 10_000), 300)
    edges = [(a, b) for a, b in (rng.sample(nodes, 2) for _ in range(260))]
    edges += list(zip(nodes[:40], nodes[1:41]))  # a long chain: many rounds
    records = np.array(edges + [(b, a) for a, b in edges], dtype=np.int64)
    rounds = 0
    while True:
        rounds += 1
        stars, settled = components.large_star(records)
        if settled:
            break
        merged = components.small_star(np.column_stack([stars.max(axis=1), stars.min(axis=1)]))
        records = np.concatenate([merged, merged[:, ::-1]])
    assert rounds > 2
    want = union_find_roots(edges)
    got = {node: node for node in want} | {int(leaf): int(root) for leaf, root in stars.tolist()}
    assert got == want


def test_one_edge_per_pair_and_compact_signatures(tmp_path):
    paths = planted_files(tmp_path, count=3, per_file=300)
    work = tmp_path / "work"
    staged(paths, tmp_path / "out", "--partitions", "4", "--work-dir", str(work), "--keep-work")
    stats = json.loads((work / "stats.json").read_text())
    pairs = set()
    for part in range(4):
        rows = staged_dedup.work.read(str(work / "merged" / str(part)), "rows")
        pairs.update(map(tuple, rows[:, :2].tolist()))
        assert len(rows) == len(np.unique(rows[:, :2], axis=0))
    assert stats["merge"]["edges"] == len(pairs)  # each pair once, though found in several band partitions
    assert stats["matching"]["edges"] + stats["matching"]["copies"] > len(pairs)
    assert stats["resolution"]["near_duplicates"] <= stats["merge"]["near_edges"]
    records = stats["signatures"]["records"]
    size = sum(f.stat().st_size for f in (work / "signatures").rglob("*.bin") if not f.name.startswith("label"))
    assert size / records < 200  # about 4 bytes a word, 8 a band, 16 a tweet


def test_cluster_ids_name_the_kept_tweet_on_every_member(tmp_path):
    base = "the council voted tonight to keep the public library open on sundays after months of protest"
    first, second = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_bytes(jsonl({"id": 1, "text": base}, {"text": "something else entirely today"}, {"id": 5, "text": "x"}))
    second.write_bytes(jsonl({"id": 3, "text": base + " #library"}, {"text": "Something else, entirely today!"}))
    kept, dropped, _ = staged([str(first), str(second)], tmp_path / "out", "--cluster-ids")
    assert [json.loads(line) for line in kept.splitlines()] == [
        {"id": 1, "text": base, "cluster_id": "1"},
        {"text": "something else entirely today", "cluster_id": "record 2"},
        {"id": 5, "text": "x"},
    ]
    assert [
        (r.get("id"), r["reason"], r["dup_of"], r["cluster_id"]) for r in map(json.loads, dropped.splitlines())
    ] == [
        (3, "near-duplicate", "1", "1"),
        (None, "duplicate", "record 2", "record 2"),
    ]


class KillOnce:
    """A stage's first task, SIGKILLed in its worker process on its first try."""

    def __init__(self, fn, markers):
        self.fn, self.markers, self.parent = fn, markers, os.getpid()

    def __call__(self, item):
        index = item[-1] if isinstance(item[-1], int) else item[1]
        stage = str(item[1]).replace("/", "_") if len(item) > 2 else ""
        marker = os.path.join(self.markers, f"{self.fn.__name__}-{stage}-{index}")
        if index == 0 and os.getpid() != self.parent and not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
        return self.fn(item)


class Faulty:
    def __init__(self, inner, markers):
        self.inner, self.markers = inner, markers

    def describe(self):
        return self.inner.describe()

    def map(self, fn, items):
        return self.inner.map(KillOnce(fn, self.markers), items)

    def close(self):
        self.inner.close()


def killed_workers_are_retried(tmp_path, monkeypatch, make_inner, *flags):
    paths = planted_files(tmp_path, count=2, per_file=300)
    want = staged(paths, tmp_path / "straight", "--partitions", "3")[:2]
    markers = tmp_path / "markers"
    markers.mkdir()
    monkeypatch.setattr(executors, "make_executor", lambda *_: Faulty(make_inner(), str(markers)))
    assert staged(paths, tmp_path / "faulty", "--partitions", "3", *flags)[:2] == want
    killed = sorted(name.split("-")[0] for name in os.listdir(markers))
    assert {"signature_task", "match_task", "merge_task", "round_task", "decide_task", "filter_task"} <= set(killed)


def test_a_killed_local_worker_is_retried(tmp_path, monkeypatch):
    killed_workers_are_retried(tmp_path, monkeypatch, lambda: executors.LocalExecutor(2))


def test_a_task_that_always_dies_fails_in_one_line(tmp_path, monkeypatch):
    def die(item):
        os.kill(os.getpid(), signal.SIGKILL)

    with pytest.raises(executors.TaskDied, match="a task died 3 times"):
        executors.LocalExecutor(2).map(die, [1, 2])


KILL_DRIVER = """
import os, signal, sys
from tweetkit import executors
from tweetkit.cli import main

calls, real = [0], executors.LocalExecutor.map

def map(self, fn, items):
    calls[0] += 1
    if calls[0] != {stage}:
        return real(self, fn, items)
    items = list(items)
    real(self, fn, items[:1])  # one task of the stage done, then the driver dies
    os.kill(os.getpid(), signal.SIGKILL)

executors.LocalExecutor.map = map
sys.argv = ["tweetkit", *{argv!r}]
main()
"""


@pytest.mark.parametrize("stage", [1, 5])  # signatures; a round of the components
def test_a_killed_driver_reruns_with_keep_work_to_the_same_output(tmp_path, stage):
    paths = planted_files(tmp_path, count=2, per_file=300)
    want = staged(paths, tmp_path / "straight", "--partitions", "3")[:2]
    out, work = tmp_path / "out", tmp_path / "work"
    argv = ["dedup", "-o", f"{out}/", "--dropped", f"{out}-dropped/", "--partitions", "3"]
    argv += ["--work-dir", str(work), "--keep-work", *paths]
    script = KILL_DRIVER.format(stage=stage, argv=argv)
    killed = subprocess.run([sys.executable, "-c", script], env=SUBPROCESS_ENV, capture_output=True)
    assert killed.returncode == -signal.SIGKILL, killed.stderr.decode()
    done = work / "signatures" / "0" / "meta.json"
    stamp = done.stat().st_mtime_ns
    assert staged(paths, out, "--partitions", "3", "--work-dir", str(work), "--keep-work")[:2] == want
    assert done.stat().st_mtime_ns == stamp  # the finished task was not run again


def test_a_killed_ray_worker_is_retried_by_ray(tmp_path, monkeypatch, ray_cluster):
    import ray.cloudpickle

    # Ray's workers cannot import this test module: KillOnce travels by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        killed_workers_are_retried(tmp_path, monkeypatch, lambda: executors.RayExecutor("local", 2), "--ray", "local")
    finally:
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])


def test_ray_local_starts_its_own_instance(tmp_path):
    # A fresh process with no Ray running: --ray local starts one with --workers CPUs, runs on it, and stops it.
    import ray  # noqa: F401  (the [ray] extra, which make install brings: a missing Ray fails here)

    paths = planted_files(tmp_path, count=2, per_file=100)
    local, local_dropped, _ = staged(paths, tmp_path / "local", "--workers", "2")
    env = dict(SUBPROCESS_ENV, RAY_USAGE_STATS_ENABLED="0")
    command = [sys.executable, "-m", "tweetkit", "dedup", "-o", f"{tmp_path}/ray/",
               "--dropped", f"{tmp_path}/ray-dropped/", "--ray", "local", "--workers", "2", "--progress",
               *paths]  # fmt: skip
    process = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert process.returncode == 0, process.stderr[-3000:]
    assert "on Ray (local, 2 CPUs)" in process.stderr
    names = [os.path.basename(p) for p in paths]
    assert b"".join((tmp_path / "ray" / name).read_bytes() for name in names) == local
    assert b"".join((tmp_path / "ray-dropped" / name).read_bytes() for name in names) == local_dropped
