"""Deduplication of many files in four stages of tasks, for corpora no process can hold.

`tweetkit dedup -o DIR/ FILES...` runs these; the streaming `Deduplicate` step stays for
pipes.  Every stage is a set of independent tasks (one per input file or per partition)
that an executor runs (local processes or Ray, see tweetkit/executors.py); data moves
between stages through files in a work directory, so a task holds one shard, never the
corpus.

1. signatures (a task per input file): parse, drop retweets / out-of-range lengths, and
   write each surviving tweet's exact-key hash and MinHash band keys, partitioned by
   hash, plus the tweet's shingles (for verification) and its id (for `dup_of`).
2. matching (a task per partition): exact duplicates are tweets sharing a key hash;
   near-duplicate candidates are tweets sharing a band key, each pair verified against
   the real Jaccard similarity of the shingle sets, as the streaming path does.
3. resolution (one process): first occurrence wins in the global input order (file
   order, then line).  A tweet is dropped when it matches an earlier tweet that is
   kept, which is exactly the streaming path's rule, so both give the same output.
   It holds only the matches (about one per duplicate), never the corpus.  It also
   counts the "transitive" tweets a union-find clustering would have dropped as well
   (A~B, B~C, A≁C: C is kept here, as in the streaming path).
4. filtering (a task per input file): each file is written out without its
   duplicates, in its order, with the dropped records and their reasons.

A tweet's global id is (file index << 40) | its position among the file's records, so
sorting ids is the global input order.  Every task writes its output under a temporary
name and renames it when done; a rerun of the same job skips finished tasks.
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable

import numpy as np

from tweetkit.io import Counts, Drop, StreamOptions, consume_records
from tweetkit.many_files import FileOutputs, FileTask
from tweetkit.text.dedup import Deduplicator, NearConfig, dedup_key, key_hash
from tweetkit.text.steps import Chain, LengthFilter, RetweetFilter

FILE_SHIFT = 40  # a file holds fewer than 2^40 records; ids sort in global input order
BATCH = 512  # as the streaming path feeds the MinHasher: its (shingles x permutations) matrix stays small
# A band bucket with more members than this (a spam template posted thousands of times)
# is matched against its running representatives only, not pair by pair: bounded work,
# at the price of an occasional transitive difference from the streaming path.
FULL_PAIRS_UP_TO = 64
REASONS = ("duplicate", "near-duplicate")


@dataclasses.dataclass(frozen=True)
class Job:
    """Everything a task needs; picklable, so executors can ship it to workers."""

    files: FileOutputs
    work: str
    field: str = "text"
    on_error: str = "fail"
    id_field: str = "id"
    mode: str = "near"
    config: NearConfig = dataclasses.field(default_factory=NearConfig)
    drop_retweets: bool = False
    min_tokens: int | None = None
    max_tokens: int | None = None
    partitions: int = 1

    @property
    def inputs(self) -> tuple[str, ...]:
        return self.files.inputs

    def path(self, *parts) -> str:
        return os.path.join(self.work, *(str(p) for p in parts))

    def filters(self) -> Chain:
        """What `dedup` drops before looking for duplicates, in the streaming order."""
        steps: list = []
        if self.drop_retweets:
            steps.append(RetweetFilter(self.field))
        if self.min_tokens is not None or self.max_tokens is not None:
            steps.append(LengthFilter(self.field, self.min_tokens, self.max_tokens))
        return Chain(*steps)

    def fingerprint(self) -> str:
        """Settings and input files (size, modification time): a work directory of
        another job is never reused."""
        settings = dataclasses.asdict(self)
        settings["inputs"] = [(path, os.stat(path).st_size, os.stat(path).st_mtime_ns) for path in self.inputs]
        for name in ("files", "work"):
            settings.pop(name)
        return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def peak_rss_mb() -> float:
    """This process's peak resident memory (VmHWM: of this process image only, unlike
    getrusage, which keeps the peak of whatever process exec'ed it)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _save_atomically(directory: str, arrays: dict, meta: dict) -> None:
    """Arrays as .npy files and meta.json written last: a directory with meta.json is complete."""
    partial = directory + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial)
    for name, array in arrays.items():
        np.save(os.path.join(partial, name + ".npy"), array)
    with open(os.path.join(partial, "meta.json"), "w") as f:
        json.dump(meta, f)
    shutil.rmtree(directory, ignore_errors=True)
    os.replace(partial, directory)


def _finished(directory: str) -> dict | None:
    """The meta of a task an earlier run of the same job completed (see prepare_work)."""
    try:
        with open(os.path.join(directory, "meta.json")) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def _by_partition(parts: np.ndarray, count: int, *columns: np.ndarray) -> tuple:
    """The columns reordered by partition (stable), and the (count + 1) partition offsets."""
    order = np.argsort(parts, kind="stable")
    index = np.searchsorted(parts[order], np.arange(count + 1))
    return (index, *(column[order] for column in columns))


# --- 1. signatures ---------------------------------------------------------------------


def signature_task(args: tuple[Job, int]) -> dict:
    job, file_index = args
    directory = job.path("signatures", file_index)
    if (done := _finished(directory)) is not None:
        return {**done, "reused": True}
    begin = time.perf_counter()
    filters, dedup = job.filters(), Deduplicator(job.mode, job.config)
    base = file_index << FILE_SHIFT
    options = StreamOptions(inputs=[job.inputs[file_index]], field=job.field, on_error=job.on_error, quiet=True)
    # Per batch: numpy arrays (about 400 bytes a tweet, most of them its shingles).
    exact_hash, exact_gid, band_keys, band_gid, band_exact, shingle_chunks, shingle_lengths = ([] for _ in range(7))
    labels: list = []
    good = 0
    records = consume_records("dedup", options, text_field=job.field)
    while batch := list(itertools.islice(records, BATCH)):
        results = filters(batch)
        alive = np.array([i for i, result in enumerate(results) if not isinstance(result, Drop)], dtype=np.int64)
        keys = [dedup_key(batch[i][job.field]) for i in alive]
        hashes = np.fromiter((key_hash(key) for key in keys), dtype=np.uint64, count=len(keys))
        exact_hash.append(hashes)
        exact_gid.append(base + good + alive)
        eligible, shingle_sets, bands = dedup.near_signatures(keys)
        band_keys.append(bands)
        band_gid.append(base + good + alive[eligible])
        band_exact.append(hashes[eligible])
        if shingle_sets:  # one array per batch: a numpy array per tweet costs ~100 bytes of overhead
            shingle_chunks.append(np.concatenate(shingle_sets))
        lengths = np.zeros(len(batch), dtype=np.int64)
        lengths[alive[eligible]] = [len(shingles) for shingles in shingle_sets]
        shingle_lengths.append(lengths)
        survivors = set(alive.tolist())
        for i, record in enumerate(batch):
            label = record.get(job.id_field) if i in survivors else None
            labels.append(None if label is None else str(label))
        good += len(batch)
    hashes = np.concatenate(exact_hash) if exact_hash else np.zeros(0, np.uint64)
    gids = np.concatenate(exact_gid) if exact_gid else np.zeros(0, np.int64)
    exact = _by_partition(hashes % np.uint64(job.partitions), job.partitions, hashes, gids)
    bands = job.config.bands
    keys = np.concatenate(band_keys).ravel() if band_keys else np.zeros(0, np.uint64)
    near_gids = np.repeat(np.concatenate(band_gid), bands) if band_gid else np.zeros(0, np.int64)
    near_exact = np.repeat(np.concatenate(band_exact), bands) if band_exact else np.zeros(0, np.uint64)
    near = _by_partition(keys % np.uint64(job.partitions), job.partitions, keys, near_gids, near_exact)
    offsets = np.zeros(good + 1, dtype=np.int64)
    if shingle_lengths:
        np.cumsum(np.concatenate(shingle_lengths), out=offsets[1:])
    meta = {
        "records": good,
        "candidates": len(gids),
        "near_eligible": len(near_gids) // bands,
        "seconds": time.perf_counter() - begin,
        "peak_rss_mb": peak_rss_mb(),
    }
    arrays = dict(zip(("exact_index", "exact_hash", "exact_gid"), exact))
    arrays.update(zip(("band_index", "band_key", "band_gid", "band_exact"), near))
    arrays["shingles"] = np.concatenate(shingle_chunks) if shingle_chunks else np.zeros(0, np.uint64)
    arrays["shingle_offsets"] = offsets
    with open(job.path("labels", f"{file_index}.json"), "w") as f:
        json.dump(labels, f)
    _save_atomically(directory, arrays, meta)
    return meta


# --- 2. matching -----------------------------------------------------------------------


class ShingleStore:
    """Shingle sets by global id, read from the signature files through memory maps.  The
    sets are cached (a tweet is compared in each band it shares) up to `cache` of them:
    a Python set costs ~2 KB, so an unbounded cache would grow with the partition's
    candidates rather than stay bounded."""

    def __init__(self, job: Job, cache: int = 1 << 15):
        self.job, self.files, self.sets, self.cache = job, {}, {}, cache

    def __getitem__(self, gid: int) -> set:
        found = self.sets.get(gid)
        if found is None:
            if len(self.sets) >= self.cache:
                self.sets.clear()
            file_index, position = gid >> FILE_SHIFT, gid & ((1 << FILE_SHIFT) - 1)
            if file_index not in self.files:
                directory = self.job.path("signatures", file_index)
                self.files[file_index] = tuple(
                    np.load(os.path.join(directory, name + ".npy"), mmap_mode="r")
                    for name in ("shingles", "shingle_offsets")
                )
            shingles, offsets = self.files[file_index]
            found = self.sets[gid] = set(shingles[offsets[position] : offsets[position + 1]].tolist())
        return found


def _slices(job: Job, partition: int, prefix: str, names: tuple[str, ...]) -> list[np.ndarray]:
    """Partition `partition` of every file's `prefix` columns, concatenated."""
    columns: list[list] = [[] for _ in names]
    for file_index in range(len(job.inputs)):
        directory = job.path("signatures", file_index)
        index = np.load(os.path.join(directory, f"{prefix}_index.npy"))
        start, stop = index[partition], index[partition + 1]
        for column, name in zip(columns, names):
            column.append(np.load(os.path.join(directory, f"{prefix}_{name}.npy"), mmap_mode="r")[start:stop])
    return [np.concatenate(column) for column in columns]


def exact_pairs(hashes: np.ndarray, gids: np.ndarray) -> np.ndarray:
    """(copy, first) id pairs: every tweet whose key hash an earlier tweet has."""
    order = np.lexsort((gids, hashes))
    hashes, gids = hashes[order], gids[order]
    first = np.ones(len(hashes), dtype=bool)
    first[1:] = hashes[1:] != hashes[:-1]
    first_of_run = gids[np.maximum.accumulate(np.where(first, np.arange(len(gids)), 0))]
    return np.stack([gids[~first], first_of_run[~first]], axis=1)


def near_edges(keys: np.ndarray, gids: np.ndarray, exacts: np.ndarray, similar: Callable[[int, int], bool]):
    """Verified (earlier, later) id pairs that share a band key.  A copy of an earlier
    member of its bucket (same exact key) is left out: it is an exact duplicate."""
    order = np.lexsort((gids, keys))
    keys, gids, exacts = keys[order], gids[order], exacts[order]
    starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
    stops = np.append(starts[1:], len(keys))
    multi = stops - starts > 1
    edges = set()
    for start, stop in zip(starts[multi].tolist(), stops[multi].tolist()):
        seen, members = set(), []
        for gid, exact in zip(gids[start:stop].tolist(), exacts[start:stop].tolist()):
            if exact not in seen:
                seen.add(exact)
                members.append(gid)
        if len(members) <= FULL_PAIRS_UP_TO:
            for j, later in enumerate(members):
                edges.update((earlier, later) for earlier in members[:j] if similar(earlier, later))
        else:
            representatives: list[int] = []
            for later in members:
                matched = [earlier for earlier in representatives if similar(earlier, later)]
                edges.update((earlier, later) for earlier in matched)
                if not matched:
                    representatives.append(later)
    return np.array(sorted(edges), dtype=np.int64).reshape(-1, 2)


def match_task(args: tuple[Job, int]) -> dict:
    job, partition = args
    directory = job.path("matches", partition)
    if (done := _finished(directory)) is not None:
        return {**done, "reused": True}
    begin = time.perf_counter()
    hashes, gids = _slices(job, partition, "exact", ("hash", "gid"))
    copies = exact_pairs(hashes, gids)
    edges = np.zeros((0, 2), dtype=np.int64)
    verified = 0
    if job.mode == "near":
        keys, band_gids, band_exacts = _slices(job, partition, "band", ("key", "gid", "exact"))
        store, threshold, answers = ShingleStore(job), job.config.threshold, {}

        def similar(earlier: int, later: int) -> bool:
            nonlocal verified
            pair = (earlier, later)
            answer = answers.get(pair)
            if answer is None:
                mine, theirs = store[later], store[earlier]
                shared = len(mine & theirs)
                answer = shared >= threshold * (len(mine) + len(theirs) - shared)
                verified += 1
                if len(answers) >= 1 << 20:  # a pair shares several bands; remember the recent ones
                    answers.clear()
                answers[pair] = answer
            return answer

        edges = near_edges(keys, band_gids, band_exacts, similar)
    meta = {
        "exact_entries": len(hashes),
        "copies": len(copies),
        "verified_pairs": verified,
        "edges": len(edges),
        "seconds": time.perf_counter() - begin,
        "peak_rss_mb": peak_rss_mb(),
    }
    _save_atomically(directory, {"copies": copies, "edges": edges}, meta)
    return meta


# --- 3. resolution ---------------------------------------------------------------------


def first_kept_twin(edges: np.ndarray) -> dict[int, int]:
    """later id -> the earliest earlier id it matches that is itself kept.  Ids are
    visited in input order, so each twin's own fate is known when it is needed."""
    edges = np.unique(edges, axis=0)
    order = np.lexsort((edges[:, 0], edges[:, 1]))
    dropped: dict[int, int] = {}
    for later, group in itertools.groupby(edges[order].tolist(), key=lambda edge: edge[1]):
        for earlier, _ in group:
            if earlier not in dropped:
                dropped[later] = earlier
                break
    return dropped


def transitive_count(edges: np.ndarray, dropped: dict[int, int]) -> int:
    """Kept tweets that a union-find clustering would also drop: kept, yet connected by a
    chain of matches to an earlier kept tweet."""
    parent: dict[int, int] = {}

    def root(node: int) -> int:
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]
            node = parent[node]
        return node

    for earlier, later in edges.tolist():
        a, b = root(earlier), root(later)
        if a != b:
            parent[max(a, b)] = min(a, b)
    kept_per_cluster = Counter(root(node) for node in list(parent) if node not in dropped)
    return sum(n - 1 for n in kept_per_cluster.values())


def resolve(job: Job, records_per_file: list[int]) -> dict:
    """Decide every duplicate's fate and twin; write one decisions file per input."""
    begin = time.perf_counter()
    copies, edges = [], []
    for partition in range(job.partitions):
        directory = job.path("matches", partition)
        copies.append(np.load(os.path.join(directory, "copies.npy")))
        edges.append(np.load(os.path.join(directory, "edges.npy")))
    copies_all, edges_all = np.concatenate(copies), np.concatenate(edges)
    dropped = first_kept_twin(edges_all)
    near = np.array(sorted(dropped), dtype=np.int64).reshape(-1)
    near_twin = np.array([dropped[gid] for gid in near.tolist()], dtype=np.int64).reshape(-1)
    # Exact copies, vectorised (they are most duplicates): a copy of a near duplicate goes
    # where its first occurrence went, as in the streaming path, which compares it with
    # the same kept tweets.
    copy, first = copies_all[:, 0], copies_all[:, 1]
    at = np.minimum(np.searchsorted(near, first), max(len(near) - 1, 0))
    first_is_near = near[at] == first if len(near) else np.zeros(len(first), dtype=bool)
    gids = np.concatenate([near, copy])
    reasons = np.concatenate([np.ones(len(near), np.int8), first_is_near.astype(np.int8)])
    twins = np.concatenate([near_twin, np.where(first_is_near, near_twin[at] if len(near) else first, first)])
    order = np.argsort(gids, kind="stable")
    gids, reasons, twins = gids[order], reasons[order], twins[order]
    mask = (1 << FILE_SHIFT) - 1
    ordinal_base = np.concatenate([[0], np.cumsum(records_per_file)]).tolist()
    labels_of = np.empty(len(twins), dtype=object)
    twin_files = twins >> FILE_SHIFT
    for file_index in np.unique(twin_files).tolist():  # one file's labels in memory at a time
        with open(job.path("labels", f"{file_index}.json")) as f:
            labels = json.load(f)
        rows = np.flatnonzero(twin_files == file_index)
        base = ordinal_base[file_index] + 1  # "record N" counts from 1 over all files
        labels_of[rows] = [
            f"record {base + i}" if labels[i] is None else labels[i] for i in (twins[rows] & mask).tolist()
        ]
    os.makedirs(job.path("decisions"), exist_ok=True)
    bounds = np.searchsorted(gids >> FILE_SHIFT, np.arange(len(job.inputs) + 1))
    for file_index in range(len(job.inputs)):
        rows = slice(bounds[file_index], bounds[file_index + 1])
        payload = {
            "position": (gids[rows] & mask).tolist(),
            "reason": reasons[rows].tolist(),
            "dup_of": labels_of[rows].tolist(),
        }
        with open(job.path("decisions", f"{file_index}.json.partial"), "w") as f:
            json.dump(payload, f)
        os.replace(job.path("decisions", f"{file_index}.json.partial"), job.path("decisions", f"{file_index}.json"))
    return {
        "copies": len(copies_all),
        "edges": len(edges_all),
        "near_duplicates": len(dropped),
        "transitive": transitive_count(edges_all, dropped),
        "seconds": time.perf_counter() - begin,
        "peak_rss_mb": peak_rss_mb(),
    }


# --- 4. filtering ----------------------------------------------------------------------


class ApplyDecisions:
    """The last step of a file's chain: drop the records resolution decided to drop."""

    wants_ordinals = True

    def __init__(self, decisions: dict):
        self.fate = {
            position: (REASONS[reason], twin)
            for position, reason, twin in zip(decisions["position"], decisions["reason"], decisions["dup_of"])
        }

    def __call__(self, records: list[dict], ordinals: list[int]) -> list:
        results = []
        for record, ordinal in zip(records, ordinals):
            fate = self.fate.get(ordinal - 1)
            results.append(record if fate is None else Drop(fate[0], {"dup_of": fate[1]}))
        return results


def filter_task(args: tuple[Job, int, StreamOptions]) -> tuple[Counts, float]:
    job, file_index, stream = args
    with open(job.path("decisions", f"{file_index}.json")) as f:
        decisions = json.load(f)
    chain = job.filters()
    chain.steps = (*chain.steps, ApplyDecisions(decisions))
    return FileTask("dedup", stream, job.files, lambda: chain, job.field)(file_index), peak_rss_mb()


# --- the job ---------------------------------------------------------------------------


def prepare_work(job: Job) -> None:
    """A fresh work directory, or the same job's from an interrupted run."""
    fingerprint = job.fingerprint()
    marker = job.path("job.sha256")
    if os.path.exists(marker):
        with open(marker) as f:
            if f.read() == fingerprint:
                return
    shutil.rmtree(job.work, ignore_errors=True)
    for name in ("signatures", "matches", "labels"):
        os.makedirs(job.path(name), exist_ok=True)
    with open(marker, "w") as f:
        f.write(fingerprint)


def run(
    job: Job, stream: StreamOptions, executor, log: Callable[[str], None], keep_work: bool = False
) -> tuple[Counts, dict]:
    """All four stages; returns the counts of every file together and stage statistics."""
    prepare_work(job)
    stats: dict = {"executor": executor.describe(), "files": len(job.inputs), "partitions": job.partitions}
    begin = time.perf_counter()
    signatures = executor.map(signature_task, [(job, i) for i in range(len(job.inputs))])
    stats["signatures"] = _stage(signatures, begin, log, "signatures", "records")
    begin = time.perf_counter()
    matches = executor.map(match_task, [(job, p) for p in range(job.partitions)])
    stats["matching"] = _stage(matches, begin, log, "matching", "exact_entries")
    stats["resolution"] = resolve(job, [meta["records"] for meta in signatures])
    log(
        f"resolution: {stats['resolution']['copies']:,} exact copies, {stats['resolution']['near_duplicates']:,} "
        f"near duplicates ({stats['resolution']['transitive']:,} more a union-find clustering would drop) "
        f"in {stats['resolution']['seconds']:.1f} s"
    )
    begin = time.perf_counter()
    total, peaks = Counts(), []
    for counts, peak in executor.map(filter_task, [(job, i, stream) for i in range(len(job.inputs))]):
        total.add(counts)
        peaks.append(peak)
    stats["filtering"] = {
        "seconds": time.perf_counter() - begin,
        "records": total.read,
        "task_peak_rss_mb_max": max(peaks),
    }
    log(f"filtering: {total.read:,} records in {stats['filtering']['seconds']:.1f} s")
    with open(job.path("stats.json"), "w") as f:  # for benchmarks and post-mortems (--keep-work)
        json.dump(stats, f, indent=1)
    if not keep_work:
        shutil.rmtree(job.work, ignore_errors=True)
    return total, stats


def _stage(metas: list[dict], begin: float, log, name: str, counted: str) -> dict:
    seconds = time.perf_counter() - begin
    total = sum(meta[counted] for meta in metas)
    reused = [str(i) for i, meta in enumerate(metas) if meta.get("reused")]  # --keep-work: an earlier run's
    done_before = f" ({len(reused)} reused from an earlier run's work: {', '.join(reused)})" if reused else ""
    log(f"{name}: {len(metas)} tasks{done_before}, {total:,} {counted.replace('_', ' ')} in {seconds:.1f} s")
    skipped = ("seconds", "peak_rss_mb", "reused")
    summed = {key: sum(meta[key] for meta in metas) for key in metas[0] if key not in skipped}
    return {
        **summed,
        "seconds": seconds,
        "tasks": len(metas),
        "task_seconds_max": max(m["seconds"] for m in metas),
        "task_peak_rss_mb_max": max(m["peak_rss_mb"] for m in metas),
    }
