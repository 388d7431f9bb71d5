"""`oniris-env train`: the whole pipeline on the tiny preset, its skip / resume / rerun rules, and its refusals."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from dataclasses import replace

import gymnasium as gym
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

import oniris_env  # noqa: F401  (registers the ids)
from oniris_env.cli import app
from oniris_env.vae import load_vae, read_vae_metadata, save_vae
from oniris_env.world_model import load_world_model
from training.collect import episode_seed
from training.pipeline import (
    PIPELINE_PRESETS,
    STAGES,
    PipelineConfig,
    PipelineMismatchError,
    prepare_run_folder,
)
from training.vae.config import TRAIN_VAE_PRESETS
from training.world_model.head_refit import HEAD_REFIT_PRESETS

runner = CliRunner()


def train(out, *extra: str):
    """`oniris-env train --preset tiny --out OUT` in-process (one worker and one thread: quickest on 2 cores)."""
    threads = torch.get_num_threads()
    try:
        return runner.invoke(app, ["train", "--preset", "tiny", "--out", str(out), "--workers", "1", *extra])
    finally:
        torch.set_num_threads(threads)


STATUS = re.compile(rf"\b({'|'.join(STAGES)}): (skip \(complete\)|resume from \w+ \d+ of \d+|rerun \([^)]*\)|run)")


def statuses(output: str) -> dict[str, str]:
    """{stage: status} from the pipeline's line per stage (progress bars share the captured output)."""
    return dict(STATUS.findall(output))


@pytest.fixture(scope="module")
def built_run(tmp_path_factory):
    """One finished tiny run and its output, built once per module; tests read it and never change it."""
    out = tmp_path_factory.mktemp("pipeline") / "run"
    result = train(out)
    assert result.exit_code == 0, result.output
    return out, result


@pytest.fixture
def tiny_run(built_run, tmp_path):
    """A private copy of the finished tiny run (files and mtimes), for a test that interrupts, edits or reruns it:
    no test sees what another one did, so each passes alone and in any order."""
    out = tmp_path / "run"
    shutil.copytree(built_run[0], out)
    return out, built_run[1]


@pytest.mark.slow
def test_tiny_pipeline_builds_a_bundle_the_dream_env_loads(built_run):
    out, result = built_run
    assert statuses(result.output) == dict.fromkeys(STAGES, "run")
    assert json.loads((out / "pipeline.json").read_text())["name"] == "tiny"
    assert len(json.loads((out / "data/real/manifest.json").read_text())["episodes"]) == 6
    heads_manifest = json.loads((out / "data/heads/manifest.json").read_text())
    assert len(heads_manifest["episodes"]) == 4 and heads_manifest["episodes"][0]["seed"] == episode_seed(7, 0)
    for path in (
        "vae/vae.safetensors",
        "vae_ft/vae.safetensors",
        "latents/manifest.json",
        "wm/world_model.safetensors",
        "bundle/vae.safetensors",
        "bundle/world_model.safetensors",
        "bundle/start_contexts.npz",
        "latents_heads/manifest.json",
        "heads/head_refit.json",
        "heads/bundle/world_model.safetensors",
    ):
        assert (out / path).is_file(), path
    assert (out / "bundle/vae.safetensors").read_bytes() == (out / "vae_ft/vae.safetensors").read_bytes()
    assert f"weights bundle: {out / 'heads/bundle'}" in result.output
    # the final bundle: the trained world model with new heads, learnt from both latent folders
    trained, refitted = (
        load_world_model(out / "bundle/world_model.safetensors"),
        load_world_model(out / "heads/bundle/world_model.safetensors"),
    )
    for (name, a), b in zip(trained.state_dict().items(), refitted.state_dict().values(), strict=True):
        assert torch.equal(a, b) != name.startswith("head."), name
    report = json.loads((out / "heads/head_refit.json").read_text())
    assert sum(report["episodes"].values()) == 10
    env = gym.make("OnirisLunarLander-v0", weights=out / "heads/bundle")
    obs, _ = env.reset(seed=0)
    for action in range(4):
        obs, reward, terminated, truncated, _ = env.step(action)
    assert obs.shape == (64, 96, 3) and obs.dtype == np.uint8 and isinstance(reward, float)
    env.close()


@pytest.mark.slow
def test_a_second_run_skips_every_stage(tiny_run):
    out, _ = tiny_run
    before = {path: path.stat().st_mtime_ns for path in out.rglob("*") if path.is_file()}
    result = train(out)
    assert result.exit_code == 0, result.output
    assert statuses(result.output) == dict.fromkeys(STAGES, "skip (complete)")
    after = {path: path.stat().st_mtime_ns for path in out.rglob("*") if path.is_file()}
    assert after == before  # nothing written, nothing added: skipping does no work (a time bound was flaky under load)


@pytest.mark.slow
def test_an_interrupted_stage_reruns_alone(tiny_run):
    out, _ = tiny_run
    (out / "wm/world_model.safetensors").unlink()  # as if killed before the final weights were written
    result = train(out)
    assert result.exit_code == 0, result.output
    rewritten = {"world_model": "resume from step 30 of 30", "bundle": "run", "heads": "rerun (inputs changed)"}
    assert statuses(result.output) == dict.fromkeys(STAGES, "skip (complete)") | rewritten
    bundle_wm = (out / "bundle/world_model.safetensors").read_bytes()
    assert bundle_wm == (out / "wm/world_model.safetensors").read_bytes()
    (out / "heads/head_refit.json").unlink()  # a head refit killed before its report: the refit runs again
    result = train(out)
    assert statuses(result.output) == dict.fromkeys(STAGES, "skip (complete)") | {"heads": "run"}
    assert (out / "heads/head_refit.json").is_file()


@pytest.mark.slow
def test_changed_inputs_rebuild_what_depends_on_them(tiny_run):
    out, _ = tiny_run
    # New main-VAE weights (here: the same tensors, other notes) make the fine-tune, latents, world model and
    # bundle stale.
    main = out / "vae/vae.safetensors"
    save_vae(load_vae(main), main, notes=read_vae_metadata(main)["notes"] | {"edited": True})
    result = train(out)
    assert result.exit_code == 0, result.output
    assert statuses(result.output) == {
        "collect": "skip (complete)",
        "vae": "skip (complete)",
        "vae_ft": "rerun (inputs changed)",
        "encode": "rerun (latents of another VAE)",
        "world_model": "rerun (inputs changed)",
        "bundle": "run",
        "collect_heads": "skip (complete)",
        "encode_heads": "rerun (latents of another VAE)",
        "heads": "rerun (inputs changed)",
    }
    assert statuses(train(out).output) == dict.fromkeys(STAGES, "skip (complete)")


def test_a_folder_of_another_preset_or_seed_is_refused(tmp_path):
    prepare_run_folder(tmp_path / "run", PIPELINE_PRESETS["tiny"])
    for args in (["--preset", "default"], ["--preset", "tiny", "--seed", "3"]):
        result = runner.invoke(app, ["train", *args, "--out", str(tmp_path / "run")])
        assert result.exit_code == 2, result.output
        assert "made with preset 'tiny'" in result.output and len(result.output.strip().splitlines()) == 1
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(PipelineMismatchError, match="not made by"):
        prepare_run_folder(tmp_path / "other", PIPELINE_PRESETS["tiny"])


@pytest.mark.parametrize(
    ("args", "reason"),
    [(["--preset", "huge", "--out", "x"], "unknown --preset 'huge'"), (["--preset", "tiny"], "needs a run folder")],
)
def test_bad_pipeline_arguments_exit_2_with_one_line(args, reason):
    result = runner.invoke(app, ["train", *args])
    assert result.exit_code == 2 and reason in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_train_without_arguments_prints_help_and_help_needs_no_torch():
    result = runner.invoke(app, ["train"])
    assert "Usage" in result.output and "world-model" in result.output and "Traceback" not in result.output
    code = (
        "import sys; from oniris_env.cli import app; sys.argv = ['oniris-env', 'train', '--help']\n"
        "try:\n    app()\nexcept SystemExit:\n    pass\nassert 'torch' not in sys.modules, 'torch imported'"
    )
    help_text = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    for word in ("--preset", "--out", "--workers", "--threads", "vae", "world-model", "Examples"):
        assert word in help_text, word


def test_presets_and_config_checks():
    default = PIPELINE_PRESETS["default"]  # the recipe of the shipped weights (docs/RESULTS.md)
    assert (default.episodes, default.seed, default.policy, default.bank_size) == (800, 0, "mix", 256)
    assert default.vae == TRAIN_VAE_PRESETS["default"] and default.vae_finetune == TRAIN_VAE_PRESETS["finetune"]
    assert (default.head_episodes, default.head_seed, default.head_refit) == (3200, 7, HEAD_REFIT_PRESETS["default"])
    reseeded = PIPELINE_PRESETS["tiny"].with_seed(5)
    seeds = (reseeded.vae.seed, reseeded.vae_finetune.seed, reseeded.world_model.seed, reseeded.head_refit.seed)
    assert {reseeded.seed, *seeds} == {5} and reseeded.head_seed == 12
    with pytest.raises(ValueError, match="head_episodes"):
        PipelineConfig(head_episodes=-1)
    with pytest.raises(ValueError, match="policy"):
        PipelineConfig(policy="nope")
    with pytest.raises(ValueError, match="vae_finetune.model"):
        replace(PIPELINE_PRESETS["tiny"], vae_finetune=TRAIN_VAE_PRESETS["finetune"])
    with pytest.raises(ValueError, match="init_from"):
        PipelineConfig(vae_finetune=replace(TRAIN_VAE_PRESETS["finetune"], init_from="x.safetensors"))


def test_a_stage_status_is_a_question_and_starting_the_stage_the_action(tmp_path):
    """`_trainer_status` only reads (it used to delete a stale checkpoint and weights while answering); the printed
    lines keep their words."""
    from training.pipeline import Action, StageStatus, _start_trainer, _trainer_status

    run = tmp_path / "run"
    run.mkdir()
    (run / "inputs.json").write_text(json.dumps({"inputs": "old"}))
    torch.save({"step": 3}, run / "checkpoint.pt")
    (run / "weights.safetensors").write_bytes(b"stale")

    def step_of(path):
        raise ValueError(path)  # unreadable weights: not complete

    status = _trainer_status(run, "weights.safetensors", 10, "new", step_of)
    assert str(status) == "rerun (inputs changed)" and status.runs
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.pt", "inputs.json", "weights.safetensors"]
    _start_trainer(run, status, "weights.safetensors", "new")
    assert sorted(p.name for p in run.iterdir()) == ["inputs.json"]
    assert json.loads((run / "inputs.json").read_text()) == {"inputs": "new"}
    torch.save({"step": 3}, run / "checkpoint.pt")
    assert str(_trainer_status(run, "weights.safetensors", 10, "new", step_of)) == "resume from step 3 of 10"
    assert str(StageStatus(Action.SKIP)) == "skip (complete)" and not StageStatus(Action.SKIP).runs
    assert str(StageStatus(Action.RUN)) == "run"
