import json
import subprocess
import sys

import pytest

from lib.cli import main


def run(*args):
    return subprocess.run(
        [sys.executable, "-m", "lib.train", *args], capture_output=True, text=True, timeout=300
    )


def test_help_explains_every_flag():
    result = run("--help")
    assert result.returncode == 0
    for flag in (
        "--model",
        "--data",
        "--preset",
        "--steps",
        "--out",
        "--resume",
        "--device",
        "--compile",
    ):
        assert flag in result.stdout


def test_train_then_resume(tmp_path):
    common = [
        "--model",
        "transformer",
        "--preset",
        "small",
        "--out",
        str(tmp_path),
        "--no-progress",
        "--lr-decay-steps",  # a fixed horizon: the run may grow from 3 steps to 5
        "5",
    ]
    first = run(*common, "--steps", "3")
    assert first.returncode == 0, first.stderr
    resumed = run(*common, "--steps", "5", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if "loss" in r] == [1, 2, 3, 4, 5]
    assert json.loads((tmp_path / "checkpoint.json").read_text())["step"] == 5


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "nope"], "invalid choice: 'nope'"),
        (["--model", "transformer", "--steps", "x"], "invalid int value"),
        (["--model", "transformer", "--data", "klingon"], "trains on number_words, not 'klingon'"),
        (["--model", "transformer", "--preset", "huge"], "unknown preset 'huge'"),
        (["--model", "transformer", "--resume"], "no checkpoint in"),
        (["--model", "transformer", "--steps", "0"], "steps must be at least 1"),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, capsys, args, message):
    argv = ["--steps", "2", "--out", str(tmp_path / "run"), "--no-progress", *args]
    try:
        code = main(argv)
    except SystemExit as exit:  # argparse's own errors
        code = exit.code
    assert code in (1, 2)
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_corrupt_checkpoint_is_one_clear_line(tmp_path):
    common = [
        "--model",
        "transformer",
        "--preset",
        "small",
        "--out",
        str(tmp_path),
        "--no-progress",
    ]
    assert run(*common, "--steps", "1").returncode == 0
    (tmp_path / "checkpoint.json").write_text("garbage")
    result = run(*common, "--steps", "2", "--resume")
    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    assert "is not a checkpoint pointer this runner wrote" in result.stderr
