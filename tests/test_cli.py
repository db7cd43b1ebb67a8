"""The ``admm-jax`` command line: help on every flag, and bad input refused before any work."""

import argparse

import pytest

from admm_jax.cli import build_parser, main


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def test_every_command_and_flag_is_documented(capsys):
    commands = _subparsers(build_parser())
    assert set(commands) == {"train", "pretrain-onenet", "evaluate", "reproduce", "solve"}
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


def test_overwrite_deletes_only_an_admm_jax_output_folder(tmp_path, capsys, monkeypatch):
    """Found by a new-user check: ``--overwrite`` deleted any folder, ``--out .`` included (the
    working directory was emptied). Now it replaces only folders an admm-jax command made."""
    from admm_jax.train.loop import OUTPUT_MARKER, prepare_output_dir

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("a user's notes")
    assert main(["evaluate", "--n-images", "2", "--out", str(mine), "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"holds notes.txt but no {OUTPUT_MARKER}" in err
    assert (mine / "notes.txt").read_text() == "a user's notes"
    # the working directory and the folders above it, even if they hold the marker
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    for folder in (work, tmp_path):
        (folder / OUTPUT_MARKER).write_text("")
    monkeypatch.chdir(work / "sub")
    (work / "sub" / "data.txt").write_text("kept")
    for out in (".", "..", str(tmp_path)):
        assert main(["evaluate", "--n-images", "2", "--out", out, "--overwrite"]) == 2
        assert "the current folder, a folder above it or your home" in capsys.readouterr().err
    assert (work / "sub" / "data.txt").read_text() == "kept"
    # a folder admm-jax made is replaced: marker written on creation, honoured by --overwrite
    run = prepare_output_dir(tmp_path / "run", resume=False)
    assert (run / OUTPUT_MARKER).exists()
    (run / "old_result.txt").write_text("stale")
    prepare_output_dir(run, resume=False, overwrite=True)
    assert sorted(p.name for p in run.iterdir()) == [OUTPUT_MARKER]


@pytest.mark.parametrize("probs, message", [
    ("0.5,x,0.2,0.1", "comma-separated numbers"),
    ("0.5,0.5", "--problem-probs must have one entry per problem"),
    ("-0.1,0.5,0.3,0.3", "--problem-probs"),
])
def test_train_bad_problem_probs_named(tmp_path, capsys, probs, message):
    out = tmp_path / "run"
    assert main(["train", f"--problem-probs={probs}", "--out", str(out), "--no-progress"]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


# --------------------------------------------------------------------------- issue #14: errors
# Every failing command: exit code 2, ONE line on stderr ("error: ..."), no traceback, and no
# output folder left behind. Data: a tiny .npz pack (decoded in milliseconds).
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from conftest import no_late_tracebacks  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pack(tmp_path_factory) -> Path:
    from admm_jax.data import save_packed

    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    save_packed(path, {"train": rng.integers(0, 256, (8, 64, 64, 3), dtype=np.uint8),
                       "test": rng.integers(0, 256, (4, 64, 64, 3), dtype=np.uint8)},
                codec="raw")
    return path


def _one_error_line(err: str, fragment: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and fragment in lines[0], lines[0]
    assert "Traceback" not in err


def _refused(capsys, argv: list[str], out: Path, fragment: str) -> None:
    assert main(argv) == 2
    _one_error_line(capsys.readouterr().err, fragment)
    assert not out.exists(), f"{out} was left behind"


@pytest.mark.parametrize("flags, message", [
    (["--batch", "0"], "--batch must be >= 1, got 0"),
    (["--iters", "0"], "--iters must be >= 1, got 0"),
    (["--lr", "0"], "--lr must be > 0, got 0.0"),
    (["--checkpoint-every", "0"], "--checkpoint-every must be >= 1, got 0"),
    (["--loss-every", "3", "--iters", "8"], "--loss-every=3 must divide --iters=8"),
    (["--steps", "0"], "--steps must be >= 1, got 0"),  # wrote untrained params/ as trained
    (["--val-images", "-1"], "--val-images must be >= 0, got -1"),
])
def test_train_errors_name_the_flags(tmp_path, capsys, flags, message):
    """Found by a new-user check: the errors named the library's arguments (batch_size, ...)."""
    out = tmp_path / "run"
    _refused(capsys, ["train", *flags, "--out", str(out), "--no-progress"], out, message)


def test_train_unknown_problem_refused_before_any_folder(tmp_path, capsys):
    out = tmp_path / "run"
    _refused(capsys, ["train", "--problems", "pid,foo", "--out", str(out), "--no-progress"],
             out, "unknown problem(s) ['foo']")
    # the corrected command is not blocked by a half-written folder
    from admm_jax.train.loop import check_output_dir

    check_output_dir(out, resume=False, overwrite=False)


def test_train_batch_not_divisible_by_two_devices_leaves_no_folder(tmp_path, pack):
    out = tmp_path / "run"
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               XLA_FLAGS=" ".join(["--xla_force_host_platform_device_count=2",
                                   *os.environ.get("XLA_FLAGS", "").split()]),
               PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    res = subprocess.run([sys.executable, "-m", "admm_jax.cli", "train", "--batch", "3",
                          "--data", str(pack), "--out", str(out), "--no-progress"],
                         env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 2, res.stderr
    _one_error_line(res.stderr, "batch size 3 does not divide evenly across 2 devices")
    assert not out.exists()


def test_pretrain_onenet_bad_width_refused_before_any_folder(tmp_path, capsys, pack):
    out = tmp_path / "onenet"
    _refused(capsys, ["pretrain-onenet", "--width", "0", "--data", str(pack), "--out",
                      str(out), "--no-progress"], out, "width must be > 0, got 0.0")


@pytest.mark.parametrize("n", ["0", "-3"])
def test_evaluate_n_images_must_be_positive(tmp_path, capsys, pack, n):
    out = tmp_path / "eval"
    _refused(capsys, ["evaluate", "--n-images", n, "--data", str(pack), "--out", str(out),
                      "--no-progress"], out, f"--n-images must be >= 1, got {n}")


def test_evaluate_missing_du_admm_folder(tmp_path, capsys, pack):
    out = tmp_path / "eval"
    _refused(capsys, ["evaluate", "--du-admm", str(tmp_path / "nowhere"), "--data", str(pack),
                      "--out", str(out), "--no-progress"], out,
             f"DU-ADMM prior folder {tmp_path / 'nowhere'} does not exist")


def test_evaluate_data_pointing_at_a_file(tmp_path, capsys):
    out, data = tmp_path / "eval", tmp_path / "notes.txt"
    data.write_text("not images")
    _refused(capsys, ["evaluate", "--data", str(data), "--out", str(out), "--no-progress"],
             out, "is a file, not a folder or an .npz pack")


@pytest.fixture(scope="module")
def saved_prior(tmp_path_factory) -> Path:
    """A real saved U-Net prior folder (untrained: only its files matter here)."""
    from admm_jax.train import preset
    from admm_jax.train.loop import build_prior, save_params

    cfg = preset("paper", architecture="unet", width=0.0625)
    _, params = build_prior(cfg)
    path = tmp_path_factory.mktemp("prior") / "params"
    save_params(path, params, cfg)
    return path


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_evaluate_corrupt_weights(tmp_path, capsys, pack, saved_prior):
    bad = _copy(saved_prior, tmp_path / "bad")
    data_files = [f for f in (bad / "state").rglob("*") if f.is_file() and f.parent.name == "d"]
    assert data_files
    for f in data_files:
        f.write_bytes(b"\x8b not an array chunk" * 8)
    out = tmp_path / "eval"
    with no_late_tracebacks():
        _refused(capsys, ["evaluate", "--du-admm", str(bad), "--data", str(pack), "--out",
                          str(out), "--no-progress"], out, "DU-ADMM prior weights")


def test_evaluate_weights_of_another_width(tmp_path, capsys, pack, saved_prior):
    import json

    other = _copy(saved_prior, tmp_path / "other")
    cfg = json.loads((other / "config.json").read_text())
    cfg["width"] = 0.125
    (other / "config.json").write_text(json.dumps(cfg))
    out = tmp_path / "eval"
    _refused(capsys, ["evaluate", "--du-admm", str(other), "--data", str(pack), "--out",
                      str(out), "--no-progress"], out, "array(s) of another shape")


def test_evaluate_names_weights_given_as_the_other_method(tmp_path, capsys, pack,
                                                          saved_prior):
    """Found by a new-user check: a DU-ADMM prior given as --onenet listed "unknown
    OneNetConfig keys" (mangled into flag names), and the reverse "unknown TrainConfig keys"."""
    import json

    out = tmp_path / "eval"
    _refused(capsys, ["evaluate", "--onenet", str(saved_prior), "--data", str(pack), "--out",
                      str(out), "--no-progress"], out,
             "holds a DU-ADMM prior, not a OneNet projector; give it as --du-admm")
    onenet = tmp_path / "onenet"
    onenet.mkdir()
    (onenet / "config.json").write_text(json.dumps({"width": 0.0625, "norm": "instance",
                                                    "clamp": 10.0, "steps": 2}))
    _refused(capsys, ["evaluate", "--du-admm", str(onenet), "--data", str(pack), "--out",
                      str(out), "--no-progress"], out,
             "holds a OneNet projector, not a DU-ADMM prior; give it as --onenet")


def test_train_resume_from_a_corrupt_checkpoint(tmp_path, capsys, pack):
    from admm_jax.train import Checkpointer, init_train_state, make_optimizer, preset
    from admm_jax.train.loop import build_prior

    args = ["--architecture", "unet", "--width", "0.0625", "--batch", "2", "--steps", "2"]
    cfg = preset("paper", architecture="unet", width=0.0625, batch_size=2, steps=2)
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(cfg.to_json())
    _, params = build_prior(cfg)
    tx = make_optimizer(cfg)
    with Checkpointer(run / "checkpoints") as ckpt:
        ckpt.save(1, init_train_state(params, tx), {"step": 1, "data": {}, "seed": 0})
    for f in (run / "checkpoints" / "1").rglob("*"):
        if f.is_file() and f.parent.name == "d":
            f.write_bytes(b"garbage" * 16)
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    with no_late_tracebacks():
        assert main(["train", *args, "--data", str(pack), "--out", str(run), "--resume",
                     "--no-progress"]) == 2
    _one_error_line(capsys.readouterr().err, "could not be restored")
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before


def test_flat_folder_too_small_for_a_hashed_test_split(tmp_path, capsys):
    from PIL import Image

    from admm_jax.data import split_files

    flat = tmp_path / "flat"
    flat.mkdir()
    candidates = [flat / f"img{i:03d}.png" for i in range(100)]
    train_part = split_files(candidates, [0.8, 0.1, 0.1], method="hash", root=flat)[0]
    for f in train_part[:8]:  # 8 images that all hash into 'train': 'test' is empty
        Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(f)
    out = tmp_path / "eval"
    _refused(capsys, ["evaluate", "--data", str(flat), "--out", str(out), "--no-progress"],
             out, "has no train/val/test sub-folders, so its 8 image(s) are split")
    # the message says how to lay the folder out and how many images a flat one needs
    assert main(["evaluate", "--data", str(flat), "--out", str(out), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "test/ for evaluate" in err and "at least about 44 images" in err


def test_train_without_a_test_split_needs_val_images_0(tmp_path, capsys):
    """Found by a new-user check: a folder of training images alone could not be trained on
    (validation always read the test split); --val-images 0 trains without validation."""
    from PIL import Image

    data = tmp_path / "mine" / "train"
    data.mkdir(parents=True)
    for i in range(4):
        Image.fromarray(np.full((64, 64, 3), 40 * i, np.uint8)).save(data / f"{i}.png")
    args = ["train", "--data", str(data.parent), "--architecture", "unet", "--width", "0.0625",
            "--iters", "2", "--steps", "1", "--batch", "2", "--no-progress"]
    out = tmp_path / "run"
    _refused(capsys, [*args, "--out", str(out)], out, "train without it with --val-images 0")
    assert main([*args, "--val-images", "0", "--out", str(out)]) == 0
    assert "no validation (--val-images 0)" in capsys.readouterr().out
    assert (out / "params").is_dir() and not (out / "validation.jsonl").exists()


@pytest.mark.parametrize("flags, message", [
    (["--noise", "2", "--simulate"], "--noise must be in [0, 1]"),
    (["--noise", "0.05"], "the 'natural' prior has a fixed rho per problem and would ignore it"),
    (["--seed", "-1", "--simulate"], "--seed must be >= 0, got -1"),
    (["--mask", "missing.png"], "mask missing.png does not exist"),
])
def test_solve_refusals_found_by_a_new_user(tmp_path, capsys, flags, message):
    from PIL import Image

    photo = tmp_path / "photo.png"
    Image.fromarray(np.full((16, 16, 3), 100, np.uint8)).save(photo)
    out = tmp_path / "out"
    _refused(capsys, ["solve", str(photo), "--problem", "pid", *flags, "--out", str(out),
                      "--no-progress"], out, message)
    _refused(capsys, ["solve", str(tmp_path), "--problem", "sr", "--out", str(out),
                      "--no-progress"], out, f"input image {tmp_path} is a folder")


def test_evaluate_given_a_shipped_prior_name_points_to_solve(tmp_path, capsys):
    out = tmp_path / "eval"
    _refused(capsys, ["evaluate", "--du-admm", "natural", "--out", str(out), "--no-progress"],
             out, "'natural' is a shipped prior: try it with 'admm-jax solve IMAGES --prior "
                  "natural --simulate'")


def test_ctrl_c_says_how_to_continue(tmp_path, capsys, monkeypatch, pack):
    """Found by a new-user check: an interrupted evaluate printed only "interrupted"."""
    import admm_jax.evaluate as evaluate

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(evaluate, "run_evaluation", interrupted)
    out = tmp_path / "eval"
    assert main(["evaluate", "--data", str(pack), "--n-images", "2", "--out", str(out),
                 "--no-progress"]) == 130
    err = capsys.readouterr().err.strip()
    assert err == (f"interrupted; what was done is kept in {out}: rerun the same command "
                   f"with --resume to continue"), err


def test_usage_errors_are_one_line_too(tmp_path, capsys):
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as info:
        main(["train", "--steps", "x", "--out", str(out)])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "invalid int value: 'x'" in err and "--help" in err
    assert not out.exists()


def test_debug_flag_shows_the_traceback(tmp_path, capsys, pack):
    out = tmp_path / "eval"
    for argv in (["--debug", "evaluate"], ["evaluate", "--debug"]):
        assert main(argv + ["--n-images", "0", "--data", str(pack), "--out", str(out)]) == 2
        err = capsys.readouterr().err
        assert "Traceback (most recent call last)" in err
        assert err.rstrip().splitlines()[-1] == "error: --n-images must be >= 1, got 0."
    assert not out.exists()


def test_a_packed_file_without_the_split_is_a_user_error_not_a_bug(tmp_path, capsys):
    """Found by a new-user check: a pack with a train split only, given to evaluate, gave
    "unexpected KeyError ... (a bug: rerun with --debug)"."""
    from admm_jax.data import save_packed

    pack = save_packed(tmp_path / "trainonly.npz",
                       {"train": np.zeros((4, 64, 64, 3), np.uint8)}, codec="raw")
    out = tmp_path / "eval"
    _refused(capsys, ["evaluate", "--data", str(pack), "--out", str(out), "--no-progress"],
             out, "split 'test' not in packed file")


def test_an_unexpected_exception_is_one_line_naming_it(tmp_path, capsys, monkeypatch, pack):
    import admm_jax.cli as cli

    def broken(*args, **kwargs):
        raise RuntimeError("something\ninside broke")

    monkeypatch.setattr(cli, "_load", broken)
    out = tmp_path / "eval"
    _refused(capsys, ["evaluate", "--data", str(pack), "--out", str(out), "--no-progress"],
             out, "unexpected RuntimeError: something inside broke (a bug: rerun with --debug")


def test_train_records_its_command_and_each_resume_and_export_carries_it(tmp_path, pack,
                                                                          monkeypatch):
    """``provenance.jsonl``: one record per call (start step, command line, the calling
    script's recipe); ``export_weights.py`` copies it next to the weights, and
    ``export_pretrained.py`` reads the command from it instead of guessing."""
    import importlib.util
    import json

    run, args = tmp_path / "run", ["train", "--architecture", "unet", "--width", "0.0625",
                                   "--batch", "2", "--iters", "2", "--val-every", "0",
                                   "--data", str(pack), "--out", str(tmp_path / "run"),
                                   "--no-progress"]
    monkeypatch.setenv("ADMM_JAX_RECIPE", "DATA=tiny experiments/some_recipe.sh")
    assert main([*args, "--steps", "1"]) == 0
    monkeypatch.delenv("ADMM_JAX_RECIPE")
    assert main([*args, "--steps", "2", "--resume"]) == 0
    records = [json.loads(line) for line in (run / "provenance.jsonl").read_text().splitlines()]
    assert [r["start_step"] for r in records] == [0, 1]
    assert records[0]["argv"] == ["admm-jax", *args, "--steps", "1"]
    assert records[1]["argv"][-1] == "--resume"
    assert [r["recipe"] for r in records] == ["DATA=tiny experiments/some_recipe.sh", None]

    dst = tmp_path / "exported"
    res = subprocess.run([sys.executable, str(ROOT / "experiments" / "export_weights.py"),
                          str(run / "params"), str(dst), "--dtype", "float32"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    assert (dst / "provenance.jsonl").read_text() == (run / "provenance.jsonl").read_text()
    spec = importlib.util.spec_from_file_location(
        "export_pretrained", ROOT / "experiments" / "export_pretrained.py")
    export = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(export)
    assert export._recorded_command(dst) == (
        "DATA=tiny experiments/some_recipe.sh (" + " ".join(records[0]["argv"]) + ")")
    assert export._recorded_command(tmp_path) is None  # runs from before the record
    (tmp_path / "provenance.jsonl").write_text("")
    assert export._recorded_command(tmp_path) is None
