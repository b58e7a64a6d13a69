"""dedup: tweetkit's near-duplicate detector against datasketch's MinHash-LSH, same run.

Quality: real tweets from semeval2017 are the "bases"; each gets planted trivial
variants (copy, case, spacing, punctuation, link, "RT @user:", a link in capitals or glued to the
last word) and near variants
(hashtag or emoji appended, truncated with "…", one word changed), and the stream
also holds distinct short tweets (2-4 words) that must all survive.  Seeded, so every
run plants the same set; each base comes before its variants.  Speed: both tools
over the ~95k real tweets of tweeteval/emoji train + test, texts as they are.

datasketch: MinHash(num_perm=128) over the set of lower-cased whitespace words (and, for
speed, also built with MinHash.generator, its faster path), MinHashLSH(threshold=0.7); a tweet is
dropped when lsh.query finds any candidate, else inserted.  tweetkit: dedup_steps, near
mode, default NearConfig, batches of 512 as the CLI feeds it.

    python bench/dedup.py [--data ../shared/data] [--bases 3000] [--shorts 3000] [--seed 7]
"""

import argparse
import pathlib
import random
import re
import string
import time
from collections import Counter

from common import DEFAULT_DATA, read_rows
from datasketch import MinHash, MinHashLSH

from tweetkit.io import Drop
from tweetkit.text.dedup import NearConfig, dedup_key
from tweetkit.text.steps import dedup_steps

BATCH = 512
LINK = re.compile(r"https?://\S+")
PROTECTED = re.compile(r"(https?://\S+|@\w+)")  # links and mentions: variants leave them intact
PUNCT_RUN = re.compile(r"[!?.,;:]+")
PUNCT = r"""[!"$%&'()*+,\-./:;<=>?\[\]^`{|}~…’“”]+"""  # no "@": it would unmake a mention
EDGE_PUNCT = re.compile(rf"(?<!\S){PUNCT}|{PUNCT}(?!\S)")  # at the start or end of a word
ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")
EMOJI = ["😂", "❤️", "😍", "🔥", "🙏", "👍", "😭", "✨", "💯", "🎉"]


def outside(text, change):
    """Apply change to the text between links and mentions."""
    parts = PROTECTED.split(text)
    return "".join(part if i % 2 else change(part) for i, part in enumerate(parts))


def short_link(rng):
    return "https://t.co/" + "".join(rng.choices(string.ascii_letters + string.digits, k=10))


def other_punct(run, rng):
    return rng.choice([p for p in ("!", "?", "...", "!!", ",") if p != run])


def truncate(text, rng):
    words = text.split()
    return " ".join(words[: -rng.randint(1, 3)]) + "…" if len(words) >= 12 else None


def change_word(text, rng, vocab):
    words = text.split()
    spots = [i for i, w in enumerate(words) if w.isalpha()]
    if not spots:
        return None
    i, present = rng.choice(spots), {w.lower() for w in words}
    words[i] = rng.choice([w for w in rng.sample(vocab, 20) if w not in present])
    return " ".join(words)


TRIVIAL = {
    "exact copy": lambda t, rng: t,
    "case change": lambda t, rng: outside(t, rng.choice([str.upper, str.swapcase])),
    "extra spacing": lambda t, rng: "  " + "   ".join(t.split()) + " ",
    "punct changed": lambda t, rng: outside(t, lambda s: PUNCT_RUN.sub(lambda m: other_punct(m[0], rng), s)),
    "punct removed": lambda t, rng: outside(t, lambda s: EDGE_PUNCT.sub("", s)),
    "link changed": lambda t, rng: LINK.sub(short_link(rng), t) if LINK.search(t) else f"{t} {short_link(rng)}",
    "RT prefix": lambda t, rng: f"RT @{rng.choice(['nytimes', 'jo_smith', 'TheEllenShow', 'espn', 'dan99'])}: {t}",
    # Held-out misses of the first key: a link in capitals, a link glued to the last word.
    "link in capitals": lambda t, rng: f"{t} {short_link(rng).upper()}",
    "link glued": lambda t, rng: t + short_link(rng),
}


def near_variants(hashtags, vocab):
    """The near-duplicate kinds planted: name -> make(text, rng) (None when it does not apply)."""
    return {
        "hashtag added": lambda t, rng: f"{t} {rng.choice(hashtags)}",
        "emoji added": lambda t, rng: f"{t} {rng.choice(EMOJI)}",
        "truncated …": truncate,
        "word changed": lambda t, rng: change_word(t, rng, vocab),
    }


def plant(data, n_bases, n_shorts, seed):
    """[(text, kind, variant type)] in stream order; kind is base, trivial, near or short."""
    rng = random.Random(seed)
    emoji_rows = read_rows(data / "tweeteval/emoji/train.jsonl")
    hashtags = sorted({h for row in emoji_rows for h in re.findall(r"#\w+", row["text"])})
    # semeval2017 stores some characters as literal "\u2019" escapes; decode them.
    texts = [
        ESCAPE.sub(lambda m: chr(int(m[1], 16)), row["text"]) for row in read_rows(data / "semeval2017/train.jsonl")
    ]
    rng.shuffle(texts)
    # Bases must not be duplicates of each other, or a dropped base would count as a
    # false positive: distinct keys, and word-set Jaccard < 0.5 with every earlier base.
    bases, keys, index = [], set(), {}
    for text in texts:
        key = dedup_key(text)
        words = set(key.split())
        if len(words) < 8 or key in keys:
            continue
        overlap = Counter()
        for w in words:
            overlap.update(index.get(w, ()))
        if any(c >= 0.5 * (len(words) + len(bases[j][1]) - c) for j, c in overlap.items()):
            continue
        for w in words:
            index.setdefault(w, []).append(len(bases))
        bases.append((text, words))
        keys.add(key)
        if len(bases) == n_bases:
            break
    vocab = sorted({w for _, words in bases for w in words if w.isalpha() and len(w) > 2})
    near = near_variants(hashtags, vocab)
    groups = []
    for text, _ in bases:
        group = [(text, "base", "base")]
        for kind, variants in (("trivial", TRIVIAL), ("near", near)):
            for name, make in variants.items():
                variant = make(text, rng)
                if variant is not None:
                    group.append((variant, kind, name))
        groups.append(group)
    # Short tweets: first 2-4 words of real tweets, distinct by key (so no two are
    # trivial copies of each other) and with 2+ words left in the key.
    shorts, short_keys = [], set()
    for row in emoji_rows:
        text = " ".join(row["text"].split()[: rng.randint(2, 4)])
        key = dedup_key(text)
        if len(key.split()) >= 2 and key not in short_keys:
            short_keys.add(key)
            shorts.append(text)
    rng.shuffle(shorts)
    groups += [[(text, "short", "short")] for text in shorts[:n_shorts]]
    # Random positions, the smallest of each group going to its base.
    placed = []
    for group in groups:
        slots = sorted(rng.random() for _ in group)
        variants = group[1:]
        rng.shuffle(variants)
        placed += zip(slots, [group[0]] + variants)
    return [item for _, item in sorted(placed)]


def run_tweetkit(texts):
    """Indices of dropped texts, and seconds."""
    begin = time.perf_counter()
    step = dedup_steps("text", "id", "near", NearConfig(), False, None, None)
    dropped = set()
    for start in range(0, len(texts), BATCH):
        records = [{"id": str(start + i), "text": t} for i, t in enumerate(texts[start : start + BATCH])]
        dropped.update(start + i for i, out in enumerate(step(records)) if isinstance(out, Drop))
    return dropped, time.perf_counter() - begin


def run_datasketch(texts, bulk=False):
    """The usual datasketch recipe: one MinHash(num_perm=128) per tweet, updated with its
    words.  bulk=True builds them with MinHash.generator, datasketch's faster path."""
    begin = time.perf_counter()
    lsh = MinHashLSH(threshold=0.7, num_perm=128)
    shingles = ([w.encode("utf-8") for w in set(t.lower().split())] for t in texts)
    if bulk:
        minhashes = MinHash.generator(shingles, num_perm=128)
    else:
        minhashes = (_minhash(words) for words in shingles)
    dropped = set()
    for i, minhash in enumerate(minhashes):
        if lsh.query(minhash):
            dropped.add(i)
        else:
            lsh.insert(str(i), minhash)
    return dropped, time.perf_counter() - begin


def _minhash(words):
    minhash = MinHash(num_perm=128)
    minhash.update_batch(words)
    return minhash


def pct(part, whole):
    return f"{100 * part / whole:.2f}%" if whole else "-"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    parser.add_argument("--bases", type=int, default=3000)
    parser.add_argument("--shorts", type=int, default=3000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    data = pathlib.Path(args.data)

    items = plant(data, args.bases, args.shorts, args.seed)
    texts = [text for text, _, _ in items]
    kinds = Counter(kind for _, kind, _ in items)
    print(
        f"planted set: {len(items):,} tweets = "
        + ", ".join(f"{n:,} {k}" for k, n in kinds.items())
        + f" (seed {args.seed})"
    )
    results = {"tweetkit": run_tweetkit(texts), "datasketch": run_datasketch(texts)}

    def share(dropped, keep, want_dropped=True):
        picked = [i for i, item in enumerate(items) if keep(item)]
        hits = sum((i in dropped) == want_dropped for i in picked)
        return pct(hits, len(picked))

    print(f"\n{'variant type':<16} {'kind':<8} {'count':>6} {'tweetkit':>10} {'datasketch':>11}   (share dropped)")
    order = ["base", "short", "trivial", "near"]
    types = Counter((kind, name) for _, kind, name in items)
    for (kind, name), count in sorted(types.items(), key=lambda t: order.index(t[0][0])):
        row = [share(d, lambda it, n=name: it[2] == n) for d, _ in results.values()]
        print(f"{name:<16} {kind:<8} {count:>6,} {row[0]:>10} {row[1]:>11}")

    def precision(dropped):
        return pct(sum(items[i][1] in ("trivial", "near") for i in dropped), len(dropped))

    metrics = [
        ("trivial recall", ">= 99.5%", lambda d, s: share(d, lambda it: it[1] == "trivial")),
        ("near recall", ">= 90%", lambda d, s: share(d, lambda it: it[1] == "near")),
        ("precision", ">= 99.5%", lambda d, s: precision(d)),
        ("short tweets kept", ">= 99.5%", lambda d, s: share(d, lambda it: it[1] == "short", False)),
        ("bases kept", "100%", lambda d, s: share(d, lambda it: it[1] == "base", False)),
        ("tweets/s", "", lambda d, s: f"{len(items) / s:,.0f}"),
    ]
    print(f"\n{'metric':<18} {'goal':>9} {'tweetkit':>10} {'datasketch':>11}")
    for name, goal, measure in metrics:
        print(f"{name:<18} {goal:>9} " + " ".join(f"{measure(*r):>{w}}" for r, w in zip(results.values(), (10, 11))))

    real = [row["text"] for name in ("train", "test") for row in read_rows(data / f"tweeteval/emoji/{name}.jsonl")]
    print(f"\nspeed: {len(real):,} real tweets (tweeteval/emoji train + test), end to end from the texts")
    speed = {
        "tweetkit": run_tweetkit(real),
        "datasketch": run_datasketch(real),
        "datasketch (bulk)": run_datasketch(real, bulk=True),
    }
    print(f"{'tool':<18} {'dropped':>8} {'seconds':>8} {'tweets/s':>9}")
    for name, (dropped, seconds) in speed.items():
        print(f"{name:<18} {len(dropped):>8,} {seconds:>8.2f} {len(real) / seconds:>9,.0f}")
    print(f"tweetkit / datasketch: {speed['datasketch'][1] / speed['tweetkit'][1]:.1f}x (goal >= 5x)")
    print(f"tweetkit / datasketch bulk generator: {speed['datasketch (bulk)'][1] / speed['tweetkit'][1]:.1f}x")


if __name__ == "__main__":
    main()
