"""The work directory of `dedup -o DIR/`: how its tasks hand data to each other.

A task writes its arrays as raw files (`name.bin`) and then `meta.json`, which records
each array's dtype and row shape and the task's own figures; the directory is written
under a temporary name and renamed when complete, so a directory with `meta.json` is a
finished task, which a rerun of the same job skips.  Arrays meant for the next stage are
spread over its partitions: rows sorted by destination, with the offsets in the meta,
so a task of the next stage reads its rows of every file with one plain read each
(no memory maps: a task's memory figure is its own).
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np

from tweetkit.text.dedup import BoundedCache

NODE_MIX = np.uint64(0x9E3779B97F4A7C15)


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


def save(directory: str, arrays: dict[str, np.ndarray], meta: dict) -> dict:
    """Arrays and meta.json, renamed into place when complete; returns the meta."""
    partial = directory + ".partial"
    shutil.rmtree(partial, ignore_errors=True)
    os.makedirs(partial)
    meta = dict(meta, arrays={})
    for name, array in arrays.items():
        array = np.ascontiguousarray(array)
        array.tofile(os.path.join(partial, name + ".bin"))
        meta["arrays"][name] = [array.dtype.str, list(array.shape[1:])]
    with open(os.path.join(partial, "meta.json"), "w") as f:
        json.dump(meta, f)
    shutil.rmtree(directory, ignore_errors=True)
    os.replace(partial, directory)
    return meta


def finished(directory: str) -> dict | None:
    """The meta of a task an earlier run of the same job completed."""
    try:
        with open(os.path.join(directory, "meta.json")) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def read(directory: str, name: str, start: int = 0, stop: int | None = None, meta: dict | None = None) -> np.ndarray:
    """Rows [start, stop) of a saved array, with one plain read."""
    meta = meta or finished(directory)
    dtype, shape = meta["arrays"][name]
    row = np.dtype(dtype).itemsize * int(np.prod(shape, dtype=np.int64))
    count = -1 if stop is None else (stop - start) * int(np.prod(shape, dtype=np.int64))
    with open(os.path.join(directory, name + ".bin"), "rb") as f:
        f.seek(start * row)
        return np.fromfile(f, dtype=dtype, count=count).reshape(-1, *shape)


def spread(keys: np.ndarray, parts: np.ndarray, count: int, *columns: np.ndarray) -> tuple[list[int], ...]:
    """Columns reordered by destination partition `parts` (stable), with the offsets of
    each partition's rows; `keys` only orders the rows inside a partition."""
    order = np.lexsort((keys, parts))
    offsets = np.searchsorted(parts[order], np.arange(count + 1)).tolist()
    return (offsets, *(column[order] for column in columns))


def gather(directories: list[str], part: int, names: tuple[str, ...], offsets: str = "offsets") -> list[np.ndarray]:
    """Partition `part` of the named arrays of every directory, concatenated, and last
    the index of the directory each row came from."""
    columns: list[list] = [[] for _ in names]
    sources = []
    for source, directory in enumerate(directories):
        meta = finished(directory)
        start, stop = meta[offsets][part], meta[offsets][part + 1]
        for column, name in zip(columns, names):
            column.append(read(directory, name, start, stop, meta))
        sources.append(np.full(stop - start, source, dtype=np.int64))
    return [np.concatenate(column) for column in columns] + [np.concatenate(sources)]


def node_part(nodes: np.ndarray, count: int) -> np.ndarray:
    """The partition of each node (a tweet's global id): a mix of all its bits."""
    with np.errstate(over="ignore"):
        return ((nodes.astype(np.uint64) * NODE_MIX >> np.uint64(33)) % np.uint64(count)).astype(np.int64)


class RandomAccess:
    """Items of per-file blobs, by position, each with two plain reads (its offsets, then
    its bytes); the files stay open, up to a bound."""

    def __init__(self, path_of, blob: str, offsets: str, dtype):
        self.path_of, self.blob, self.offsets, self.dtype = path_of, blob, offsets, np.dtype(dtype)
        self.handles = BoundedCache(256)

    def _handles(self, file_index: int) -> tuple[int, int, np.dtype]:
        found = self.handles.get(file_index)
        if found is None:
            if len(self.handles) >= self.handles.limit:
                for blob, offsets, _ in self.handles.values():
                    os.close(blob)
                    os.close(offsets)
            directory = self.path_of(file_index)
            offset_dtype = np.dtype(finished(directory)["arrays"][self.offsets][0])
            found = self.handles.put(
                file_index,
                tuple(os.open(os.path.join(directory, n + ".bin"), os.O_RDONLY) for n in (self.blob, self.offsets))
                + (offset_dtype,),
            )
        return found

    def __call__(self, file_index: int, position: int) -> np.ndarray:
        blob, offsets, offset_dtype = self._handles(file_index)
        bounds = np.frombuffer(
            os.pread(offsets, 2 * offset_dtype.itemsize, position * offset_dtype.itemsize), offset_dtype
        )
        start, stop = int(bounds[0]), int(bounds[1])
        size = self.dtype.itemsize
        return np.frombuffer(os.pread(blob, (stop - start) * size, start * size), self.dtype)

    def close(self) -> None:
        for blob, offsets, _ in self.handles.values():
            os.close(blob)
            os.close(offsets)
        self.handles.clear()
