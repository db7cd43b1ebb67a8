"""The main job as a Python function: equal training-time budgets and the shipped prior's row."""

from __future__ import annotations

import dataclasses
import json

import pytest

from admm_jax import reproduce


@pytest.fixture
def tiny_preset(monkeypatch):
    tiny = dataclasses.replace(
        reproduce.PRESETS["quick"], du_width=1 / 16, du_batch=2, onenet_batch=2,
        n_train=16, n_test=2, eval_batch=2, checkpoint_every=1000, val_every=1000,
        train_budget_s=3.0)
    monkeypatch.setitem(reproduce.PRESETS, "tiny", tiny)
    return tiny


def test_run_gives_each_learned_method_the_same_time_and_adds_the_shipped_prior(
        tmp_path, tiny_preset):
    out = tmp_path / "job"
    command = ["admm-jax", "reproduce", "--preset", "tiny", "--out", str(out)]
    summary = reproduce.run("tiny", "bundled", out, problems=("bi",), progress=False,
                            command_line=command)
    # each trainer stopped on the budget, not on its step cap, and still wrote final weights
    for run, cap in (("du_admm", tiny_preset.du_steps), ("onenet", tiny_preset.onenet_steps)):
        assert 1 <= summary["steps"][run] < cap
        assert (out / run / "params" / "config.json").exists()
    methods = {r["method"] for r in summary["table"]}
    assert any(m.startswith("shipped pretrained 'natural' prior") for m in methods)
    assert {"OneNet", "wavelet-l1"} <= methods and len(methods) == 4
    assert "the same 3 s of wall-clock time" in summary["caption"]
    assert str(summary["steps"]["du_admm"]) in summary["caption"]
    saved = json.loads((out / "summary.json").read_text())
    assert saved["steps"] == summary["steps"]
    assert summary["caption"] in (out / "evaluation" / "table.md").read_text()
    # the DU-ADMM run names the command that made it, like an ``admm-jax train`` run
    (record,) = [json.loads(line) for line in
                 (out / "du_admm" / "provenance.jsonl").read_text().splitlines()]
    assert record["argv"] == command and record["start_step"] == 0


def test_run_validates_before_writing(tmp_path):
    with pytest.raises(ValueError, match="unknown reproduce preset 'nope'"):
        reproduce.run("nope", "bundled", tmp_path / "a")
    with pytest.raises(ValueError, match="dataset must be"):
        reproduce.run("quick", "bundled", tmp_path / "b", dataset="cats")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
