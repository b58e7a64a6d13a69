"""Duplicate detection for tweets: exact keys and MinHash-LSH near-duplicates.

The key a tweet is compared by folds case and drops what differs between copies of
the same tweet: a leading "RT @user:", links (any case, glued to a word, or as
`normalize` splits them) and HTTPURL, mentions and @USER, HTML escapes, punctuation,
emoji and whitespace runs.

Near-duplicates are found with MinHash over the key's words and word pairs, banded
for LSH; every LSH candidate is then checked against the real Jaccard similarity of
the two shingle sets, so a hash collision never drops a tweet.  Short keys (fewer
than `min_words` distinct words) are only ever matched exactly: with three words, one
changed word is a different tweet, not a near copy ("short-tweet guard").
"""

from __future__ import annotations

import hashlib
import html
from dataclasses import dataclass

import numpy as np

from tweetkit.text.patterns import DEDUP_NOISE, NON_WORD


def dedup_key(text: str) -> str:
    """The normalised text duplicates share: words only, lower-cased, single spaces."""
    if "&" in text:  # some dumps keep "&amp;" escaped, others do not
        text = html.unescape(text)
    text = DEDUP_NOISE.sub(" ", text)
    return " ".join(NON_WORD.sub(" ", text).casefold().split())


def key_hash(key: str) -> int:
    """A stable 64-bit hash (blake2b), the same in every process and run."""
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "little")


def is_retweet(record: dict, text: str) -> bool:
    return text.startswith("RT @") or record.get("is_retweet") is True or bool(record.get("retweeted_status"))


@dataclass
class NearConfig:
    threshold: float = 0.7  # Jaccard similarity of shingle sets at or above which a tweet is a near copy
    num_perm: int = 64  # MinHash permutations
    bands: int = 16  # LSH bands (rows per band = num_perm / bands); P(candidate | J=0.7) = 98.8%
    min_words: int = 5  # distinct words a key needs to take part in near matching
    seed: int = 1  # of the permutations; fixed, so results are reproducible


class MinHasher:
    """Vectorised MinHash over word (1-gram and 2-gram) shingles, a batch at a time."""

    def __init__(self, config: NearConfig):
        if config.num_perm % config.bands:
            raise ValueError("num_perm must be a multiple of bands")
        self.config = config
        rng = np.random.default_rng(config.seed)
        # Multiply-shift hashing: (a * x + b) mod 2^64 with odd a is a permutation of
        # 64-bit values; its high bits behave as an independent hash per permutation.
        self.a = rng.integers(1, 2**63, size=config.num_perm, dtype=np.uint64) | np.uint64(1)
        self.b = rng.integers(0, 2**63, size=config.num_perm, dtype=np.uint64)
        self._word_hashes: dict[str, int] = {}

    def word_hashes(self, words: list[str]) -> np.ndarray:
        cache = self._word_hashes
        hashes = list(map(cache.get, words))
        try:
            miss = hashes.index(None)
            if len(cache) > 1 << 21:  # bounded: a stream has endless rare words
                cache.clear()
            while True:
                hashes[miss] = cache[words[miss]] = key_hash(words[miss])
                miss = hashes.index(None, miss + 1)
        except ValueError:  # no (more) new words
            pass
        return np.array(hashes, dtype=np.uint64)

    def shingle_batch(self, word_lists: list[list[str]]) -> list[np.ndarray]:
        """Per tweet, the sorted unique 64-bit hashes of its words and adjacent word
        pairs, computed for the whole batch at once.  Every list needs 2+ words."""
        lengths = np.array([len(words) for words in word_lists])
        hashes = self.word_hashes([w for words in word_lists for w in words])
        owner = np.repeat(np.arange(len(word_lists)), lengths)
        with np.errstate(over="ignore"):
            pairs = hashes[:-1] * np.uint64(0x9E3779B97F4A7C15) ^ (hashes[1:] >> np.uint64(1))
        # Pair j joins words j and j+1; it belongs to a tweet unless word j is its last.
        same_tweet = owner[:-1] == owner[1:]
        values = np.concatenate([hashes, pairs[same_tweet]])
        owners = np.concatenate([owner, owner[:-1][same_tweet]])
        order = np.lexsort((values, owners))
        values, owners = values[order], owners[order]
        first = np.ones(len(values), dtype=bool)
        first[1:] = (values[1:] != values[:-1]) | (owners[1:] != owners[:-1])
        values, owners = values[first], owners[first]
        bounds = np.searchsorted(owners, np.arange(1, len(word_lists)))
        return np.split(values, bounds)

    def signatures(self, shingle_sets: list[np.ndarray]) -> np.ndarray:
        """(len(shingle_sets), num_perm) MinHash signatures, computed in one pass."""
        lengths = np.array([len(s) for s in shingle_sets])
        flat = np.concatenate(shingle_sets)
        with np.errstate(over="ignore"):
            hashed = flat[:, None] * self.a[None, :] + self.b[None, :]
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        return np.minimum.reduceat(hashed, starts, axis=0)

    def band_keys(self, signatures: np.ndarray) -> np.ndarray:
        """(n, bands) 64-bit keys, one per band; the band index is mixed in so that one
        table serves all bands."""
        n, rows = len(signatures), self.config.num_perm // self.config.bands
        by_band = signatures.reshape(n, self.config.bands, rows)
        keys = np.arange(self.config.bands, dtype=np.uint64) * np.uint64(0xD6E8FEB86659FD93)
        keys = np.broadcast_to(keys, (n, self.config.bands)).copy()
        with np.errstate(over="ignore"):
            for row in range(rows):
                keys = (keys ^ by_band[:, :, row]) * np.uint64(0x100000001B3) + np.uint64(row + 1)
        return keys


class Deduplicator:
    """Stateful first-occurrence-wins deduplication; feed tweets in order.

    `check(key, label)` answers None (keep; remembered from now on) or
    (reason, label of the kept twin).  Exact mode keeps one 8-byte hash and the
    twin's label per unique key; near mode adds the band keys and the shingles
    of each kept tweet (for verification).
    """

    def __init__(self, mode: str = "near", config: NearConfig | None = None):
        self.mode = mode
        self.config = config or NearConfig()
        self.hasher = MinHasher(self.config) if mode == "near" else None
        self.exact: dict[int, str] = {}  # key hash -> label of the first tweet with that key
        self.bands: dict[int, int | list[int]] = {}  # band key -> index(es) into kept
        self.kept_shingles: list[np.ndarray] = []  # of each kept near-eligible tweet, for verification
        self.kept_labels: list[str] = []

    def near_signatures(self, keys: list[str]) -> tuple[list[int], list[np.ndarray], np.ndarray]:
        """The positions of the keys that take part in near matching (near mode, enough
        distinct words), their shingle sets and their (n, bands) band keys."""
        word_lists = [k.split() for k in keys]
        eligible = [i for i, words in enumerate(word_lists) if len(set(words)) >= self.config.min_words]
        if self.hasher is None or not eligible:
            return [], [], np.zeros((0, self.config.bands), dtype=np.uint64)
        shingle_sets = self.hasher.shingle_batch([word_lists[i] for i in eligible])
        return eligible, shingle_sets, self.hasher.band_keys(self.hasher.signatures(shingle_sets))

    def prepare(self, keys: list[str]) -> list:
        """Per key: its exact hash and, for near mode, (shingles, band keys) or None."""
        near: list = [None] * len(keys)
        eligible, shingle_sets, band_keys = self.near_signatures(keys)
        for i, shingles, bands in zip(eligible, shingle_sets, band_keys.tolist()):
            near[i] = (shingles, bands)
        return list(zip((key_hash(k) for k in keys), near))

    def check(self, prepared: tuple, label: str) -> tuple[str, str] | None:
        exact_hash, near = prepared
        twin = self.exact.get(exact_hash)
        if twin is not None:
            return "duplicate", twin
        if near is not None:
            shingles, band_keys = near
            # A band entry is one kept index, or a list of them once bands collide
            # (rare; an int costs far less memory than a one-element list).
            shared_bands = self.bands.keys() & band_keys  # set intersection, in C
            if shared_bands:
                hits = [self.bands[band_key] for band_key in shared_bands]
                # Verify with the real Jaccard similarity: LSH candidates are only hints.
                # Candidates are tried oldest first, so dup_of names the earliest twin.
                mine = set(shingles.tolist())
                candidates = sorted({i for hit in hits for i in ((hit,) if isinstance(hit, int) else hit)})
                for candidate in candidates:
                    theirs = self.kept_shingles[candidate]
                    shared = len(mine.intersection(theirs.tolist()))
                    if shared >= self.config.threshold * (len(mine) + len(theirs) - shared):
                        return "near-duplicate", self.kept_labels[candidate]
        self.exact[exact_hash] = label
        if near is not None:
            index = len(self.kept_shingles)
            self.kept_shingles.append(shingles)  # sorted, unique
            self.kept_labels.append(label)
            bands = self.bands
            for band_key in band_keys:
                hit = bands.get(band_key)
                if hit is None:
                    bands[band_key] = index
                elif isinstance(hit, int):
                    bands[band_key] = [hit, index]
                else:
                    hit.append(index)
        return None
