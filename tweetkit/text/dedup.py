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

What a tweet keeps for verification is compact: the 32-bit hashes of its key's words,
in order; its verification set (the 32-bit hashes of those words and of each adjacent
pair) is rebuilt from them when a candidate needs checking.  Band keys are 32-bit too.
This module is the one home of the key, the signatures, the verification and the
bounded cache; the streaming `Deduplicator` and the staged path
(tweetkit/text/staged_dedup.py) both call them, so their equality rests on one copy.
"""

from __future__ import annotations

import hashlib
import html
from dataclasses import dataclass

import numpy as np

from tweetkit.text.patterns import DEDUP_NOISE, NON_WORD

PAIR_MIX = np.uint32(0x9E3779B1)  # odd: multiplying by it permutes 32-bit values


def dedup_key(text: str) -> str:
    """The normalised text duplicates share: words only, lower-cased, single spaces."""
    if "&" in text:  # some dumps keep "&amp;" escaped, others do not
        text = html.unescape(text)
    text = DEDUP_NOISE.sub(" ", text)
    return " ".join(NON_WORD.sub(" ", text).casefold().split())


def key_hash(key: str) -> int:
    """A stable 64-bit hash (blake2b), the same in every process and run."""
    return int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "little")


def exact_hashes(keys: list[str]) -> np.ndarray:
    return np.fromiter((key_hash(key) for key in keys), dtype=np.uint64, count=len(keys))


def record_label(record: dict, id_field: str, ordinal: int) -> str:
    """How dup_of names a record: its `id_field`, else its 1-based position in the input."""
    label = record.get(id_field)
    return str(label) if label is not None else f"record {ordinal}"


def is_retweet(record: dict, text: str) -> bool:
    return text.startswith("RT @") or record.get("is_retweet") is True or bool(record.get("retweeted_status"))


class BoundedCache(dict):
    """A dict that forgets everything once it holds `limit` entries: a stream has endless
    rare keys, and starting over costs less than tracking which entry is oldest."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit = limit

    def put(self, key, value):
        if len(self) >= self.limit:
            self.clear()
        self[key] = value
        return value


def verification_set(words: np.ndarray) -> set:
    """The shingles a pair is verified on: a key's 32-bit word hashes (in key order)
    and one 32-bit hash per adjacent pair."""
    with np.errstate(over="ignore"):
        pairs = (words[:-1] * PAIR_MIX) ^ (words[1:] >> np.uint32(1))
    return set(words.tolist()).union(pairs.tolist())


def similar_enough(mine: set, theirs: set, threshold: float) -> bool:
    """Whether two verification sets have a Jaccard similarity of at least `threshold`."""
    shared = len(mine.intersection(theirs))
    return shared >= threshold * (len(mine) + len(theirs) - shared)


@dataclass
class NearConfig:
    threshold: float = 0.7  # Jaccard similarity of shingle sets at or above which a tweet is a near copy
    num_perm: int = 64  # MinHash permutations
    bands: int = 16  # LSH bands (rows per band = num_perm / bands): more, shorter bands miss fewer near copies
    # and give more candidates to verify
    min_words: int = 5  # distinct words a key needs to take part in near matching
    seed: int = 1  # of the permutations; fixed, so results are reproducible


@dataclass
class Signatures:
    """What dedup knows of a batch of keys: every key's exact hash; for the keys that take
    part in near matching (`eligible`, their positions), their 32-bit word hashes (for
    verification) and their (n, bands) 32-bit band keys."""

    exact: np.ndarray
    eligible: list[int]
    words: list[np.ndarray]
    bands: np.ndarray


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
        self._word_hashes = BoundedCache(1 << 21)

    def word_hashes(self, words: list[str]) -> np.ndarray:
        cache = self._word_hashes
        hashes = list(map(cache.get, words))
        try:
            miss = hashes.index(None)
            while True:
                hashes[miss] = cache.put(words[miss], key_hash(words[miss]))
                miss = hashes.index(None, miss + 1)
        except ValueError:  # no (more) new words
            pass
        return np.array(hashes, dtype=np.uint64)

    def shingle_batch(self, word_lists: list[list[str]]) -> tuple[list[np.ndarray], np.ndarray]:
        """Per tweet, the sorted unique 64-bit hashes of its words and adjacent word
        pairs, computed for the whole batch at once, and the batch's word hashes in order.
        Every list needs 2+ words."""
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
        return np.split(values, bounds), hashes

    def signatures(self, shingle_sets: list[np.ndarray]) -> np.ndarray:
        """(len(shingle_sets), num_perm) MinHash signatures, computed in one pass."""
        lengths = np.array([len(s) for s in shingle_sets])
        flat = np.concatenate(shingle_sets)
        with np.errstate(over="ignore"):
            hashed = flat[:, None] * self.a[None, :] + self.b[None, :]
        starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        return np.minimum.reduceat(hashed, starts, axis=0)

    def band_keys(self, signatures: np.ndarray) -> np.ndarray:
        """(n, bands) 32-bit keys, one per band; the band index is mixed in so that one
        table serves all bands."""
        n, rows = len(signatures), self.config.num_perm // self.config.bands
        by_band = signatures.reshape(n, self.config.bands, rows)
        keys = np.arange(self.config.bands, dtype=np.uint64) * np.uint64(0xD6E8FEB86659FD93)
        keys = np.broadcast_to(keys, (n, self.config.bands)).copy()
        with np.errstate(over="ignore"):
            for row in range(rows):
                keys = (keys ^ by_band[:, :, row]) * np.uint64(0x100000001B3) + np.uint64(row + 1)
        return (keys >> np.uint64(32)).astype(np.uint32)

    def sign(self, keys: list[str]) -> Signatures:
        """The signatures of a batch of keys (see `Signatures`)."""
        word_lists = [k.split() for k in keys]
        exact = exact_hashes(keys)
        eligible = [i for i, words in enumerate(word_lists) if len(set(words)) >= self.config.min_words]
        if not eligible:
            return Signatures(exact, [], [], np.zeros((0, self.config.bands), dtype=np.uint32))
        chosen = [word_lists[i] for i in eligible]
        shingle_sets, hashes = self.shingle_batch(chosen)
        words = np.split((hashes >> np.uint64(32)).astype(np.uint32), np.cumsum([len(w) for w in chosen])[:-1])
        return Signatures(exact, eligible, words, self.band_keys(self.signatures(shingle_sets)))


def sign_exact(keys: list[str], bands: int) -> Signatures:
    """Signatures of exact mode: key hashes only."""
    return Signatures(exact_hashes(keys), [], [], np.zeros((0, bands), dtype=np.uint32))


class Deduplicator:
    """Stateful first-occurrence-wins deduplication; feed tweets in order.

    `check(key, label)` answers None (keep; remembered from now on) or
    (reason, label of the kept twin).  Exact mode keeps one 8-byte hash and the
    twin's label per unique key; near mode adds the band keys and the word hashes
    of each kept tweet (for verification).
    """

    def __init__(self, mode: str = "near", config: NearConfig | None = None):
        self.mode = mode
        self.config = config or NearConfig()
        self.hasher = MinHasher(self.config) if mode == "near" else None
        self.exact: dict[int, str] = {}  # key hash -> label of the first tweet with that key
        self.bands: dict[int, int | list[int]] = {}  # band key -> index(es) into kept
        self.kept_words: list[np.ndarray] = []  # of each kept near-eligible tweet, for verification
        self.kept_labels: list[str] = []

    def sign(self, keys: list[str]) -> Signatures:
        return self.hasher.sign(keys) if self.hasher is not None else sign_exact(keys, self.config.bands)

    def prepare(self, keys: list[str]) -> list:
        """Per key: its exact hash and, for near mode, (word hashes, band keys) or None."""
        signed = self.sign(keys)
        near: list = [None] * len(keys)
        for i, words, bands in zip(signed.eligible, signed.words, signed.bands.tolist()):
            near[i] = (words, bands)
        return list(zip(signed.exact.tolist(), near))

    def check(self, prepared: tuple, label: str) -> tuple[str, str] | None:
        exact_hash, near = prepared
        twin = self.exact.get(exact_hash)
        if twin is not None:
            return "duplicate", twin
        if near is not None:
            words, band_keys = near
            # A band entry is one kept index, or a list of them once bands collide
            # (rare; an int costs far less memory than a one-element list).
            shared_bands = self.bands.keys() & band_keys  # set intersection, in C
            if shared_bands:
                hits = [self.bands[band_key] for band_key in shared_bands]
                # Verify with the real Jaccard similarity: LSH candidates are only hints.
                # Candidates are tried oldest first, so dup_of names the earliest twin.
                mine = verification_set(words)
                candidates = sorted({i for hit in hits for i in ((hit,) if isinstance(hit, int) else hit)})
                for candidate in candidates:
                    if similar_enough(mine, verification_set(self.kept_words[candidate]), self.config.threshold):
                        return "near-duplicate", self.kept_labels[candidate]
        self.exact[exact_hash] = label
        if near is not None:
            self._remember(words, band_keys, label)
        return None

    def _remember(self, words: np.ndarray, band_keys: list[int], label: str) -> None:
        index = len(self.kept_words)
        self.kept_words.append(words)
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
