"""Start-up: a data command, or `predict` with a linear model, loads no heavy library it
does not use; shell pipelines and cron jobs over many small files pay every import per
process.  (Imports are checked rather than seconds, which depend on the machine's load.)"""

import json
import subprocess
import sys

import pytest
from conftest import ROOT, SUBPROCESS_ENV, run_cli

# Runs one command in a fresh interpreter, then reports which of the heavy packages it loaded.
PROBE = """
import json, sys
from tweetkit.cli import main
try:
    main(sys.argv[2:])
except SystemExit as exc:
    assert not exc.code, exc.code
loaded = {name.split(".")[0] for name in sys.modules}
heavy = sorted(loaded & {"torch", "transformers", "scipy", "sklearn", "pandas"})
heavy += ["all of nltk"] if "nltk.metrics" in sys.modules else []
open(sys.argv[1], "w").write(json.dumps(heavy))
"""
ONE_TWEET = b'{"text": "hi @bob http://t.co/x \\ud83d\\ude00 #tweets"}\n'


def heavy_imports(tmp_path, *argv) -> list[str]:
    report = tmp_path / "heavy.json"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(report), *argv], input=ONE_TWEET, capture_output=True, env=SUBPROCESS_ENV
    )
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    assert done.stdout or list(tmp_path.glob("part*"))  # the command's output came (split's in files)
    return json.loads(report.read_text())


@pytest.mark.parametrize(
    "argv", [["normalize"], ["langid"], ["dedup"], ["split", "-o", "{tmp}/part"], ["stats"]], ids=lambda a: a[0]
)
def test_data_commands_import_no_heavy_library(tmp_path, argv):
    assert heavy_imports(tmp_path, *[a.replace("{tmp}", str(tmp_path)) for a in argv]) == []


def test_predict_with_a_linear_model_does_not_import_torch(tmp_path):
    trained = run_cli(["finetune", "--model", "linear", "--task", "classification", "-q",
                       "--train", str(ROOT / "examples" / "sentiment_train.jsonl"),
                       "-o", str(tmp_path / "m")])  # fmt: skip
    assert trained.exit_code == 0, trained.stderr
    assert heavy_imports(tmp_path, "predict", "--model", str(tmp_path / "m")) == ["scipy", "sklearn"]
