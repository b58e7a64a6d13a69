"""Resolution of `dedup -o DIR/` sharded by connected component: no process holds the
whole match set.

The matches (exact copies and verified near pairs) form a graph over tweets.  Tweets in
different connected components never affect each other's fate, so the streaming rule
can run within each component separately:

1. merge (a task per partition of the later tweet): every copy of a match, found in
   several band partitions, becomes one edge;
2. components, in rounds of tasks over edge partitions (large-star and small-star
   alternately, Kiveris et al., "Connected Components in MapReduce and Beyond", 2014):
   each task holds the edges of one partition of nodes, and every edge ends up joining
   a tweet to the smallest id of its component, its root;
3. join (a task per partition of tweets): each match is labelled with its component;
4. decide (a task per partition of roots): in the global input order, a tweet is
   dropped when it matches an earlier tweet that is kept, and dup_of names the earliest
   such twin; a copy of a dropped tweet goes where its first occurrence went.  This is
   exactly the streaming path's rule, so both give the same output.  It also counts
   the "transitive" tweets a union-find clustering would have dropped as well
   (A~B, B~C, A≁C: C is kept here, as in the streaming path).
"""

from __future__ import annotations

import itertools
import time
from typing import TYPE_CHECKING

import numpy as np

from tweetkit.errors import TweetkitError
from tweetkit.text import dedup_work as work
from tweetkit.text.dedup_work import peak_rss_mb

if TYPE_CHECKING:
    from tweetkit.text.staged_dedup import Job

MAX_ROUNDS = 200  # large-star/small-star needs O(log^2 n) rounds; this is a guard against a bug
NEAR = 1


def _directed(edges: np.ndarray, both: bool, count: int) -> tuple[list[int], np.ndarray]:
    """Edges as (key, other) records spread by the key's partition: both directions (for
    large-star) or from the larger id to the smaller (for small-star)."""
    if both:
        records = np.concatenate([edges, edges[:, ::-1]])
    else:
        records = np.column_stack([edges.max(axis=1), edges.min(axis=1)])
    offsets, records = work.spread(records[:, 1], work.node_part(records[:, 0], count), count, records)
    return offsets, records


def _task(directory: str, build, *args) -> dict:
    """Run `build` unless an earlier run finished this task; save what it returns."""
    if (done := work.finished(directory)) is not None:
        return {**done, "reused": True}
    begin = time.perf_counter()
    arrays, meta = build(*args)
    return work.save(directory, arrays, dict(meta, seconds=time.perf_counter() - begin, peak_rss_mb=peak_rss_mb()))


# --- 1. merge --------------------------------------------------------------------------


def _merge(job: Job, part: int):
    rows, _ = work.gather(job.stage("matches"), part, ("rows",))
    rows = np.unique(rows, axis=0).reshape(-1, 3)
    offsets, records = _directed(rows[:, :2], True, job.partitions)
    near = int((rows[:, 2] == NEAR).sum())
    return {"rows": rows, "records": records}, {"offsets": offsets, "edges": len(rows), "near_edges": near}


def merge_task(args: tuple[Job, int]) -> dict:
    job, part = args
    return _task(job.path("merged", part), _merge, job, part)


# --- 2. components ---------------------------------------------------------------------


def _groups(records: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unique (key, other) records sorted, the start of each key's run, and each row's run."""
    records = np.unique(records, axis=0).reshape(-1, 2)
    starts = np.flatnonzero(np.concatenate([[True], records[1:, 0] != records[:-1, 0]])) if len(records) else []
    starts = np.asarray(starts, dtype=np.int64)
    run = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, len(records))))
    return records, starts, run


def large_star(records: np.ndarray) -> tuple[np.ndarray, bool]:
    """Each node u links its larger neighbours to the smallest of u and its neighbours.
    Also answers whether the graph was already a set of stars around their smallest id
    (every node a root with only larger neighbours, or a leaf with one smaller one)."""
    records, starts, run = _groups(records)
    if not len(records):
        return np.zeros((0, 2), np.int64), True
    node, other = records[:, 0], records[:, 1]
    smallest = np.minimum(np.minimum.reduceat(other, starts), node[starts])
    larger = other > node
    count, smaller = np.diff(np.append(starts, len(records))), np.add.reduceat((~larger).astype(np.int64), starts)
    settled = bool(np.all((smaller == 0) | ((count == 1) & (smaller == 1))))
    return np.column_stack([other[larger], smallest[run][larger]]), settled


def small_star(records: np.ndarray) -> np.ndarray:
    """Each node u and its smaller neighbours all link to the smallest of them."""
    records, starts, run = _groups(records)
    if not len(records):
        return np.zeros((0, 2), np.int64)
    node, other = records[:, 0], records[:, 1]
    smallest = np.minimum.reduceat(other, starts)
    moved = other != smallest[run]
    return np.concatenate(
        [np.column_stack([other[moved], smallest[run][moved]]), np.column_stack([node[starts], smallest])]
    )


def _round(job: Job, number: int, part: int):
    previous = job.stage("merged") if number == 1 else job.stage(f"components/{number - 1}")
    records, _ = work.gather(previous, part, ("records",))
    if number % 2:
        edges, settled = large_star(records)
    else:
        edges, settled = small_star(records), False
    # After large-star comes small-star; after small-star, large-star.
    offsets, records = _directed(edges, not number % 2, job.partitions)
    return {"records": records}, {"offsets": offsets, "records": len(records), "settled": settled}


def round_task(args: tuple[Job, int, int]) -> dict:
    job, number, part = args
    return _task(job.path("components", number, part), _round, job, number, part)


def components(job: Job, executor) -> tuple[str, int]:
    """Rounds until a large-star finds stars; returns its stage, whose records are
    (tweet, root of its component) by the tweet's partition, and the number of rounds."""
    for number in itertools.count(1):
        metas = executor.map(round_task, [(job, number, part) for part in range(job.partitions)])
        if number % 2 and all(meta["settled"] for meta in metas):
            return f"components/{number}", number
        if number >= MAX_ROUNDS:
            raise TweetkitError(f"dedup: connected components did not settle in {MAX_ROUNDS} rounds")
    raise AssertionError("unreachable")


# --- 3. join ---------------------------------------------------------------------------


def _join(job: Job, roots_stage: str, part: int):
    labels, _ = work.gather(job.stage(roots_stage), part, ("records",))
    labels = labels[np.argsort(labels[:, 0], kind="stable")]
    rows = work.read(job.path("merged", part), "rows")
    # The later tweet of a match is never its component's root (the smallest id).
    at = np.searchsorted(labels[:, 0], rows[:, 1])
    rows = np.column_stack([labels[at, 1] if len(rows) else np.zeros(0, np.int64), rows])
    offsets, rows = work.spread(rows[:, 2], work.node_part(rows[:, 0], job.partitions), job.partitions, rows)
    return {"rows": rows}, {"offsets": offsets, "rows": len(rows)}


def join_task(args: tuple[Job, str, int]) -> dict:
    job, roots_stage, part = args
    return _task(job.path("joined", part), _join, job, roots_stage, part)


# --- 4. decide -------------------------------------------------------------------------


def first_kept_twin(edges: np.ndarray) -> dict[int, int]:
    """later id -> the earliest earlier id it matches that is itself kept.  Ids are
    visited in input order, so each twin's own fate is known when it is needed."""
    edges = np.unique(edges, axis=0).reshape(-1, 2)
    order = np.lexsort((edges[:, 0], edges[:, 1]))
    dropped: dict[int, int] = {}
    for later, group in itertools.groupby(edges[order].tolist(), key=lambda edge: edge[1]):
        for earlier, _ in group:
            if earlier not in dropped:
                dropped[later] = earlier
                break
    return dropped


def decide(copies: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The dropped ids in order, their reasons (index into REASONS) and their kept twins,
    from (first, copy) exact pairs and (earlier, later) near pairs."""
    dropped = first_kept_twin(edges)
    near = np.array(sorted(dropped), dtype=np.int64).reshape(-1)
    near_twin = np.array([dropped[gid] for gid in near.tolist()], dtype=np.int64).reshape(-1)
    # Exact copies, vectorised (they are most duplicates): a copy of a near duplicate goes
    # where its first occurrence went, as in the streaming path, which compares it with
    # the same kept tweets.
    first, copy = copies[:, 0], copies[:, 1]
    at = np.minimum(np.searchsorted(near, first), max(len(near) - 1, 0))
    first_is_near = near[at] == first if len(near) else np.zeros(len(first), dtype=bool)
    gids = np.concatenate([near, copy])
    reasons = np.concatenate([np.ones(len(near), np.int64), first_is_near.astype(np.int64)])
    twins = np.concatenate([near_twin, np.where(first_is_near, near_twin[at] if len(near) else first, first)])
    order = np.argsort(gids, kind="stable")
    return gids[order], reasons[order], twins[order]


def transitive_count(rows: np.ndarray, dropped: np.ndarray) -> int:
    """Kept tweets that a union-find clustering would also drop: kept, yet in the
    component of an earlier kept tweet (its root, the first tweet, is always kept)."""
    nodes = np.unique(np.concatenate([rows[:, [0, 1]], rows[:, [0, 2]]]), axis=0).reshape(-1, 2)
    kept_roots = nodes[~np.isin(nodes[:, 1], dropped), 0]
    _, kept = np.unique(kept_roots, return_counts=True)
    return int((kept - 1).sum())


def _decide(job: Job, part: int):
    from tweetkit.text.staged_dedup import FILE_SHIFT

    rows, _ = work.gather(job.stage("joined"), part, ("rows",))  # root, earlier, later, kind
    near = rows[:, 3] == NEAR
    gids, reasons, twins = decide(rows[~near][:, 1:3], rows[near][:, 1:3])
    files = len(job.inputs)
    decision_offsets, decisions = work.spread(gids, gids >> FILE_SHIFT, files, np.column_stack([gids, reasons, twins]))
    heads = np.unique(twins)
    head_offsets, heads = work.spread(heads, heads >> FILE_SHIFT, files, heads)
    meta = {
        "decision_offsets": decision_offsets,
        "head_offsets": head_offsets,
        "copies": int((~near).sum()),
        "near_duplicates": len(gids) - int((~near).sum()),
        "transitive": transitive_count(rows, gids),
    }
    return {"decisions": decisions, "heads": heads}, meta


def decide_task(args: tuple[Job, int]) -> dict:
    job, part = args
    return _task(job.path("resolved", part), _decide, job, part)


def resolve(job: Job, executor, log) -> dict:
    """Stages 1-4 above; returns their statistics."""
    from tweetkit.text.staged_dedup import stage_stats

    parts = range(job.partitions)
    begin = time.perf_counter()
    stats = {"merge": stage_stats(executor.map(merge_task, [(job, p) for p in parts]), begin, log, "merge", "edges")}
    begin = time.perf_counter()
    roots, rounds = components(job, executor)
    stats["components"] = {"rounds": rounds, "seconds": time.perf_counter() - begin}
    stats["components"]["task_peak_rss_mb_max"] = max(
        work.finished(job.path("components", number, p))["peak_rss_mb"]
        for number in range(1, rounds + 1)
        for p in parts
    )
    log(f"components: {rounds} rounds in {stats['components']['seconds']:.1f} s")
    begin = time.perf_counter()
    stats["join"] = stage_stats(executor.map(join_task, [(job, roots, p) for p in parts]), begin, log, "join", "rows")
    begin = time.perf_counter()
    decided = executor.map(decide_task, [(job, p) for p in parts])
    stats["resolution"] = stage_stats(decided, begin, lambda _: None, "decide", "copies")
    stats["resolution"]["seconds_all_stages"] = sum(stats[s]["seconds"] for s in ("merge", "components", "join"))
    stats["resolution"]["seconds_all_stages"] += stats["resolution"]["seconds"]
    summary = stats["resolution"]
    log(
        f"resolution: {summary['copies']:,} exact copies, {summary['near_duplicates']:,} near duplicates "
        f"({summary['transitive']:,} more a union-find clustering would drop) in {summary['seconds']:.1f} s"
    )
    return stats
