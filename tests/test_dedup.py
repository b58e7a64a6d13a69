"""dedup: exact and near duplicates, the short-tweet guard, verification, accounting, shards."""

import json

import numpy as np
from conftest import jsonl, read_jsonl, run_cli, sliced

from tweetkit.text.dedup import Deduplicator, NearConfig, dedup_key

BASE = "the council voted tonight to keep the public library open on sundays after months of protest"


def run_dedup(texts, *args):
    records = [{"id": f"t{i}", "text": t} for i, t in enumerate(texts)]
    result = run_cli(["dedup", *args], stdin=jsonl(*records))
    assert result.exit_code == 0, result.stderr
    return [r["id"] for r in result.records()]


def test_key_ignores_tweet_noise():
    assert dedup_key("RT @news: The Council VOTED!!! https://t.co/abc @bob 😂 #win") == dedup_key(
        "the council voted win"
    )


def test_key_folds_every_form_of_a_link():
    # Held-out misses: a link in capitals, a link glued to the word before it (raw, and as
    # `normalize` splits it), "RT@user:", HTTPURL in lower case, media links, HTML escapes.
    from tweetkit.text.normalize import TweetNormalizer

    plain = dedup_key("Great reviews & more now")
    normalize = TweetNormalizer()
    for text in [
        "GREAT REVIEWS & MORE NOW HTTPS://T.CO/IZS4SKJ9C1",
        "Great reviews & more nowhttps://t.co/IZS4SKJ9C1",
        "Great reviews & more Http://t.co/x now",
        "Great reviews & more WWW.EXAMPLE.COM now",
        "RT@bob: Great reviews & more now",
        "rt @bob: great reviews & more now httpurl",
        "Great reviews & more now pic.twitter.com/Ab12",
        "Great reviews &amp; more now",
    ]:
        assert dedup_key(text) == plain, text
        assert dedup_key(normalize(text)) == plain, text


def test_trivial_and_near_variants_dropped_first_wins(tmp_path):
    variants = [
        BASE,
        BASE.upper(),
        "RT @citynews: " + BASE + " https://t.co/xyz",
        BASE.replace(" ", "   ") + "!!!",
        BASE + " #libraries 📚",
        " ".join(BASE.split()[:-2]) + "…",
        BASE.replace("protest", "campaigning"),
    ]
    dropped = tmp_path / "dropped.jsonl"
    kept = run_dedup(variants, "--dropped", str(dropped))
    assert kept == ["t0"]
    lost = [json.loads(line) for line in dropped.read_text().splitlines()]
    assert [r["id"] for r in lost] == [f"t{i}" for i in range(1, 7)]
    assert all(r["dup_of"] == "t0" for r in lost)
    assert {r["reason"] for r in lost} == {"duplicate", "near-duplicate"}


def test_short_tweet_guard():
    short = ["good morning", "good night", "good morning!!", "morning good", "so good", "good morning all"]
    # Only the exact key twin ("good morning!!") collapses; short tweets never near-match.
    assert run_dedup(short) == ["t0", "t1", "t3", "t4", "t5"]


def test_distinct_tweets_sharing_words_survive():
    texts = [
        "i love this song so much it makes my day",
        "i hate this song so much it ruins my day",
        "the weather in paris is lovely this week",
        "the weather in london is awful this week",
    ]
    assert run_dedup(texts, "--threshold", "0.7") == ["t0", "t1", "t2", "t3"]


def test_lsh_collision_is_verified_not_dropped():
    """Force every tweet into the same LSH buckets: only real Jaccard may drop."""
    dedup = Deduplicator("near", NearConfig())
    keys = [
        dedup_key(t)
        for t in [
            "alpha beta gamma delta epsilon zeta",
            "one two three four five six seven",
            "alpha beta gamma delta epsilon zeta eta",
        ]
    ]
    prepared = dedup.prepare(keys)
    forced_bands = prepared[0][1][1]
    collided = [(h, (shingles, forced_bands)) for h, (shingles, _) in prepared]
    assert dedup.check(collided[0], "a") is None
    assert dedup.check(collided[1], "b") is None  # same buckets, different words: kept
    assert dedup.check(collided[2], "c") == ("near-duplicate", "a")  # J = 11/13


def test_exact_mode_and_filters(tmp_path):
    texts = [
        BASE,
        BASE + "!",
        BASE.replace("protest", "campaigning"),
        "RT @x: " + BASE.replace("library", "pool"),
        "too short here",
    ]
    assert run_dedup(texts, "--mode", "exact") == ["t0", "t2", "t3", "t4"]
    dropped = tmp_path / "d.jsonl"
    kept = run_dedup(texts, "--mode", "exact", "--drop-retweets", "--min-tokens", "4", "--dropped", str(dropped))
    assert kept == ["t0", "t2"]
    reasons = [json.loads(line)["reason"] for line in dropped.read_text().splitlines()]
    assert reasons == ["duplicate", "retweet", "too few tokens"]
    assert run_dedup([BASE, "a b c"], "--max-tokens", "5") == ["t1"]


def test_retweet_flags():
    records = [
        {"id": 1, "text": "original words here", "is_retweet": True},
        {"id": 2, "text": "more words", "retweeted_status": {"id": 9}},
        {"id": 3, "text": "keep me"},
    ]
    result = run_cli(["dedup", "--drop-retweets"], stdin=jsonl(*records))
    assert [r["id"] for r in result.records()] == [3]


def test_accounting_and_determinism_on_real_tweets(tmp_path):
    # The real tweets, then exact copies of every tenth one under new ids: each copy is dropped, naming its original.
    real = read_jsonl(sliced("raw_tweets/tweets.jsonl"))
    copies = [dict(row, id=f"copy-{row['id']}") for row in real[::10]]
    path = tmp_path / "tweets.jsonl"
    path.write_bytes(jsonl(*real, *copies))
    dropped = tmp_path / "dropped.jsonl"
    first = run_cli(["dedup", "--progress", "--dropped", str(dropped), str(path)])
    second = run_cli(["dedup", str(path)])
    assert first.exit_code == 0 and first.stdout == second.stdout
    kept, lost = first.records(), read_jsonl(dropped)
    assert len(kept) + len(lost) == len(real) + len(copies) == 440
    # The two pairs of equal texts in the real tweets, then the planted copies (of a dropped tweet: its first).
    first_of = {"28846316540": "28841543268", "28855685611": "28853387204"}
    planted = [row["id"].removeprefix("copy-") for row in copies]
    assert [(r["id"], r["reason"], r["dup_of"]) for r in lost] == [
        (twin, "duplicate", first) for twin, first in first_of.items()
    ] + [(f"copy-{original}", "duplicate", first_of.get(original, original)) for original in planted]
    assert f"440 read, {len(kept)} written" in first.stderr


def test_shards_partition_and_colocate_twins():
    texts = [f"tweet number {i} about topic {i % 7} with words" for i in range(300)]
    texts += [t.upper() for t in texts[:50]]  # exact-key twins
    outputs = [run_dedup(texts, "--mode", "exact", "--num-shards", "3", "--shard-index", str(k)) for k in range(3)]
    together = sorted(i for out in outputs for i in out)
    assert together == sorted(run_dedup(texts, "--mode", "exact"))
    assert len(together) == 300


def test_bad_shard_options_are_usage_errors():
    assert run_cli(["dedup", "--num-shards", "2", "--shard-index", "2"], stdin=b"").exit_code == 2
    assert run_cli(["dedup", "--num-perm", "64", "--bands", "7"], stdin=b"").exit_code == 2


def test_minhash_estimates_jaccard():
    dedup = Deduplicator("near", NearConfig(num_perm=256, bands=32))
    a = " ".join(f"w{i}" for i in range(40))
    b = " ".join(f"w{i}" for i in range(10, 50))
    (sa, sb), _ = dedup.hasher.shingle_batch([a.split(), b.split()])
    sig = dedup.hasher.signatures([sa, sb])
    estimate = float(np.mean(sig[0] == sig[1]))
    truth = len(set(sa.tolist()) & set(sb.tolist())) / len(set(sa.tolist()) | set(sb.tolist()))
    assert abs(estimate - truth) < 0.1
