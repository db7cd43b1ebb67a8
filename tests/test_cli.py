"""The ``admm-jax`` command line: help on every flag, and bad input refused before any work."""

import argparse

import pytest

from admm_jax.cli import build_parser, main


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_command_and_flag_is_documented(capsys):
    commands = _subparsers(build_parser())
    assert set(commands) == {"train", "pretrain-onenet", "evaluate", "reproduce"}
    for name, sub in commands.items():
        undocumented = [a.option_strings for a in sub._actions if a.option_strings and not a.help]
        assert not undocumented, f"{name}: flags without help: {undocumented}"
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0
        assert f"usage: admm-jax {name}" in capsys.readouterr().out


def test_evaluate_with_nothing_to_evaluate_is_refused_before_creating_output(tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["evaluate", "--no-wavelet", "--out", str(out)]) == 2
    assert "nothing to evaluate" in capsys.readouterr().err
    assert not out.exists()


def test_evaluate_unknown_problem_is_refused_before_creating_output(tmp_path, capsys):
    out = tmp_path / "eval"
    assert main(["evaluate", "--problems", "pid,inpaint", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "unknown problem(s) ['inpaint']" in err and "pid" in err
    assert not out.exists()


def test_evaluate_refuses_to_overwrite_a_filled_output_folder(tmp_path, capsys):
    out = tmp_path / "eval"
    out.mkdir()
    (out / "table.md").write_text("a user's earlier table")
    assert main(["evaluate", "--n-images", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "--overwrite" in err
    assert (out / "table.md").read_text() == "a user's earlier table"


@pytest.mark.parametrize("probs, message", [
    ("0.5,x,0.2,0.1", "comma-separated numbers"),
    ("0.5,0.5", "problem_probs"),
    ("-0.1,0.5,0.3,0.3", "problem_probs"),
])
def test_train_bad_problem_probs_named(tmp_path, capsys, probs, message):
    out = tmp_path / "run"
    assert main(["train", f"--problem-probs={probs}", "--out", str(out), "--no-progress"]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()
