"""split (stable, duplicates together) and stats."""

import json

from conftest import jsonl, read_jsonl, run_cli, sliced

from tweetkit.metrics import percentile


def tagged(records, *args):
    result = run_cli(["split", "--tag-only", *args], stdin=jsonl(*records))
    assert result.exit_code == 0, result.stderr
    return {r["id"]: r["split"] for r in result.records()}


def test_split_is_stable_and_independent_of_order_and_corpus():
    records = [{"id": i, "text": f"tweet {i} with some words"} for i in range(2000)]
    first = tagged(records)
    assert first == tagged(list(reversed(records)))
    assert {i: first[i] for i in range(100)} == tagged(records[:100])
    assert tagged(records, "--seed", "1") != first
    shares = {
        name: sum(1 for s in first.values() if s == name) / len(first) for name in ("train", "validation", "test")
    }
    assert abs(shares["train"] - 0.8) < 0.04 and abs(shares["test"] - 0.1) < 0.03


def test_duplicates_land_in_the_same_split():
    base = [{"id": f"b{i}", "text": f"Breaking: story number {i} today"} for i in range(500)]
    variants = [
        {"id": f"v{i}", "text": f"RT @news: BREAKING story number {i} today!! https://t.co/{i}"} for i in range(500)
    ]
    splits = tagged(base + variants)
    assert all(splits[f"b{i}"] == splits[f"v{i}"] for i in range(500))


def test_split_files_and_ratios(tmp_path):
    path = sliced("raw_tweets/tweets.jsonl")
    result = run_cli(["split", "--ratios", "train=9,test=1", str(path), "-o", str(tmp_path / "corpus")])
    assert result.exit_code == 0, result.stderr
    train = read_jsonl(tmp_path / "corpus.train.jsonl")
    test = read_jsonl(tmp_path / "corpus.test.jsonl")
    assert len(train) + len(test) == len(read_jsonl(path))
    assert 0.05 < len(test) / (len(train) + len(test)) < 0.15
    assert run_cli(["split", str(path)]).exit_code == 2  # needs -o PREFIX
    assert run_cli(["split", "--ratios", "train=x", str(path), "-o", str(tmp_path / "p")]).exit_code == 2


def test_percentile_nearest_rank():
    values = list(range(1, 1001))
    assert percentile(values, 50) == 500 and percentile(values, 99.9) == 999 and percentile(values, 100) == 1000
    assert percentile([], 50) == 0


def test_stats_json_and_table():
    records = [
        {"text": "@USER hello there HTTPURL", "lang": "en"},
        {"text": "hola amigos :face_with_tears_of_joy:", "lang": "es"},
        {"text": "one two three four five six", "lang": "en"},
    ]
    result = run_cli(["stats"], stdin=jsonl(*records))
    assert result.exit_code == 0, result.stderr
    stats = json.loads(result.stdout)
    assert stats["tweets"] == 3
    assert stats["word_tokens"]["p100"] == 6 and stats["max_length_for_99.9%"] == 6
    assert stats["languages"] == {"en": 2, "es": 1}
    assert stats["share_with_mention"] == round(1 / 3, 4) and stats["share_with_emoji"] == round(1 / 3, 4)
    assert "max length covering 99.9%" in result.stderr


def test_stats_bad_input_and_skip():
    data = jsonl({"text": "fine"}) + b"broken\n"
    failed = run_cli(["stats"], stdin=data)
    assert failed.exit_code == 1 and "tweetkit stats: <stdin>:2: invalid JSON" in failed.stderr
    skipped = run_cli(["stats", "--on-error", "skip", "-q"], stdin=data)
    assert skipped.exit_code == 0 and json.loads(skipped.stdout)["tweets"] == 1
