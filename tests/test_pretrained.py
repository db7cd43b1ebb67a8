"""Pretrained priors shipped in the package, ``admm_jax.restore`` and ``admm-jax solve``."""

from __future__ import annotations

import csv
import importlib.resources
import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

import admm_jax as aj
from admm_jax.cli import main as cli_main
from admm_jax.data import bundled_dataset
from admm_jax.data.bundled import bundled_photo
from admm_jax.pretrained_priors import load_pretrained_files, pretrained_names
from admm_jax.restore import Degradation, lift_to_rgb, restore, simulate

ROOT = Path(__file__).resolve().parents[1]
NAMES = ("faces", "general", "general_natural", "natural")
# the family-trained priors: their fine-tuning stages' operator mixes (first stage first) and
# the long-run rule and iteration count chosen on training images (RESULTS.md §7.0, §7.0b)
GENERAL_STAGES = {"general": ["families+paper"] * 2,  # RESULTS.md section 7.0f
                  "general_natural": ["families+paper"] * 2}
GENERAL_LONG_RUNS = {"general": ("cycle", 48), "general_natural": ("cycle", 48)}
GENERAL_STARTS = {"general": ("unrolled", "problems", 1500),
                  "general_natural": ("denoise", "problems", 7000)}
# PSNRs are recomputed through 8 float32 unrolled iterations of a 167k-parameter network; other
# CPUs (vector width, thread count) round differently, which moves a PSNR by ~1e-4 dB. 0.02 dB
# is far above that and far below any change of the weights or the solver that matters.
PSNR_ATOL = 0.02


def reproduce_reference(prior) -> dict[str, list[float]]:
    """The per-image PSNRs that experiments/export_pretrained.py committed in <name>.json."""
    x = bundled_dataset("test", n=4).astype(np.float32) / 255.0
    out = {}
    for name in prior.metadata["reference"]["psnr"]:
        vals = []
        for i, img in enumerate(x):
            op, y, xi = simulate(Degradation(name), jax.random.PRNGKey(i), img)
            z, _ = restore(prior, op, y, problem=name)
            vals.append(float(aj.psnr(z, xi)))
        out[name] = vals
    return out


def test_shipped_priors_are_listed_and_described():
    assert set(NAMES) <= set(pretrained_names())
    for name in NAMES:
        p = aj.pretrained(name)
        md = p.metadata
        assert p.num_params == md["num_params"] == 167_235  # width 1/4 U-Net
        assert p.num_iters == 8 and set(p.rho) >= {"pid", "bi", "si", "sr"}
        assert md["training_data"]["licence"] and md["training_data"]["name"]
        if p.rho_rule is None:  # per-problem rho; deblurring's calibrated after training
            assert "deblur" in p.rho and md["exported"]["date"]
            assert md["training"]["steps"] == 3000
        else:  # a general prior: a learned 8-step rho_t(sigma), fine-tuned in stages
            assert md["rho_rule"]["formula"] and p.rho_schedule(0.05).shape == (8,)
            assert md["exported"]["date"] and md["training"]["steps"] == 800
            # each fine-tuning stage with its mix and committed log, the last trained at
            # T = 32 (the 8-step schedule cycled); a long-run rule chosen on training images
            stages = md["training"]["stages"]
            assert [s["operator_mix"] for s in stages] == GENERAL_STAGES[name]
            assert (stages[-1]["unrolled_iters"], stages[-1]["rho_period"]) == (32, 8)
            assert "train_general_prior_long.sh" in stages[-1]["command"]
            assert (p.long_run_rule, md["long_runs"]["num_iters"]) == GENERAL_LONG_RUNS[name]
            assert "training images" in md["long_runs"]["chosen_on"]
            for stage in md["training"]["stages"]:
                if (ROOT / "results").exists():
                    assert (ROOT / stage["weights"] / "metrics.csv").exists()
            # the weights the first stage started from: both begin at the PnP denoiser, which
            # `general` first trained 1,500 steps on the paper's problems (RESULTS.md §7.0f)
            start = md["training"]["start"]
            assert (start["objective"], start["operator_mix"], start["steps"]) \
                == GENERAL_STARTS[name]
            if name == "general":
                assert start["init_weights"] == "results/weights/utkface_denoiser_unet_w0.25"
                assert "train_general_prior_dnspec.sh" in start["command"]
            else:
                assert "train_denoiser.sh" in start["command"]
            if (ROOT / "results").exists():
                assert (ROOT / start["weights"] / "metrics.csv").exists()
        log = ROOT / md["training"]["log"]
        if log.parent.exists():  # the repository (not an installed wheel): the log is committed
            assert log.exists()


@pytest.mark.parametrize("name", NAMES)
def test_shipped_prior_reproduces_committed_per_image_psnr(name):
    prior = aj.pretrained(name)
    ref = prior.metadata["reference"]
    got = reproduce_reference(prior)
    for problem, want in ref["psnr"].items():
        np.testing.assert_allclose(got[problem], want, atol=PSNR_ATOL, err_msg=problem)
        # and the prior really restores: above the start on every image of every problem
        assert np.all(np.asarray(want) > np.asarray(ref["psnr_start"][problem])), problem


def test_pretrained_errors(tmp_path):
    with pytest.raises(ValueError, match=r"unknown pretrained prior 'nope'; available: .*natural"):
        aj.pretrained("nope")
    src = importlib.resources.files("admm_jax.pretrained_priors") / "weights"
    meta = json.loads((src / "natural.json").read_text())
    (tmp_path / "m.json").write_text(json.dumps(meta))
    (tmp_path / "bad.npz").write_bytes(b"not a zip file")
    with pytest.raises(ValueError, match="unreadable weights"):
        load_pretrained_files(tmp_path / "bad.npz", tmp_path / "m.json", "x")
    np.savez(tmp_path / "short.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="do not match the architecture"):
        load_pretrained_files(tmp_path / "short.npz", tmp_path / "m.json", "x")
    for bad, match in (({"architecture": "resnet"}, r"pretrained metadata: architecture must "
                                                     r"be one of \('paper', 'unet'\), got 'resnet'"),
                       ({"residual": True}, "pretrained metadata: residual=True/gated=False")):
        (tmp_path / "odd.json").write_text(json.dumps({**meta, **bad}))
        with pytest.raises(ValueError, match=match):
            load_pretrained_files(tmp_path / "short.npz", tmp_path / "odd.json", "x")
    prior = aj.pretrained("natural")
    # a problem name that is neither the library's nor the prior's is refused, not defaulted
    with pytest.raises(ValueError, match=r"unknown problem 'foo'; known problems: .*'deblur'"):
        prior.rho_for("foo")
    assert prior.rho_for("cs") == prior.default_rho  # a library problem without its own rho
    general = aj.pretrained("general")
    op, y = aj.measure_family("motion_blur", jax.random.PRNGKey(0),
                              jnp.full((1, 16, 16, 3), 0.5), noise_std=0.01)
    with pytest.raises(ValueError, match=r"unknown problem 'denoise'.*give rho= or sigma="):
        general.solve(op, y, problem="denoise")
    with pytest.raises(ValueError, match=r"multiple of 8 \(e.g. 48, chosen for operators"):
        general.solve(op, y, sigma=0.01, num_iters=12)
    with pytest.raises(ValueError, match="C = 1 .greyscale. or 3"):
        prior(jnp.zeros((1, 16, 16, 2)))
    with pytest.raises(ValueError, match=">= 8 pixels"):
        prior(jnp.zeros((1, 4, 16, 3)))
    with pytest.raises(TypeError, match="float image"):
        prior(jnp.zeros((1, 16, 16, 3), jnp.uint8))


def test_general_prior_solve_takes_one_noise_level_per_sample_and_a_traced_one():
    """Found by a new-user check: sigma as an array raised a bare TypeError, although
    rho_schedule documents (B,) levels. Per-sample levels must equal solving each sample with
    its own level; a traced sigma (under jit) must equal the eager scalar."""
    prior = aj.pretrained("general")
    x = jnp.asarray(bundled_dataset("test", n=2)[:, :16, :16], jnp.float32) / 255
    op, y = aj.measure_family("motion_blur", jax.random.PRNGKey(0), x, noise_std=0.01)
    both = prior.solve(op, y, sigma=jnp.array([0.0, 0.05]))
    for i, level in enumerate((0.0, 0.05)):
        one = prior.solve(jax.tree_util.tree_map(lambda a: a[i:i + 1], op), y[i:i + 1],
                          sigma=level)
        np.testing.assert_allclose(np.asarray(both[i:i + 1]), np.asarray(one), atol=1e-4)
    traced = jax.jit(lambda s: prior.solve(op, y, sigma=s))(0.05)
    np.testing.assert_allclose(np.asarray(traced), np.asarray(prior.solve(op, y, sigma=0.05)),
                               atol=1e-4)
    with pytest.raises(ValueError, match=r"one per sample \(B,\), got shape \(2, 2\)"):
        prior.solve(op, y, sigma=jnp.full((2, 2), 0.01))
    with pytest.raises(ValueError, match=r"sigma must be in \[0.0, 1.0\] \(noise std in the "
                                         r"\[0, 1\] image range\), got \[0.01, 2.0\]"):
        prior.solve(op, y, sigma=jnp.array([0.01, 2.0]))
    with pytest.raises(ValueError, match="sigma holds 3 noise levels but y a batch of 2"):
        prior.solve(op, y, sigma=jnp.array([0.01, 0.02, 0.03]))
    with pytest.raises(ValueError, match="give rho= or sigma=, not both"):
        prior.solve(op, y, sigma=0.01, rho=0.3)


def test_sigma_is_refused_where_it_would_be_ignored():
    """A prior with a fixed rho per problem used to ignore sigma silently (the same result for
    sigma = 0.01, 0.5 or none)."""
    prior = aj.pretrained("natural")
    op = aj.pixelwise_mask(jax.random.PRNGKey(0), (16, 16, 3))
    y = op.apply(jnp.full((1, 16, 16, 3), 0.5))
    with pytest.raises(ValueError, match="prior 'natural' has a fixed rho per problem and does "
                                         "not use sigma; give problem="):
        prior.solve(op, y, sigma=0.01)


def test_prox_any_size_pads_by_reflection_and_crops_back():
    """Odd sizes: the prox equals the network on the NumPy-reflect-padded image, cropped; sizes
    divisible by 4 go through the network unchanged; greyscale = mean of the RGB outputs."""
    prior = aj.pretrained("natural")
    rng = np.random.default_rng(0)
    v = rng.random((2, 30, 45, 3)).astype(np.float32)
    padded = np.pad(v, ((0, 0), (0, 2), (0, 3), (0, 0)), mode="reflect")
    want = np.asarray(prior.apply_fn(prior.params, jnp.asarray(padded)))[:, :30, :45]
    np.testing.assert_allclose(np.asarray(prior(v)), want, rtol=0, atol=1e-6)
    v4 = v[:, :28, :44]
    np.testing.assert_array_equal(np.asarray(prior(v4)),
                                  np.asarray(prior.apply_fn(prior.params, jnp.asarray(v4))))
    g = v[..., :1]
    rgb = np.asarray(prior(np.repeat(g, 3, axis=-1)))
    np.testing.assert_allclose(np.asarray(prior(g)), rgb.mean(-1, keepdims=True), atol=1e-6)
    assert prior(v[0]).shape == (30, 45, 3)  # one image without batch axis


@pytest.mark.parametrize("problem", ["pid", "sr", "deblur"])
def test_lift_to_rgb_applies_the_grey_operator_per_channel(problem):
    x = np.random.default_rng(1).random((16, 20, 1)).astype(np.float32)
    op, _, x = simulate(Degradation(problem, noise_std=0.0), jax.random.PRNGKey(0), x)
    lifted = lift_to_rgb(op)
    x3 = np.concatenate([x, 0.5 * x, x ** 2], axis=-1)  # three different channels
    got = np.asarray(lifted.apply(jnp.asarray(x3)))
    for c in range(3):
        np.testing.assert_allclose(got[..., c:c + 1], np.asarray(op.apply(x3[..., c:c + 1])),
                                   atol=1e-6)


def _photo(tmp_path: Path, size: int, grey: bool = False) -> Path:
    im = Image.fromarray(bundled_photo("chelsea")).resize((size, size), Image.BICUBIC)
    path = tmp_path / f"cat{size}{'_grey' if grey else ''}.png"
    (im.convert("L") if grey else im).save(path)
    return path


@pytest.mark.parametrize("size,problem", [(64, "pid"), (256, "sr"), (256, "bi")])
def test_solve_simulate_end_to_end(tmp_path, capsys, size, problem):
    photo = _photo(tmp_path, size)
    out = tmp_path / "out"
    assert cli_main(["solve", str(photo), "--problem", problem, "--simulate", "--out", str(out),
                     "--no-progress"]) == 0
    stem = photo.stem
    for suffix in ("restored", "start", "clean", "measured"):
        assert (out / f"{stem}_{suffix}.png").exists()
    rec = next(csv.DictReader(open(out / "metrics.csv")))
    assert float(rec["psnr"]) > float(rec["psnr_start"]) + 0.5, rec
    assert float(rec["ssim"]) > float(rec["ssim_start"]), rec
    restored = np.asarray(Image.open(out / f"{stem}_restored.png"))
    assert restored.shape == (size, size, 3)
    assert "outputs written to" in capsys.readouterr().out


def test_ssim_fits_its_window_to_small_images():
    """Found by a new-user check: ``solve --simulate`` on a photo under 11 px stopped partway
    with scikit-image's "win_size exceeds image extent" after writing some outputs."""
    from skimage.metrics import structural_similarity

    from admm_jax.restore import ssim

    rng = np.random.default_rng(0)
    ref = rng.random((16, 16, 3))
    noisy = np.clip(ref + 0.1 * rng.standard_normal(ref.shape), 0, 1)
    want = structural_similarity(ref, noisy, data_range=1.0, channel_axis=-1,
                                 gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert ssim(noisy, ref) == pytest.approx(want, abs=1e-12)  # unchanged where it fits
    small = ssim(noisy[:10, :9], ref[:10, :9])
    assert 0 < small < 1
    assert np.isnan(ssim(noisy[:6, :6], ref[:6, :6]))


def test_solve_refuses_an_image_its_operator_cannot_measure_before_writing(tmp_path, capsys):
    big, tiny = _photo(tmp_path, 64), _photo(tmp_path, 10)
    out = tmp_path / "out"
    assert cli_main(["solve", str(big), str(tiny), "--problem", "sr", "--simulate", "--scale",
                     "16", "--out", str(out), "--no-progress"]) == 2
    assert "cat10.png: image of size 10x10 is smaller than the scale 16" in capsys.readouterr().err
    assert not out.exists()


def test_solve_with_the_mirror_ensemble(tmp_path):
    """``--ensemble hflip`` restores with the mirror-averaged prior: a different result from
    the plain prior's on the same simulated measurement, and still a restoration."""
    photo = _photo(tmp_path, 64)
    rows = {}
    for ens in ("none", "hflip"):
        out = tmp_path / ens
        assert cli_main(["solve", str(photo), "--problem", "pid", "--simulate", "--out",
                         str(out), "--ensemble", ens, "--no-progress"]) == 0
        rows[ens] = next(csv.DictReader(open(out / "metrics.csv")))
    assert rows["hflip"]["psnr_start"] == rows["none"]["psnr_start"]  # same measurement
    assert float(rows["hflip"]["psnr"]) > float(rows["hflip"]["psnr_start"]) + 0.5
    assert rows["hflip"]["psnr"] != rows["none"]["psnr"]


def test_solve_greyscale_file_and_real_mask(tmp_path):
    photo = _photo(tmp_path, 96, grey=True)
    mask = np.ones((96, 96), np.uint8) * 255
    mask[30:50, 40:60] = 0
    Image.fromarray(mask).save(tmp_path / "mask.png")
    out = tmp_path / "out"
    assert cli_main(["solve", str(photo), "--problem", "inpaint", "--mask",
                     str(tmp_path / "mask.png"), "--out", str(out), "--no-progress"]) == 0
    restored = Image.open(out / f"{photo.stem}_restored.png")
    assert restored.mode == "L" and restored.size == (96, 96)
    r = np.asarray(restored, np.float64)
    clean = np.asarray(Image.open(photo), np.float64)
    keep = mask > 0
    # observed pixels stay close to the measurement, the hole is filled with image content
    assert np.abs(r[keep] - clean[keep]).mean() < 4.0
    assert abs(r[~keep].mean() - clean[~keep].mean()) < 30.0 and r[~keep].std() > 1.0


def _fails_cleanly(tmp_path, capsys, argv, fragment):
    """In-process CLI call: exit code 2, exactly one error line naming the problem, no
    traceback, and the folder unchanged."""
    before = sorted(p.name for p in tmp_path.iterdir())
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        try:
            code = cli_main(argv)
        except SystemExit as exc:  # argparse's own errors (bad choice)
            code = exc.code
    finally:
        os.chdir(cwd)
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [l for l in err.strip().splitlines() if "error:" in l]
    assert len(lines) == 1 and fragment in lines[0], err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before  # nothing written


def test_solve_bad_inputs_give_one_line_errors_and_write_nothing(tmp_path, capsys):
    photo = _photo(tmp_path, 64)
    Image.new("L", (32, 32), 255).save(tmp_path / "small_mask.png")
    _fails_cleanly(tmp_path, capsys, ["solve", "missing.png", "--problem", "sr", "--out", "o"],
                   "missing.png does not exist")
    _fails_cleanly(tmp_path, capsys, ["solve", photo.name, "--problem", "inpaint", "--mask",
                                     "small_mask.png", "--out", "o"], "does not match")
    _fails_cleanly(tmp_path, capsys, ["solve", photo.name, "--problem", "foo", "--out", "o"],
                   "invalid choice: 'foo'")
    _fails_cleanly(tmp_path, capsys, ["solve", photo.name, "--problem", "sr", "--prior", "nope",
                                     "--out", "o"], "unknown pretrained prior 'nope'")
    _fails_cleanly(tmp_path, capsys, ["solve", photo.name, "--problem", "inpaint", "--out", "o"],
                   "needs a mask")
    # a learned-rule prior takes multiples of its T; refused before the folder is made
    _fails_cleanly(tmp_path, capsys, ["solve", photo.name, "--problem", "sr", "--prior",
                                     "general", "--iters", "12", "--out", "o"],
                   "--iters must be a multiple of 8")
    # the library's argument names become the command's flags
    for flags, message in ((["--iters", "0"], "--iters must be an integer >= 1, got 0"),
                           (["--simulate", "--noise", "-0.1"], "--noise must be in [0, 1]"),
                           (["--scale", "0"], "--scale must be an integer >= 2, got 0")):
        _fails_cleanly(tmp_path, capsys, ["solve", photo.name, "--problem", "sr", *flags,
                                         "--out", "o"], message)
    _fails_cleanly(tmp_path, capsys, ["solve", photo.name, "--problem", "deblur",
                                     "--blur-sigma", "-1", "--out", "o"],
                   "--blur-sigma must be > 0, got -1")
    _fails_cleanly(tmp_path, capsys, ["solve", photo.name, "--problem", "sr", "--rho", "-1",
                                     "--out", "o"], "rho must be > 0, got -1")
    _fails_cleanly(tmp_path, capsys, ["solve", photo.name, "--problem", "sr", "--ensemble",
                                     "flip", "--out", "o"], "invalid choice: 'flip'")
    # an existing output is never replaced without --overwrite
    out = tmp_path / "o"
    out.mkdir()
    (out / f"{photo.stem}_restored.png").write_bytes(b"precious")
    _fails_cleanly(tmp_path, capsys, ["solve", photo.name, "--problem", "sr", "--out", "o"],
                   "already exists")
    assert (out / f"{photo.stem}_restored.png").read_bytes() == b"precious"


@pytest.mark.slow
def test_non_editable_install_loads_the_shipped_priors(tmp_path):
    """Build the wheel, install it (no dependencies: they are this venv's) into a folder that
    shadows the editable checkout, and load and run every shipped prior from there."""
    wheel_dir, target = tmp_path / "wheel", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w",
                    str(wheel_dir), str(ROOT)], check=True, capture_output=True)
    (wheel,) = wheel_dir.glob("admm_jax-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for name in NAMES:
        assert f"admm_jax/pretrained_priors/weights/{name}.npz" in names
        assert f"admm_jax/pretrained_priors/weights/{name}.json" in names
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(target), str(wheel)], check=True, capture_output=True)
    script = (
        "import admm_jax as aj, json, sys\n"
        "from test_pretrained import reproduce_reference\n"
        f"assert aj.__file__.startswith({str(target)!r}), aj.__file__\n"
        "out = {}\n"
        "for n in aj.pretrained_names():\n"
        "    p = aj.pretrained(n)\n"
        "    out[n] = {'got': reproduce_reference(p), 'want': p.metadata['reference']['psnr']}\n"
        "print(json.dumps(out))\n")
    env = dict(os.environ, JAX_PLATFORMS="cpu",
               PYTHONPATH=os.pathsep.join([str(target), str(Path(__file__).parent)]))
    res = subprocess.run([sys.executable, "-c", script], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert set(out) >= set(NAMES)
    for name, r in out.items():
        for problem, want in r["want"].items():
            np.testing.assert_allclose(r["got"][problem], want, atol=PSNR_ATOL)


def test_a_learned_rho_rule_in_the_metadata_drives_solve_and_restore(tmp_path):
    """A prior shipped with a ``rho_rule`` (as the general prior is) uses ρ_t(σ) per iteration:
    solve(op, y, sigma=...) equals unrolled_admm with that (T, B) schedule, the problem's noise
    level stands in for sigma, and without either it asks for sigma."""
    from admm_jax.rho_rules import rho_schedule

    src = aj.pretrained("faces")
    d = Path(importlib.resources.files("admm_jax.pretrained_priors")) / "weights"
    meta = dict(src.metadata)
    t = src.num_iters
    meta["rho_rule"] = {"log_rho": list(np.linspace(-0.1, -0.02, t)),
                        "slope": list(np.linspace(0.0, 0.05, t))}
    (tmp_path / "g.json").write_text(json.dumps(meta))
    prior = load_pretrained_files(d / "faces.npz", tmp_path / "g.json", "g")
    assert "learned" in repr(prior)
    rule = {k: jnp.asarray(v, jnp.float32) for k, v in meta["rho_rule"].items()}
    np.testing.assert_allclose(np.asarray(prior.rho_schedule(0.03)),
                               np.asarray(rho_schedule(rule, 0.03))[:, 0], rtol=1e-6)
    x = jnp.asarray(bundled_dataset("test", n=2), jnp.float32)[:, :32, :32] / 255.0
    op, y = aj.measure(aj.get_problem("pid"), jax.random.PRNGKey(0), x)
    sched = jnp.broadcast_to(prior.rho_schedule(0.1)[:, None], (t, 2))
    want = aj.unrolled_admm(prior, op, y, sched, t)
    # other programs and batch sizes round differently through 8 float32 network passes;
    # 2e-4 is far below what another rho changes (> 1e-2 here)
    np.testing.assert_allclose(np.asarray(prior.solve(op, y, sigma=0.1)), np.asarray(want),
                               atol=2e-4)
    np.testing.assert_allclose(np.asarray(prior.solve(op, y, problem="pid")), np.asarray(want),
                               atol=2e-4)  # pid's noise is 0.1
    z, _ = restore(prior, jax.tree_util.tree_map(lambda a: a[0], op), y[0], sigma=0.1)
    np.testing.assert_allclose(z, np.asarray(want[0]), atol=2e-4)
    other = aj.unrolled_admm(prior, op, y, 0.3, t)  # the check can fail: a constant rho differs
    assert float(jnp.max(jnp.abs(other - want))) > 1e-2
    # 2T iterations: two blocks of the schedule, the second a fresh solve started from z_T
    want2 = aj.unrolled_admm(prior, op, y, sched, t, z0=want)
    np.testing.assert_allclose(np.asarray(prior.solve(op, y, sigma=0.1, num_iters=2 * t)),
                               np.asarray(want2), atol=4e-4)
    z2, _ = restore(prior, jax.tree_util.tree_map(lambda a: a[0], op), y[0], sigma=0.1,
                    num_iters=2 * t)
    np.testing.assert_allclose(z2, np.asarray(want2[0]), atol=4e-4)
    assert float(jnp.max(jnp.abs(want2 - want))) > 1e-2  # the second block does something
    # long_runs rule "cycle" (as the shipped general prior's metadata says): the schedule
    # tiled over 2T iterations in one solve, the dual u kept between the blocks
    assert prior.long_run_rule == "restart" and prior.restart_every(2 * t) == t
    meta["long_runs"] = {"rule": "cycle", "num_iters": 4 * t}
    (tmp_path / "c.json").write_text(json.dumps(meta))
    cyc = load_pretrained_files(d / "faces.npz", tmp_path / "c.json", "c")
    assert cyc.long_run_rule == "cycle" and cyc.restart_every(2 * t) is None
    want_c = aj.unrolled_admm(cyc, op, y, jnp.concatenate([sched, sched]), 2 * t)
    np.testing.assert_allclose(np.asarray(cyc.solve(op, y, sigma=0.1, num_iters=2 * t)),
                               np.asarray(want_c), atol=4e-4)
    zc, _ = restore(cyc, jax.tree_util.tree_map(lambda a: a[0], op), y[0], sigma=0.1,
                    num_iters=2 * t)
    np.testing.assert_allclose(zc, np.asarray(want_c[0]), atol=4e-4)
    assert float(jnp.max(jnp.abs(want_c - want2))) > 1e-3  # keeping u is not restarting it
    with pytest.raises(ValueError, match=f"multiple of {t}"):
        prior.solve(op, y, sigma=0.1, num_iters=t + 4)
    with pytest.raises(ValueError, match="give sigma="):
        prior.solve(op, y)
    with pytest.raises(ValueError, match="sigma"):
        prior.rho_schedule(-0.1)
    with pytest.raises(ValueError, match="no learned rho rule"):
        src.rho_schedule(0.1)


@pytest.mark.parametrize("name, rule", [("general_natural", "cycle"), ("natural", "restart")])
def test_trained_prior_from_a_training_folder_equals_the_prior_exported_from_it(name, rule):
    """``aj.trained_prior(folder)`` rebuilds a prior from the folder ``admm-jax train`` wrote:
    the same network parameters, rho (learned schedule or per-problem training rho) and solves
    as the shipped prior that experiments/export_pretrained.py exported from that folder."""
    shipped = aj.pretrained(name)
    folder = ROOT / shipped.metadata["exported"]["from"]
    if not folder.exists():
        pytest.skip("the committed training folders are in the repository, not in a wheel")
    mine = aj.trained_prior(folder, long_run_rule=rule)
    for a, b in zip(jax.tree_util.tree_leaves(mine.params),
                    jax.tree_util.tree_leaves(shipped.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert mine.num_iters == shipped.num_iters and mine.long_run_rule == shipped.long_run_rule
    x = jnp.asarray(bundled_dataset("test", n=2), jnp.float32) / 255
    # parameters are read from files: equal bit for bit; what is computed from them goes
    # through two separately traced programs, so it is compared to float32 rounding (outputs in
    # [0, 1] after 16 iterations: 1e-4 is far above reordering noise and far below what a wrong
    # setting does: the other long-run rule moves pixels by 6e-3, sigma 0.012 for 0.01 by 1e-2)
    if shipped.rho_rule is not None:
        np.testing.assert_allclose(mine.rho_schedule(0.01), shipped.rho_schedule(0.01),
                                   rtol=1e-6)
        op, y = aj.measure_family("motion_blur", jax.random.PRNGKey(0), x, noise_std=0.01)
        kw = {"sigma": 0.01, "num_iters": 2 * shipped.num_iters}  # two blocks: the rule matters
    else:
        assert {p: mine.rho[p] for p in ("pid", "bi", "si", "sr")} == {
            p: shipped.rho[p] for p in ("pid", "bi", "si", "sr")}
        op, y = aj.measure(aj.get_problem("bi"), jax.random.PRNGKey(0), x)
        kw = {"problem": "bi"}
    np.testing.assert_allclose(np.asarray(mine.solve(op, y, **kw)),
                               np.asarray(shipped.solve(op, y, **kw)), rtol=0, atol=1e-4)


def test_trained_prior_bad_folder_and_rule(tmp_path):
    with pytest.raises(ValueError, match="not a folder"):
        aj.trained_prior(tmp_path / "missing")
    with pytest.raises(ValueError, match="holds no config.json"):
        aj.trained_prior(tmp_path)
    with pytest.raises(ValueError, match="long_run_rule must be 'restart' or 'cycle', got 'hold'"):
        aj.trained_prior(tmp_path, long_run_rule="hold")
    (tmp_path / "config.json").write_text(json.dumps({"norm": "batch", "clamp": 1.0}))
    foreign = re.escape(f"trained prior '{tmp_path}': {tmp_path} holds a OneNet projector, "
                        f"not a DU-ADMM prior")
    with pytest.raises(ValueError, match=foreign):
        aj.trained_prior(tmp_path)  # a OneNet projector's folder, named as such


# ------------------------------------------------------------- loading builds shapes only

def _is_abstract(tree) -> bool:
    leaves = jax.tree_util.tree_leaves(tree)
    return bool(leaves) and all(isinstance(a, jax.ShapeDtypeStruct) for a in leaves)


@pytest.mark.parametrize("architecture,rho_rule", [("unet", "learned"), ("paper", "fixed")])
def test_abstract_template_matches_the_initialised_prior(architecture, rho_rule):
    """Loaders build the network with ``nnx.eval_shape`` (no random initializer runs or
    compiles): the template has exactly the initialised prior's structure, shapes and dtypes,
    and restoring saved weights into it gives them back bit for bit."""
    from admm_jax.train.config import preset
    from admm_jax.train.loop import build_prior

    cfg = preset("paper", architecture=architecture, width=1 / 16, rho_rule=rho_rule)
    _, concrete = build_prior(cfg)
    _, template = build_prior(cfg, abstract=True)
    assert _is_abstract(template) and not _is_abstract(concrete)
    assert (jax.tree_util.tree_structure(template)
            == jax.tree_util.tree_structure(concrete))
    for t, c in zip(jax.tree_util.tree_leaves(template), jax.tree_util.tree_leaves(concrete)):
        assert (t.shape, t.dtype) == (c.shape, c.dtype)


def test_loaded_prior_equals_the_saved_one_through_the_abstract_template(tmp_path):
    from admm_jax.train.config import preset
    from admm_jax.train.loop import build_prior, load_prior, save_params

    cfg = preset("paper", architecture="unet", width=1 / 16, rho_rule="learned")
    prior_fn, params = build_prior(cfg, seed=3)
    save_params(tmp_path / "params", params, cfg)
    loaded_fn, loaded, loaded_cfg = load_prior(tmp_path / "params")
    assert loaded_cfg == cfg and not _is_abstract(loaded)
    for a, b in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(loaded)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    x = jnp.asarray(bundled_dataset("test", n=1), jnp.float32) / 255
    np.testing.assert_array_equal(np.asarray(jax.jit(prior_fn)(params, x)),
                                  np.asarray(jax.jit(loaded_fn)(loaded, x)))


def test_an_abstract_model_with_unset_state_is_refused():
    from flax import nnx

    from admm_jax.priors import make_prior_fn, onenet_projector

    # a model whose non-parameter state (here VBN statistics) has no values cannot be used
    abstract_vbn = nnx.eval_shape(lambda: onenet_projector(width=1 / 16, rngs=nnx.Rngs(0),
                                                           norm="virtual_batch"))
    with pytest.raises(ValueError, match="abstract .* non-parameter state"):
        make_prior_fn(abstract_vbn)
