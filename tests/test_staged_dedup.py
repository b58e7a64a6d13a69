"""dedup -o DIR/: the staged path over many files equals the streaming path, on local
processes and on Ray; normalize and langid write one output per input file."""

import json
import os
import random
import subprocess
import sys

import numpy as np
import pytest
from conftest import SUBPROCESS_ENV, jsonl, read_jsonl, run_cli, sliced

from tweetkit.text import staged_dedup
from tweetkit.text.dedup import NearConfig


def planted_files(tmp_path, count=3, per_file=400, seed=3):
    """Real tweets split into files, with exact copies and near variants planted in later
    files (so duplicates cross files), some records without an id."""
    rng = random.Random(seed)
    rows = read_jsonl(sliced("semeval2017/train.jsonl"), limit=count * per_file)
    paths = []
    for index in range(count):
        records = [{"id": row["id"], "text": row["text"]} for row in rows[index * per_file : (index + 1) * per_file]]
        if index:
            for earlier in rng.sample(rows[: index * per_file], 60):
                variant = rng.choice(
                    [earlier["text"].upper(), earlier["text"] + " #news", "RT @bob: " + earlier["text"]]
                )
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

    keys = np.zeros(10, dtype=np.uint64)
    gids = np.arange(10, dtype=np.int64)[::-1].copy()
    exacts = np.array([9, 9, 3, 4, 5, 6, 7, 8, 10, 11], dtype=np.uint64)[::-1].copy()  # ids 0 and 1 share a key
    monkeypatch.setattr(staged_dedup, "FULL_PAIRS_UP_TO", 3)
    edges = staged_dedup.near_edges(keys, gids, exacts, similar)
    assert {tuple(e) for e in edges.tolist()} == {(0, n) for n in (2, 4, 6, 8)} | {(3, n) for n in (5, 7, 9)}
    assert len(calls) < 10 * 9 // 2
    assert staged_dedup.first_kept_twin(edges) == {n: 0 for n in (2, 4, 6, 8)} | {n: 3 for n in (5, 7, 9)}


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
        (["dedup", "-o", f"{tmp_path}/out/", "--dropped", f"{tmp_path}/d.jsonl", str(a)], "give a directory"),
        (["dedup", "-o", f"{a.parent}/", str(a)], "is both an input and an output"),
        (["normalize", "--ray", "auto", str(a)], "give a directory output"),
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
    again, _, _ = staged(paths, tmp_path / "out2", *flags)
    assert again == first and meta.stat().st_mtime_ns == stamp  # finished tasks skipped
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
    ray = pytest.importorskip("ray")
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


def test_ray_local_starts_its_own_instance(tmp_path):
    # A fresh process with no Ray running: --ray local starts one with --workers CPUs, runs on it, and stops it.
    pytest.importorskip("ray")
    paths = planted_files(tmp_path, count=2, per_file=100)
    local, local_dropped, _ = staged(paths, tmp_path / "local", "--workers", "2")
    env = dict(SUBPROCESS_ENV, RAY_USAGE_STATS_ENABLED="0")
    command = [sys.executable, "-m", "tweetkit", "dedup", "-o", f"{tmp_path}/ray/", "--dropped", f"{tmp_path}/ray-dropped/",
               "--ray", "local", "--workers", "2", "--progress", *paths]  # fmt: skip
    process = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert process.returncode == 0, process.stderr[-3000:]
    assert "on Ray (local, 2 CPUs)" in process.stderr
    names = [os.path.basename(p) for p in paths]
    assert b"".join((tmp_path / "ray" / name).read_bytes() for name in names) == local
    assert b"".join((tmp_path / "ray-dropped" / name).read_bytes() for name in names) == local_dropped
