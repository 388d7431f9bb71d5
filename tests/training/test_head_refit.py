"""Refitting the heads on a frozen trunk: the recorded head inputs are what the heads read in the cached pass,
batching changes nothing, the fit learns, and `oniris-env train heads` writes a bundle whose trunk is untouched."""

import json

import numpy as np
import pytest
import torch
from torch import Tensor
from typer.testing import CliRunner

from oniris_env.bundle import WORLD_MODEL_FILE, load_bundle, save_random_bundle
from oniris_env.cli import app
from oniris_env.sampler import DEFAULT_SAMPLER
from oniris_env.world_model import WorldModel, WorldModelConfig, frame_actions
from oniris_env.world_model.heads import reward_value
from training.world_model.head_refit import (
    HeadRefitConfig,
    dreamt_heads,
    fit_head,
    head_predictions,
    teacher_forced_heads,
)

runner = CliRunner()


def tiny_model(seed: int = 0) -> WorldModel:
    torch.manual_seed(seed)
    return WorldModel(WorldModelConfig.preset("tiny")).eval()


def random_episodes(model: WorldModel, lengths: list[int], seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    latents = [torch.randn(n + 1, *model.config.latent_shape, generator=g) for n in lengths]
    actions = [
        np.random.default_rng(seed + i).integers(model.config.num_actions, size=n) for i, n in enumerate(lengths)
    ]
    return latents, actions


def dart_heads(model: WorldModel, frames: Tensor, sigma_ctx: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
    """The slow oracle: rewards and termination logits `(B, N)` of the heads on N committed frames
    `frames (B, N, C, h, w)` (context noise `sigma_ctx (B, N)`, conditioning `actions (B, N)`), from one DART
    forward with the dense mask (the training path, not the cache the recorders step through)."""
    with torch.no_grad():
        out = model(frames, sigma_ctx, frames, torch.ones_like(sigma_ctx), actions, backend="oracle")
    return reward_value(out.reward_logits, model.bins), out.term_logits


def test_head_inputs_are_what_the_heads_read_and_batching_changes_nothing():
    model = tiny_model()
    latents, actions = random_episodes(model, [9, 3, 6, 1])  # longer than the window (4): the cache slides
    batched = teacher_forced_heads(model, latents, actions, sigma=0.0, seed=0, episode_batch=3)
    alone = teacher_forced_heads(model, latents, actions, sigma=0.0, seed=0, episode_batch=1)
    for b, a, z, act in zip(batched, alone, latents, actions, strict=True):
        assert b.head_inputs.shape == (len(act), model.config.width) and b.term_logits.shape == (len(act),)
        torch.testing.assert_close(b.head_inputs, a.head_inputs, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(b.term_logits, a.term_logits, atol=1e-5, rtol=1e-5)
        # the recorded inputs, through the heads, say what the full-sequence forward says about each transition
        # on the clean frames (frame j + 1's heads are transition j's)
        cond = frame_actions(torch.as_tensor(act)[None], model.config.start_action)
        oracle_rewards, oracle_logits = dart_heads(model, z[None], torch.zeros(1, len(z)), cond)
        rewards, logits = head_predictions(model.head, b.head_inputs, model.bins)
        torch.testing.assert_close(logits, oracle_logits[0, 1:], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(rewards, oracle_rewards[0, 1:], atol=1e-4, rtol=1e-4)


def test_dreamt_heads_record_the_committing_call_of_each_dreamt_frame(monkeypatch):
    model = tiny_model()
    latents, actions = random_episodes(model, [9, 3, 6, 5])
    committed = []  # (x, sigma, action) of every call that commits a frame: the context, then the dreamt frames
    step = model.step

    def spy(x, sigma, action, cache, commit=False, in_place=False):
        if commit is not False:
            committed.append((x.clone(), sigma.clone(), action.clone()))
        return step(x, sigma, action, cache, commit=commit, in_place=in_place)

    monkeypatch.setattr(model, "step", spy)
    traces = dreamt_heads(model, latents, actions, steps=3, context=3, sampler=DEFAULT_SAMPLER, seed=0, episode_batch=8)
    assert [t is None for t in traces] == [False, True, False, False]  # 3 transitions < steps + context - 1
    # the oracle: one DART forward over the frames as committed (3 real context frames with their context noise,
    # then the 3 dreamt ones, 6 > the window of 4) gives the heads on the committed frames; the recorded inputs
    # must be those (an intermediate denoising call's would differ)
    assert len(committed) == 6
    frames, sigmas, conds = (torch.stack(parts, 1) for parts in zip(*committed, strict=True))  # (3 dreams, 6, ...)
    oracle_rewards, oracle_logits = dart_heads(model, frames, sigmas, conds)
    for k, t in enumerate(t for t in traces if t is not None):
        assert t.head_inputs.shape == (3, model.config.width)
        rewards, logits = head_predictions(model.head, t.head_inputs, model.bins)
        torch.testing.assert_close(logits, oracle_logits[k, 3:], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(rewards, oracle_rewards[k, 3:], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(t.term_logits, oracle_logits[k, 3:], atol=1e-4, rtol=1e-4)
    again = dreamt_heads(model, latents, actions, steps=3, context=3, sampler=DEFAULT_SAMPLER, seed=0, episode_batch=8)
    torch.testing.assert_close(again[0].head_inputs, traces[0].head_inputs)  # seeded: reproducible


def test_teacher_forced_heads_rejects_unaligned_inputs():
    model = tiny_model()
    latents, actions = random_episodes(model, [3, 4])
    with pytest.raises(ValueError, match="2 latent sequences but 1 action"):
        teacher_forced_heads(model, latents, actions[:1], sigma=0.0, seed=0)


def test_fit_head_learns_termination_and_reward_from_fresh_weights():
    model = tiny_model()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(4000, model.config.width, generator=g)
    terminated = x[:, 0] > 1.5  # ~7% positives, as rare-ish as episode ends
    rewards = torch.where(terminated, -100.0, 1.0)  # a crash penalty, else a small shaping reward
    before_r, before_t = head_predictions(model.head, x, model.bins)
    head = fit_head(model.head, x, rewards, terminated, model.bins, HeadRefitConfig(steps=1000, batch_size=256))
    pred_r, pred_t = head_predictions(head, x, model.bins)
    recall = (pred_t[terminated] > 0).float().mean()
    auc = lambda lg: (lg[terminated][:, None] > lg[~terminated][None]).float().mean()  # noqa: E731 (pairs ranked right)
    assert recall > 0.9 and auc(pred_t) > 0.95 > 0.7 > auc(before_t), (recall, auc(pred_t), auc(before_t))
    assert (pred_r[~terminated] - 1).abs().median() < 0.2 < (before_r[~terminated] - 1).abs().median()
    assert pred_r[terminated].median() < -10 < before_r[terminated].median()
    assert model.head[1].weight.data_ptr() != head[1].weight.data_ptr()  # a copy: the model's head is untouched
    with pytest.raises(ValueError, match="as many"):
        fit_head(model.head, x[:5], rewards[:4], terminated[:5], model.bins, HeadRefitConfig(steps=1))


def test_presets_and_config_checks():
    assert HeadRefitConfig.preset("tiny", steps=3).steps == 3
    with pytest.raises(ValueError, match="unknown head-refit preset"):
        HeadRefitConfig.preset("huge")
    with pytest.raises(ValueError, match="val_fraction"):
        HeadRefitConfig(val_fraction=1.0)
    with pytest.raises(ValueError, match="dream_offsets"):
        HeadRefitConfig(dream_offsets=(0, 0))
    assert HeadRefitConfig(dream_offsets=[16]).dream_offsets == (16,)  # JSON lists come back as tuples


@pytest.fixture(scope="module")
def bundle_and_latents(tmp_path_factory):
    root = tmp_path_factory.mktemp("refit")
    bundle = save_random_bundle(root / "weights")
    for cmd in (
        ["collect", "--episodes", "8", "--out", str(root / "real"), "--seed", "3", "--no-preview"],
        [
            "encode",
            "--data",
            str(root / "real"),
            "--out",
            str(root / "latents"),
            "--vae",
            str(bundle / "vae.safetensors"),
        ],
    ):
        result = runner.invoke(app, cmd)
        assert result.exit_code == 0, result.output
    return root, bundle


def test_train_heads_writes_a_bundle_with_new_heads_on_the_same_trunk(bundle_and_latents, tmp_path):
    root, source = bundle_and_latents
    result = runner.invoke(
        app,
        [
            "train",
            "heads",
            "--weights",
            str(source),
            "--latents",
            str(root / "latents"),
            "--out",
            str(tmp_path),
            "--preset",
            "tiny",
            "--threads",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "real frames:" in result.output and "terminal-anchored dreams:" in result.output
    old, new = load_bundle(source).world_model.state_dict(), load_bundle(tmp_path / "bundle").world_model.state_dict()
    assert old.keys() == new.keys()
    for name in old:
        same = torch.equal(old[name], new[name])
        assert same != name.startswith("head."), name  # every head tensor changed, nothing else did
    report = json.loads((tmp_path / "head_refit.json").read_text())
    assert report["episodes"]["train"] + report["episodes"]["held_out"] == 8
    assert set(report["held_out"]) == {"real frames", "reward MAE, real frames", "terminal-anchored dreams"}
    assert report["training_transitions"]["dreamt"] > 0  # the dreams were learnt from too
    assert (tmp_path / "bundle" / WORLD_MODEL_FILE).is_file()


def test_train_heads_refuses_latents_of_another_vae(bundle_and_latents, tmp_path):
    root, _ = bundle_and_latents
    other = save_random_bundle(tmp_path / "other", seed=1)
    result = runner.invoke(
        app,
        [
            "train",
            "heads",
            "--weights",
            str(other),
            "--latents",
            str(root / "latents"),
            "--out",
            str(tmp_path / "out"),
            "--preset",
            "tiny",
        ],
    )
    assert result.exit_code == 2 and "another VAE" in result.output, result.output


def test_a_second_refit_reuses_the_recorded_head_inputs(bundle_and_latents, tmp_path, monkeypatch):
    root, source = bundle_and_latents
    args = ["train", "heads", "--weights", str(source), "--latents", str(root / "latents"), "--out", str(tmp_path)]
    assert runner.invoke(app, [*args, "--preset", "tiny"]).exit_code == 0
    first = json.loads((tmp_path / "head_refit.json").read_text())

    def fail(*_, **__):
        raise AssertionError("head inputs recorded again")

    monkeypatch.setattr("training.world_model.head_refit.teacher_forced_heads", fail)
    result = runner.invoke(app, [*args, "--preset", "tiny", "--steps", "5"])
    assert result.exit_code == 0, result.output
    second = json.loads((tmp_path / "head_refit.json").read_text())
    for where in ("real frames", "terminal-anchored dreams"):  # the same recorded inputs: the same "before"
        assert second["held_out"][where]["before"] == first["held_out"][where]["before"]
    assert second["config"]["steps"] == 5
