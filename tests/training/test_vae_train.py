"""End-to-end VAE training on real LunarLander episodes with the `tiny` preset: loss falls, resume is exact."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

import training.vae.train as train_module
from oniris_env.vae import load_vae
from training.vae import TRAIN_VAE_PRESETS, evaluate_vae, save_reconstruction_png, train_vae

FAST = replace(TRAIN_VAE_PRESETS["tiny"], steps=12, batch_size=2, checkpoint_every=4, log_every=2, val_fraction=0.34)


@pytest.fixture(scope="module")
def episodes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from training.collect import collect_episodes

    root = tmp_path_factory.mktemp("episodes")
    collect_episodes(root, episodes=3, seed=0, policy="random", progress=False)
    return root


def test_tiny_preset_trains_and_loss_falls(episodes: Path, tmp_path: Path) -> None:
    path = train_vae(episodes, tmp_path / "run", preset="tiny", progress=False)
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [x["rec"] for x in lines if "rec" in x]
    assert losses[-1] < 0.7 * losses[0]
    vae = load_vae(path)
    assert float(vae.latent_scale.min()) > 0 and not torch.equal(vae.latent_shift, torch.zeros_like(vae.latent_shift))
    frames = np.zeros((1, 2, 64, 96, 3), dtype=np.uint8)
    assert vae.decode_latents(vae.encode_frames(frames)).shape == (1, 2, 64, 96, 3)
    metrics = evaluate_vae(vae, episodes, split="all", max_frames=40)
    assert metrics["frames"] == 40 and np.isfinite(metrics["psnr"])
    assert {"fg_psnr", "centroid_err_median", "centroid_err_p95", "lost_fraction"} <= metrics.keys()
    png = save_reconstruction_png(vae, episodes, tmp_path / "recon.png", split="all", count=2)
    from PIL import Image

    assert Image.open(png).size == (2 * 96 * 3, 2 * 64 * 3)


def test_resume_after_interrupt_loses_no_step(episodes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    straight = load_vae(train_vae(episodes, tmp_path / "straight", config=FAST, progress=False))

    real_loss, calls = train_module.vae_loss, {"n": 0}

    def interrupted_loss(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 7:  # the 7th step is interrupted: the checkpoint holds 6 finished steps
            raise KeyboardInterrupt
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(train_module, "vae_loss", interrupted_loss)
    with pytest.raises(KeyboardInterrupt):
        train_vae(episodes, tmp_path / "resumed", config=FAST, progress=False)
    monkeypatch.setattr(train_module, "vae_loss", real_loss)
    state = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)
    assert state["step"] == 6
    resumed = load_vae(train_vae(episodes, tmp_path / "resumed", config=FAST, progress=False))
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=lambda m, name=name: f"{name}: {m}")
    steps = [json.loads(x)["step"] for x in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    assert steps[:-1] == [2, 4, 6, 8, 10, 12] and steps[-1] == 12  # each step logged once, then the result


def test_ctrl_c_during_validation_resumes_exactly(episodes: Path, tmp_path: Path, interrupt_call) -> None:
    """Ctrl-C during the validation after step 6 saves 6 finished steps with the random state after step 6 (it
    used to save the state from before step 6, so the resumed run drew step 6's batch and noise again)."""
    cfg = replace(FAST, val_every=3)  # validation after steps 3, 6 and 9; periodic checkpoints after 4 and 8
    straight = load_vae(train_vae(episodes, tmp_path / "straight", config=cfg, progress=False))
    interrupt_call(train_module, "evaluate_vae", 2)  # the validation after step 6 (tests/conftest.py)
    with pytest.raises(KeyboardInterrupt):
        train_vae(episodes, tmp_path / "resumed", config=cfg, progress=False)
    assert torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["step"] == 6
    resumed = load_vae(train_vae(episodes, tmp_path / "resumed", config=cfg, progress=False))
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0, msg=lambda m, name=name: f"{name}: {m}")


def test_sigterm_saves_like_ctrl_c(episodes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM (kill, timeout, schedulers, torchrun) during step 7 ends the run after that step with a checkpoint of
    7 steps and exit code 143; resuming gives the uninterrupted run's weights."""
    import os
    import signal

    from training.interrupt import Terminated

    straight = load_vae(train_vae(episodes, tmp_path / "straight", config=FAST, progress=False))
    real_loss, calls = train_module.vae_loss, {"n": 0}

    def terminated_loss(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 7:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(train_module, "vae_loss", terminated_loss)
    with pytest.raises(Terminated) as stopped:
        train_vae(episodes, tmp_path / "resumed", config=FAST, progress=False)
    assert stopped.value.code == 128 + signal.SIGTERM and stopped.value.step == 7
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler lives only while training
    monkeypatch.setattr(train_module, "vae_loss", real_loss)
    assert torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=True)["step"] == 7
    resumed = load_vae(train_vae(episodes, tmp_path / "resumed", config=FAST, progress=False))
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=lambda m, name=name: f"{name}: {m}")


def test_resume_refuses_another_config(episodes: Path, tmp_path: Path) -> None:
    train_vae(episodes, tmp_path / "run", config=replace(FAST, steps=2), progress=False)
    with pytest.raises(ValueError, match="another config"):
        train_vae(episodes, tmp_path / "run", config=replace(FAST, lr=1e-4), progress=False)
