"""embed (masked mean of the last hidden states) and plot --embeddings (t-SNE panels, PNG and SVG)."""

import pytest
import torch
from conftest import jsonl, make_micro_model, make_tokenizer, minilm, read_jsonl, run_cli, sliced


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("embed")
    tweets = read_jsonl(sliced("tweeteval/irony/train.jsonl"), 300)
    (root / "labelled.jsonl").write_bytes(jsonl(*tweets[:120]))
    make_tokenizer(root, [r["text"] for r in tweets], 600)
    make_micro_model(root)
    return root


def embed(model, path, out, *args):
    result = run_cli(["embed", "--model", str(model), str(path), "-o", str(out), *args])
    assert result.exit_code == 0, result.stderr
    return read_jsonl(out)


def test_embed_is_the_masked_mean_of_the_last_hidden_states(data, tmp_path):
    from transformers import AutoModel, AutoTokenizer

    records = embed(minilm(), data / "labelled.jsonl", tmp_path / "e.jsonl", "--batch-size", "16")
    source = read_jsonl(data / "labelled.jsonl")
    assert [{k: v for k, v in r.items() if k != "embedding"} for r in records] == source  # order and fields kept
    assert all(len(r["embedding"]) == 384 for r in records)
    # One tweet alone, no padding at all, pooled by hand: equal to its vector from a padded batch.
    tokenizer, model = AutoTokenizer.from_pretrained(minilm()), AutoModel.from_pretrained(minilm()).eval()
    for i in (0, 7, 50):
        ids = tokenizer(source[i]["text"], truncation=True, max_length=128)["input_ids"]
        with torch.no_grad():
            alone = model(input_ids=torch.tensor([ids])).last_hidden_state[0].mean(0)
        assert torch.allclose(torch.tensor(records[i]["embedding"]), alone, atol=2e-5)


def test_plot_embeddings_panels_are_deterministic(data, tmp_path):
    before = embed(data / "mlm", data / "labelled.jsonl", tmp_path / "before.jsonl")
    after = embed(minilm(), data / "labelled.jsonl", tmp_path / "after.jsonl")
    assert len(before[0]["embedding"]) == 32 and len(after[0]["embedding"]) == 384  # any width, one panel each
    args = ["plot", "--embeddings", str(tmp_path / "before.jsonl"), str(tmp_path / "after.jsonl"), "--label", "micro",
            "--label", "MiniLM", "--max-points", "80", "--title", "irony"]  # fmt: skip
    first = run_cli([*args, "-o", str(tmp_path / "one.png")])
    assert first.exit_code == 0, first.stderr
    second = run_cli([*args, "-o", str(tmp_path / "two.svg")])
    assert second.exit_code == 0, second.stderr
    for extension in ("png", "svg"):
        one, two = (tmp_path / f"one.{extension}").read_bytes(), (tmp_path / f"two.{extension}").read_bytes()
        assert one == two and len(one) > 5000  # the same picture, byte for byte
    assert (tmp_path / "one.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "one.svg").read_text().count("<svg") == 1
    panels = first.records()
    assert [p["panel"] for p in panels] == ["micro", "MiniLM"] and all(p["points"] == 80 for p in panels)
    assert all(-1 <= p["silhouette_cosine"] <= 1 for p in panels) and panels == second.records()
    # Another seed samples other records.
    other = run_cli([*args, "--seed", "1", "-o", str(tmp_path / "three.png")])
    assert other.exit_code == 0 and (tmp_path / "three.png").read_bytes() != (tmp_path / "one.png").read_bytes()


def test_sample_positions():
    from tweetkit.plotting import sample_positions

    assert sample_positions(5, 10, 0) == [0, 1, 2, 3, 4] == sample_positions(5, 0, 3)
    chosen = sample_positions(1000, 50, 7)
    assert chosen == sorted(set(chosen)) and len(chosen) == 50 and chosen == sample_positions(1000, 50, 7)
    assert chosen != sample_positions(1000, 50, 8)


def test_embedding_errors_are_one_line(data, tmp_path):
    embed(data / "mlm", data / "labelled.jsonl", tmp_path / "a.jsonl")
    (tmp_path / "short.jsonl").write_text("".join(open(tmp_path / "a.jsonl").readlines()[:10]))
    differ = run_cli(["plot", "--embeddings", str(tmp_path / "a.jsonl"), str(tmp_path / "short.jsonl"), "-o",
                      str(tmp_path / "x.png")])  # fmt: skip
    assert differ.exit_code == 1 and "embed the same file" in differ.stderr and "Traceback" not in differ.stderr
    plain = run_cli(["plot", "--embeddings", str(data / "labelled.jsonl"), "-o", str(tmp_path / "y.png")])
    assert plain.exit_code == 1 and "labelled.jsonl:1" in plain.stderr and "run tweetkit embed" in plain.stderr
    missing = run_cli(["embed", "--model", str(tmp_path / "nope"), str(data / "labelled.jsonl")])
    assert missing.exit_code == 1 and "nope" in missing.stderr and missing.stdout == b""
    for path in ("x.png", "x.svg", "y.png", "y.svg"):
        assert not (tmp_path / path).exists()
