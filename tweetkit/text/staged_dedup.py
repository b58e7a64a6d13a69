"""Deduplication of many files in stages of tasks, for corpora no process can hold.

`tweetkit dedup -o DIR/ FILES...` runs these; the streaming `Deduplicate` step stays for
pipes.  Every stage is a set of independent tasks (one per input file or per partition)
that an executor runs (local processes or Ray, see tweetkit/executors.py); data moves
between stages through files in a work directory (tweetkit/text/dedup_work.py), so a
task holds one file or one partition, never the corpus, and the driver holds figures.

1. signatures (a task per input file): parse, drop retweets / out-of-range lengths, and
   write each surviving tweet's exact-key hash and 32-bit band keys, partitioned by
   hash, plus, by position, its word hashes (for verification) and its id (for dup_of).
2. matching (a task per partition): exact duplicates are tweets sharing a key hash;
   near-duplicate candidates are tweets sharing a band key, each pair verified against
   the real Jaccard similarity (tweetkit/text/dedup.py), as the streaming path does.
3. resolution (tweetkit/text/components.py): the matches are merged (one edge per
   pair), the connected components of the match graph are found in rounds of tasks
   over edge partitions, and the streaming rule is applied within each component, in
   parallel: a tweet is dropped when it matches an earlier tweet that is kept.
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
from collections.abc import Callable

import numpy as np

from tweetkit.errors import ConfigError
from tweetkit.io import Counts, Drop, StreamOptions, consume_records
from tweetkit.many_files import FileOutputs, FileTask
from tweetkit.text import dedup_work as work
from tweetkit.text.dedup import BoundedCache, Deduplicator, NearConfig, dedup_key, similar_enough, verification_set
from tweetkit.text.dedup_work import peak_rss_mb
from tweetkit.text.steps import Chain, dedup_prefilters

FILE_SHIFT = 40  # a file holds fewer than 2^40 records; ids sort in global input order
POSITION_MASK = (1 << FILE_SHIFT) - 1
BATCH = 512  # as the streaming path feeds the MinHasher: its (shingles x permutations) matrix stays small
# A band bucket with more members than this (a spam template posted thousands of times)
# is matched against its running representatives only, not pair by pair: bounded work,
# at the price of an occasional transitive difference from the streaming path.
FULL_PAIRS_UP_TO = 64
REASONS = ("duplicate", "near-duplicate")
COPY, NEAR = 0, 1  # the kinds of a match: same key, or verified near copy
CLUSTER_FIELD = "cluster_id"  # with --cluster-ids: the kept tweet's label, on every record of its cluster

__all__ = ["Job", "run", "peak_rss_mb"]


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
    cluster_ids: bool = False

    @property
    def inputs(self) -> tuple[str, ...]:
        return self.files.inputs

    def path(self, *parts) -> str:
        return os.path.join(self.work, *(str(p) for p in parts))

    def stage(self, name: str, count: int | None = None) -> list[str]:
        """The task directories of a stage (one per partition unless `count`)."""
        return [self.path(name, i) for i in range(self.partitions if count is None else count)]

    def filters(self) -> Chain:
        """What `dedup` drops before looking for duplicates, in the streaming order."""
        return Chain(*dedup_prefilters(self.field, self.drop_retweets, self.min_tokens, self.max_tokens))

    def fingerprint(self) -> str:
        """Settings and input files (size, modification time): a work directory of
        another job is never reused."""
        settings = dataclasses.asdict(self)
        settings["inputs"] = [(path, os.stat(path).st_size, os.stat(path).st_mtime_ns) for path in self.inputs]
        for name in ("files", "work"):
            settings.pop(name)
        return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def gid_of(file_index, position):
    return (np.asarray(file_index, dtype=np.int64) << FILE_SHIFT) | np.asarray(position, dtype=np.int64)


def _concat(chunks: list, dtype) -> np.ndarray:
    return np.concatenate(chunks).astype(dtype, copy=False) if chunks else np.zeros(0, dtype)


def _offsets(lengths: list[np.ndarray], limit32: bool = True) -> np.ndarray:
    """Start of each item and the end of the last, in the narrowest type that holds them."""
    lengths = _concat(lengths, np.int64)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    return offsets.astype(np.uint32 if limit32 and offsets[-1] < 2**32 else np.uint64)


# --- 1. signatures ---------------------------------------------------------------------


class SignatureWriter:
    """A file's signatures, a batch at a time (about 4 bytes per word plus 8 per band
    and 12 per tweet): kept as numpy arrays per batch, never one object per tweet."""

    def __init__(self, job: Job):
        self.job, self.dedup = job, Deduplicator(job.mode, job.config)
        self.columns: dict[str, list] = {name: [] for name in ("hash", "pos", "band", "band_pos", "words", "lengths")}
        self.labels: list[bytes] = []
        self.records = 0

    def add(self, batch: list[dict], alive: np.ndarray) -> None:
        job, columns = self.job, self.columns
        signed = self.dedup.sign([dedup_key(batch[i][job.field]) for i in alive])
        positions = self.records + alive
        columns["hash"].append(signed.exact)
        columns["pos"].append(positions)
        near_at = positions[signed.eligible]
        columns["band"].append(signed.bands.ravel())
        columns["band_pos"].append(np.repeat(near_at, job.config.bands))
        # Per near-eligible tweet, by position: its key hash (two 32-bit halves), then its words.
        halves = signed.exact[signed.eligible].view(np.uint32).reshape(-1, 2)
        if signed.eligible:
            columns["words"].append(np.concatenate([x for pair in zip(halves, signed.words) for x in pair]))
        lengths = np.zeros(len(batch), dtype=np.int64)
        lengths[alive[signed.eligible]] = [2 + len(words) for words in signed.words]
        columns["lengths"].append(lengths)
        survivors = set(alive.tolist())
        for i, record in enumerate(batch):
            label = record.get(job.id_field) if i in survivors else None
            self.labels.append(b"" if label is None else b"\x01" + str(label).encode("utf-8"))
        self.records += len(batch)

    def arrays(self) -> tuple[dict, dict]:
        job, columns, parts = self.job, self.columns, self.job.partitions
        hashes, positions = _concat(columns["hash"], np.uint64), _concat(columns["pos"], np.uint32)
        exact_offsets, hashes, positions = work.spread(hashes, hashes % np.uint64(parts), parts, hashes, positions)
        bands, band_positions = _concat(columns["band"], np.uint32), _concat(columns["band_pos"], np.uint32)
        band_offsets, bands, band_positions = work.spread(bands, bands % np.uint32(parts), parts, bands, band_positions)
        label_lengths = np.fromiter(map(len, self.labels), dtype=np.int64, count=len(self.labels))
        arrays = {
            "exact_hash": hashes,
            "exact_pos": positions,
            "band_key": bands,
            "band_pos": band_positions,
            "words": _concat(columns["words"], np.uint32),
            "word_offsets": _offsets(columns["lengths"]),
            "labels": np.frombuffer(b"".join(self.labels), dtype=np.uint8),
            "label_offsets": _offsets([label_lengths], limit32=False),
        }
        meta = {"records": self.records, "candidates": len(hashes), "near_eligible": len(bands) // job.config.bands}
        return arrays, dict(meta, exact_offsets=exact_offsets, band_offsets=band_offsets)


def signature_task(args: tuple[Job, int]) -> dict:
    job, file_index = args
    directory = job.path("signatures", file_index)
    if (done := work.finished(directory)) is not None:
        return {**done, "reused": True}
    begin = time.perf_counter()
    filters, writer = job.filters(), SignatureWriter(job)
    options = StreamOptions(inputs=[job.inputs[file_index]], field=job.field, on_error=job.on_error, quiet=True)
    records = consume_records("dedup", options, text_field=job.field)
    while batch := list(itertools.islice(records, BATCH)):
        results = filters(batch)
        writer.add(batch, np.array([i for i, r in enumerate(results) if not isinstance(r, Drop)], dtype=np.int64))
    if writer.records >= 2**32:
        raise ConfigError(f"{job.inputs[file_index]}: split files of 2^32 records or more")
    arrays, meta = writer.arrays()
    meta.update(seconds=time.perf_counter() - begin, peak_rss_mb=peak_rss_mb())
    return work.save(directory, arrays, meta)


# --- 2. matching -----------------------------------------------------------------------


class TweetStore:
    """A near-eligible tweet's key hash and verification set, by global id, read with
    plain reads from its file's signatures.  Cached, since a tweet is compared in each
    band it shares, up to `cache` tweets: a Python set is large beside its arrays, so an
    unbounded cache would grow with the partition's candidates rather than stay bounded."""

    def __init__(self, job: Job, cache: int = 1 << 15):
        self.read = work.RandomAccess(lambda f: job.path("signatures", f), "words", "word_offsets", np.uint32)
        self.tweets = BoundedCache(cache)

    def __call__(self, gid: int) -> tuple[int, set]:
        found = self.tweets.get(gid)
        if found is None:
            item = self.read(gid >> FILE_SHIFT, gid & POSITION_MASK)
            found = self.tweets.put(gid, (int(item[:2].view(np.uint64)[0]), verification_set(item[2:])))
        return found


def exact_pairs(hashes: np.ndarray, gids: np.ndarray) -> np.ndarray:
    """(first, copy) id pairs: every tweet whose key hash an earlier tweet has."""
    order = np.lexsort((gids, hashes))
    hashes, gids = hashes[order], gids[order]
    first = np.ones(len(hashes), dtype=bool)
    first[1:] = hashes[1:] != hashes[:-1]
    first_of_run = gids[np.maximum.accumulate(np.where(first, np.arange(len(gids)), 0))]
    return np.stack([first_of_run[~first], gids[~first]], axis=1)


def near_edges(keys: np.ndarray, gids: np.ndarray, exact_of: Callable[[int], int], similar: Callable[[int, int], bool]):
    """Verified (earlier, later) id pairs that share a band key, each once.  A copy of an
    earlier member of its bucket (same exact key) is left out: it is an exact duplicate."""
    order = np.lexsort((gids, keys))
    keys, gids = keys[order], gids[order]
    starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
    stops = np.append(starts[1:], len(keys))
    multi = stops - starts > 1
    edges = set()
    for start, stop in zip(starts[multi].tolist(), stops[multi].tolist()):
        seen, members = set(), []
        for gid in gids[start:stop].tolist():
            exact = exact_of(gid)
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


def _near_matches(job: Job, partition: int) -> tuple[np.ndarray, int]:
    keys, positions, files = work.gather(
        job.stage("signatures", len(job.inputs)), partition, ("band_key", "band_pos"), "band_offsets"
    )
    store, threshold, verified = TweetStore(job), job.config.threshold, 0
    # A pair shares several bands: the recent answers are remembered.
    answers = BoundedCache(1 << 20)

    def similar(earlier: int, later: int) -> bool:
        nonlocal verified
        pair = (earlier, later)
        answer = answers.get(pair)
        if answer is None:
            verified += 1
            answer = answers.put(pair, similar_enough(store(later)[1], store(earlier)[1], threshold))
        return answer

    edges = near_edges(keys, gid_of(files, positions), lambda gid: store(gid)[0], similar)
    store.read.close()
    return edges, verified


def match_task(args: tuple[Job, int]) -> dict:
    job, partition = args
    directory = job.path("matches", partition)
    if (done := work.finished(directory)) is not None:
        return {**done, "reused": True}
    begin = time.perf_counter()
    signatures = job.stage("signatures", len(job.inputs))
    hashes, positions, files = work.gather(signatures, partition, ("exact_hash", "exact_pos"), "exact_offsets")
    copies = exact_pairs(hashes, gid_of(files, positions))
    edges, verified = _near_matches(job, partition) if job.mode == "near" else (np.zeros((0, 2), np.int64), 0)
    rows = np.concatenate(
        [np.column_stack([copies, np.full(len(copies), COPY)]), np.column_stack([edges, np.full(len(edges), NEAR)])]
    ).astype(np.int64)
    # To the merge: by the later tweet, so that every copy of a pair meets in one task.
    offsets, rows = work.spread(rows[:, 1], work.node_part(rows[:, 1], job.partitions), job.partitions, rows)
    meta = {
        "exact_entries": len(hashes),
        "copies": len(copies),
        "verified_pairs": verified,
        "edges": len(edges),
        "offsets": offsets,
        "seconds": time.perf_counter() - begin,
        "peak_rss_mb": peak_rss_mb(),
    }
    return work.save(directory, {"rows": rows}, meta)


# --- 4. filtering ----------------------------------------------------------------------


class ApplyDecisions:
    """The last step of a file's chain: drop the records resolution decided to drop and,
    with --cluster-ids, name the cluster of every record that has one."""

    wants_ordinals = True

    def __init__(self, job: Job, fate: dict, heads: set, first_ordinal: int):
        self.job, self.fate, self.heads, self.first_ordinal = job, fate, heads, first_ordinal

    def __call__(self, records: list[dict], ordinals: list[int]) -> list:
        from tweetkit.text.dedup import record_label

        results = []
        for record, ordinal in zip(records, ordinals):
            fate = self.fate.get(ordinal - 1)
            if fate is not None:
                extra = {"dup_of": fate[1], CLUSTER_FIELD: fate[1]} if self.job.cluster_ids else {"dup_of": fate[1]}
                results.append(Drop(fate[0], extra))
                continue
            if ordinal - 1 in self.heads:
                record[CLUSTER_FIELD] = record_label(record, self.job.id_field, self.first_ordinal + ordinal - 1)
            results.append(record)
        return results


def decisions_of(job: Job, file_index: int, ordinal_bases: list[int]) -> tuple[dict, set]:
    """position -> (reason, dup_of) of a file's dropped records, and the positions of its
    kept records that other records are duplicates of."""
    resolved = job.stage("resolved")
    (decisions, _) = work.gather(resolved, file_index, ("decisions",), "decision_offsets")
    (heads, _) = work.gather(resolved, file_index, ("heads",), "head_offsets")
    labels = work.RandomAccess(lambda f: job.path("signatures", f), "labels", "label_offsets", np.uint8)

    def label(twin: int) -> str:
        file, position = twin >> FILE_SHIFT, twin & POSITION_MASK
        raw = labels(file, position).tobytes()
        return raw[1:].decode("utf-8") if raw else f"record {ordinal_bases[file] + position + 1}"

    fate = {position & POSITION_MASK: (REASONS[reason], label(twin)) for position, reason, twin in decisions.tolist()}
    labels.close()
    return fate, set((heads & POSITION_MASK).tolist()) if job.cluster_ids else set()


def filter_task(args: tuple[Job, int, StreamOptions, list[int]]) -> tuple[Counts, float]:
    job, file_index, stream, ordinal_bases = args
    fate, heads = decisions_of(job, file_index, ordinal_bases)
    chain = job.filters()
    chain.steps = (*chain.steps, ApplyDecisions(job, fate, heads, ordinal_bases[file_index] + 1))
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
    os.makedirs(job.work)
    with open(marker, "w") as f:
        f.write(fingerprint)


def run(
    job: Job, stream: StreamOptions, executor, log: Callable[[str], None], keep_work: bool = False
) -> tuple[Counts, dict]:
    """All stages; returns the counts of every file together and stage statistics."""
    from tweetkit.text import components

    prepare_work(job)
    stats: dict = {"executor": executor.describe(), "files": len(job.inputs), "partitions": job.partitions}
    begin = time.perf_counter()
    signatures = executor.map(signature_task, [(job, i) for i in range(len(job.inputs))])
    stats["signatures"] = stage_stats(signatures, begin, log, "signatures", "records")
    begin = time.perf_counter()
    matches = executor.map(match_task, [(job, p) for p in range(job.partitions)])
    stats["matching"] = stage_stats(matches, begin, log, "matching", "exact_entries")
    stats.update(components.resolve(job, executor, log))
    begin = time.perf_counter()
    bases = np.concatenate([[0], np.cumsum([meta["records"] for meta in signatures])]).tolist()
    total, peaks = Counts(), []
    for counts, peak in executor.map(filter_task, [(job, i, stream, bases) for i in range(len(job.inputs))]):
        total.add(counts)
        peaks.append(peak)
    stats["filtering"] = {
        "seconds": time.perf_counter() - begin,
        "records": total.read,
        "task_peak_rss_mb_max": max(peaks),
    }
    log(f"filtering: {total.read:,} records in {stats['filtering']['seconds']:.1f} s")
    stats["driver_peak_rss_mb"] = peak_rss_mb()
    with open(job.path("stats.json"), "w") as f:  # for benchmarks and post-mortems (--keep-work)
        json.dump(stats, f, indent=1)
    if not keep_work:
        shutil.rmtree(job.work, ignore_errors=True)
    return total, stats


def stage_stats(metas: list[dict], begin: float, log, name: str, counted: str) -> dict:
    seconds = time.perf_counter() - begin
    total = sum(meta[counted] for meta in metas)
    reused = [str(i) for i, meta in enumerate(metas) if meta.get("reused")]  # --keep-work: an earlier run's
    done_before = f" ({len(reused)} reused from an earlier run's work: {', '.join(reused)})" if reused else ""
    log(f"{name}: {len(metas)} tasks{done_before}, {total:,} {counted.replace('_', ' ')} in {seconds:.1f} s")
    summed = {
        key: sum(meta[key] for meta in metas)
        for key, value in metas[0].items()
        if key not in ("seconds", "peak_rss_mb") and isinstance(value, (int, float)) and not isinstance(value, bool)
    }
    return {
        **summed,
        "seconds": seconds,
        "tasks": len(metas),
        "task_seconds_max": max(m["seconds"] for m in metas),
        "task_peak_rss_mb_max": max(m["peak_rss_mb"] for m in metas),
    }
