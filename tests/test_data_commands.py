"""The streaming I/O contract, checked for every data command."""

import gzip
import json

import pytest
from conftest import jsonl, run_cli, run_subprocess

# (command, extra args) for every data command; each must pass every test here.
DATA_COMMANDS = [
    ("normalize", []),
    ("langid", []),
    ("dedup", []),
    ("split", ["--tag-only"]),
]
WITH_WORKERS = {"normalize", "langid"}

GOOD = {"id": 1, "text": "I cannot wait for the weekend", "extra": {"nested": [1, 2]}}
GOOD2 = {"id": 2, "text": "Rain again today, the garden is happy though"}
BAD_LINES = [
    (b"this is not json\n", "invalid JSON"),
    (b"[1, 2, 3]\n", "not a JSON object"),
    (b'{"id": 2, "body": "no text here"}\n', "missing field 'text'"),
    (b'{"id": 3, "text": 42}\n', "field 'text' is not a string"),
    (b'{"id": 4, "text": "caf\xe9"}\n', "invalid UTF-8"),
]


@pytest.fixture(params=DATA_COMMANDS, ids=[c for c, _ in DATA_COMMANDS])
def command(request):
    return request.param


@pytest.mark.parametrize("bad,reason", BAD_LINES, ids=[r for _, r in BAD_LINES])
def test_bad_line_fails_with_file_and_line(command, tmp_path, bad, reason):
    name, extra = command
    path = tmp_path / "in.jsonl"
    path.write_bytes(jsonl(GOOD) + bad + jsonl(GOOD2))
    result = run_cli([name, *extra, str(path)])
    assert result.exit_code == 1
    assert f"tweetkit {name}: {path}:2: {reason}" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_bad_lines_skipped_counted_and_rejected(command, tmp_path):
    name, extra = command
    bad_bytes = b"".join(bad for bad, _ in BAD_LINES)
    rejects = tmp_path / "rejects.jsonl"
    result = run_cli(
        [name, *extra, "--on-error", "skip", "--rejects", str(rejects)],
        stdin=jsonl(GOOD) + bad_bytes + jsonl(GOOD2),
    )
    assert result.exit_code == 0, result.stderr
    assert len(result.records()) == 2
    assert rejects.read_bytes() == bad_bytes  # byte for byte, in order
    assert "7 read, 2 written, 5 rejected" in result.stderr
    for _, reason in BAD_LINES:
        assert f"{reason}: 1" in result.stderr


def test_other_fields_and_order_kept(command, tmp_path):
    name, extra = command
    records = [dict(GOOD, id=i, text=f"tweet number {i} is here") for i in range(1200)]
    result = run_cli([name, *extra], stdin=jsonl(*records))
    assert result.exit_code == 0, result.stderr
    out = result.records()
    assert [r["id"] for r in out] == list(range(1200))
    assert all(r["extra"] == {"nested": [1, 2]} for r in out)


def test_gzip_files_field_and_output_file(command, tmp_path):
    name, extra = command
    gz = tmp_path / "in.jsonl.gz"
    with gzip.open(gz, "wb") as handle:
        handle.write(jsonl({"body": "hello world @someone"}))
    plain = tmp_path / "in2.jsonl"
    plain.write_bytes(jsonl({"body": "second file here"}))
    out = tmp_path / "out.jsonl"
    result = run_cli([name, *extra, "--field", "body", "-o", str(out), str(gz), str(plain)])
    assert result.exit_code == 0, result.stderr
    assert result.stdout == b""
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 2 and all("body" in r for r in rows)


def test_empty_input_and_blank_lines(command):
    name, extra = command
    empty = run_cli([name, *extra], stdin=b"")
    assert empty.exit_code == 0 and empty.stdout == b"" and empty.stderr == ""
    result = run_cli([name, *extra], stdin=b"\n" + jsonl(GOOD) + b"   \n")
    assert result.exit_code == 0 and len(result.records()) == 1


def test_usage_errors_exit_2(command, tmp_path):
    name, extra = command
    assert run_cli([name, "--no-such-flag"]).exit_code == 2
    assert run_cli([name, "--rejects", str(tmp_path / "r")]).exit_code == 2  # needs --on-error skip
    missing = run_cli([name, *extra, str(tmp_path / "missing.jsonl")])
    assert missing.exit_code == 1 and "missing.jsonl" in missing.stderr


def test_summary_only_when_asked(command):
    name, extra = command
    assert run_cli([name, *extra], stdin=jsonl(GOOD)).stderr == ""
    assert "1 read, 1 written" in run_cli([name, *extra, "--progress"], stdin=jsonl(GOOD)).stderr
    assert run_cli([name, *extra, "--progress", "-q"], stdin=jsonl(GOOD)).stderr == ""


def test_real_pipe_to_head_is_quiet(command):
    """`tweetkit X | head -1` in a real shell pipe: no traceback, head gets its line."""
    import subprocess
    import sys

    from conftest import ROOT

    name, extra = command
    lines = jsonl(*[dict(GOOD, id=i, text=f"tweet number {i} is here") for i in range(50000)])
    proc = subprocess.run(
        [
            "bash",
            "-c",
            f"{sys.executable} -m tweetkit {name} {' '.join(extra)} | head -1; "
            'echo "tweetkit exit ${PIPESTATUS[0]}" >&2',
        ],
        input=lines,
        capture_output=True,
        cwd=ROOT,
    )
    # tweetkit's own status, not head's: 141, as a process ended by SIGPIPE.
    assert b"tweetkit exit 141" in proc.stderr, proc.stderr
    assert len(proc.stdout.splitlines()) == 1
    assert b"Traceback" not in proc.stderr and b"Error" not in proc.stderr, proc.stderr


@pytest.mark.parametrize("name", sorted(WITH_WORKERS))  # dedup and split are sequential (stateful)
def test_workers_keep_order_and_output(name):
    extra = dict(DATA_COMMANDS)[name]
    records = [dict(GOOD, id=i, text=f"@user{i} tweet {i} http://t.co/{i} 😂") for i in range(3000)]
    one = run_cli([name, *extra], stdin=jsonl(*records))
    two = run_cli([name, *extra, "--workers", "2"], stdin=jsonl(*records))
    assert one.exit_code == 0 and two.exit_code == 0
    assert one.stdout == two.stdout


def test_help_does_not_import_torch(command):
    name, _ = command
    code = (
        "import sys; from tweetkit.cli import main\n"
        f"try:\n    main([{name!r}, '--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
        "assert 'transformers' not in sys.modules\n"
    )
    import subprocess
    import sys

    from conftest import ROOT

    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"Examples:" in proc.stdout


def test_python_dash_m_entry_point():
    proc = run_subprocess(["normalize"], stdin=jsonl({"text": "hi @bob"}))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["text"] == "hi @USER"
