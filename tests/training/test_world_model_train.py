"""World-model training: the tiny preset overfits a batch, training resumes exactly, weights round-trip."""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from oniris_env.spec import GameSpec, SpecMismatchError
from oniris_env.world_model import WorldModel, WorldModelConfig, load_world_model, read_metadata, save_world_model
from training.dataset import EpisodeWindows
from training.episodes import episode_filename, new_manifest, save_episode, write_manifest
from training.world_model import TrainWorldModelConfig, train_world_model
from training.world_model.loss import DartBatch, LossUncertainty, dart_losses

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

LATENT = (4, 4, 6)


def write_latent_dataset(root, episodes: int = 6, seed: int = 0) -> None:
    """Tiny synthetic latent episodes in the `oniris-env encode` format: a blob drifting with the action."""
    rng = np.random.default_rng(seed)
    manifest = new_manifest(GameSpec(), kind="latents", latent_shape=list(LATENT))
    root.mkdir(parents=True, exist_ok=True)
    for index in range(episodes):
        steps = int(rng.integers(12, 20))
        actions = rng.integers(0, 4, steps)
        pos = np.cumsum(np.concatenate([[0], actions - 1.5])) * 0.3
        grid = np.arange(LATENT[2])[None, :] - LATENT[2] / 2
        latents = np.exp(-((grid - pos[:, None]) ** 2))[:, None, None, :] * np.ones(LATENT)[None]
        latents = (latents + 0.1 * rng.standard_normal(latents.shape)).astype(np.float32)
        terminated = np.zeros(steps, bool)
        terminated[-1] = index % 2 == 0
        arrays = {
            "latents": latents, "actions": actions.astype(np.int64),
            "rewards": rng.normal(0, 2, steps).astype(np.float32), "terminated": terminated,
            "truncated": ~terminated & (np.arange(steps) == steps - 1), "seed": np.int64(index),
        }
        save_episode(root / episode_filename(index), arrays)
        manifest["episodes"].append({"index": index, "seed": index, "file": episode_filename(index),
                                     "length": steps})
    write_manifest(root, manifest)


def test_tiny_preset_overfits_a_batch():
    cfg = TrainWorldModelConfig.tiny(clip_frames=6, sigma_ctx_max=0.1)
    model_cfg = WorldModelConfig.tiny()
    torch.manual_seed(0)
    model, uncertainty = WorldModel(model_cfg), LossUncertainty()
    g = torch.Generator().manual_seed(0)
    batch = DartBatch(
        latents=torch.randn(2, 6, *model_cfg.latent_shape, generator=g),
        actions=torch.randint(0, 4, (2, 5), generator=g),
        rewards=torch.randn(2, 5, generator=g) * 3,
        terminated=torch.rand(2, 5, generator=g) < 0.2,
    )
    opt = torch.optim.Adam(list(model.parameters()) + list(uncertainty.parameters()), lr=3e-3)
    start = time.perf_counter()
    raw = []
    for _ in range(100):
        losses = dart_losses(model, uncertainty, batch, cfg, torch.Generator().manual_seed(1))  # fixed noise
        opt.zero_grad()
        losses.total.backward()
        opt.step()
        raw.append(float(losses.denoise_raw))
    assert raw[-1] < raw[0] / 10, raw[::25]
    assert float(losses.reward) < 1.0 and float(losses.term) < 0.3
    assert time.perf_counter() - start < 30


@pytest.fixture()
def latents_dir(tmp_path):
    root = tmp_path / "latents"
    write_latent_dataset(root)
    return root


def test_training_resumes_exactly_after_an_interruption(latents_dir, tmp_path):
    cfg = TrainWorldModelConfig.tiny(steps=12, val_every=4, log_every=2)
    straight = train_world_model(latents_dir, tmp_path / "a", config=cfg, progress=False)
    train_world_model(latents_dir, tmp_path / "b", config=cfg, progress=False, stop_after=6)  # "killed" at 6
    resumed = train_world_model(latents_dir, tmp_path / "b", config=cfg, progress=False)
    a, b = load_file(straight), load_file(resumed)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=0, rtol=0, msg=k)
    records = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["split"] == "train"] == list(range(2, 13, 2))
    assert {r["step"] for r in records if r["split"] == "val"} == {4, 6, 8, 12}  # 6: the interruption
    meta = read_metadata(resumed)
    assert meta["spec"] == GameSpec() and meta["latent_shape"] == LATENT and meta["notes"]["step"] == 12
    model = load_world_model(resumed)
    assert model.config.num_actions == 4 and not model.training


def test_init_from_starts_a_fresh_run_from_given_weights(latents_dir, tmp_path):
    first = train_world_model(latents_dir, tmp_path / "a", config=TrainWorldModelConfig.tiny(steps=4), progress=False)
    # lr 0: the weights cannot move, so the new run's EMA must be exactly the file it started from
    cfg = TrainWorldModelConfig.tiny(steps=3, lr_ref=0.0, seed=5, init_from=str(first))
    second = train_world_model(latents_dir, tmp_path / "b", config=cfg, progress=False)
    a, b = load_file(first), load_file(second)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=0, rtol=0, msg=k)
    assert read_metadata(second)["notes"]["step"] == 3
    # a new attention window: no weight depends on it, so the same weights continue under W = 3 (tiny: 4)
    cfg = TrainWorldModelConfig.tiny(steps=3, lr_ref=0.0, init_from=str(first), window=3)
    third = train_world_model(latents_dir, tmp_path / "w", config=cfg, progress=False)
    assert load_world_model(first).config.window == 4 and load_world_model(third).config.window == 3
    c = load_file(third)
    for k in a:
        torch.testing.assert_close(a[k], c[k], atol=0, rtol=0, msg=k)
    fresh = train_world_model(
        latents_dir, tmp_path / "f", config=TrainWorldModelConfig.tiny(steps=1, window=5), progress=False
    )
    assert load_world_model(fresh).config.window == 5
    with pytest.raises(ValueError, match="window must be"):
        TrainWorldModelConfig.tiny(window=0)
    other = tmp_path / "other"
    save_world_model(WorldModel(WorldModelConfig.tiny(latent_channels=2)), other / "wm.safetensors", GameSpec())
    with pytest.raises(ValueError, match="latents of shape"):
        train_world_model(
            latents_dir, tmp_path / "c", progress=False,
            config=TrainWorldModelConfig.tiny(init_from=str(other / "wm.safetensors")),
        )


def test_validation_loss_falls_on_held_out_episodes(latents_dir, tmp_path):
    val = EpisodeWindows(latents_dir, 6, split="val", key="latents", val_fraction=0.34)
    train = EpisodeWindows(latents_dir, 6, split="train", key="latents", val_fraction=0.34)
    assert len(val) and len(train)
    cfg = TrainWorldModelConfig.tiny(steps=60, val_every=30, log_every=30)
    train_world_model(None, tmp_path / "run", config=cfg, train_data=train, val_data=val, progress=False)
    vals = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    vals = [r["denoise_raw"] for r in vals if r["split"] == "val"]
    assert vals[-1] < vals[0]


def test_load_refuses_other_spec_and_corrupt_files(tmp_path):
    model = WorldModel(WorldModelConfig.tiny())
    path = save_world_model(model, tmp_path / "wm.safetensors", GameSpec(action_repeat=3))
    with pytest.raises(SpecMismatchError, match="action_repeat"):
        load_world_model(path)
    loaded = load_world_model(path, spec=GameSpec(action_repeat=3))
    for k, v in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[k], v)
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match="bad.safetensors"):
        load_world_model(bad)
    with pytest.raises(FileNotFoundError):
        load_world_model(tmp_path / "missing.safetensors")


def test_notes_are_written_as_notes_and_read_from_older_files_key_extra(tmp_path):
    """The metadata key was `extra` before it took the VAE's and the agents' name `notes`: both read as `notes`."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    path = save_world_model(WorldModel(WorldModelConfig.tiny()), tmp_path / "wm.safetensors", GameSpec(), {"step": 4})
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    assert "extra" not in meta and read_metadata(path)["notes"] == {"step": 4}
    old = tmp_path / "old.safetensors"
    meta["extra"] = meta.pop("notes")
    save_file(load_file(path), old, metadata=meta)
    assert read_metadata(old)["notes"] == {"step": 4}
    assert load_world_model(old).config == WorldModelConfig.tiny()


def test_power_ema_profile_and_lr_schedule():
    from training.world_model.ema import PowerFunctionEMA, std_to_exp
    from training.world_model.train import learning_rate

    gamma = std_to_exp(0.05)
    assert ((gamma + 1) / ((gamma + 2) ** 2 * (gamma + 3))) ** 0.5 == pytest.approx(0.05)  # EDM2 eq. 3
    model = torch.nn.Linear(1, 1, bias=False)
    ema = PowerFunctionEMA(model, 0.05)
    for t in range(1, 4):
        model.weight.data.fill_(float(t))
        ema.update(model, t)
    # beta(t) = (1 - 1/t)^(gamma + 1): step 1 copies the weights, later steps average towards the newest
    b2, b3 = (1 / 2) ** (gamma + 1), (2 / 3) ** (gamma + 1)
    assert ema.state["weight"].item() == pytest.approx((1 * b2 + 2 * (1 - b2)) * b3 + 3 * (1 - b3))
    cfg = TrainWorldModelConfig.tiny(lr_ref=1e-3, lr_t_ref=100, lr_warmup=10)
    assert learning_rate(5, cfg) == pytest.approx(5e-4)
    assert learning_rate(100, cfg) == pytest.approx(1e-3)
    assert learning_rate(400, cfg) == pytest.approx(5e-4)  # EDM2 eq. 67: 1 / sqrt(4)


class CountingWindows:
    """EpisodeWindows that records the edge fractions every training batch was drawn with."""

    def __init__(self, windows: EpisodeWindows) -> None:
        self.windows, self.spec, self.calls = windows, windows.spec, []

    def sample_batch(self, rng, batch_size, start_fraction=0.0, end_fraction=0.0):
        self.calls.append((start_fraction, end_fraction))
        return self.windows.sample_batch(rng, batch_size, start_fraction, end_fraction)


def test_trainer_draws_episode_edges_as_configured(latents_dir, tmp_path):
    train = CountingWindows(EpisodeWindows(latents_dir, 6, split="train", key="latents", val_fraction=0.34))
    val = EpisodeWindows(latents_dir, 6, split="val", key="latents", val_fraction=0.34)
    cfg = TrainWorldModelConfig.tiny(steps=3, start_clip_fraction=0.25, end_clip_fraction=0.5)
    train_world_model(None, tmp_path / "run", config=cfg, train_data=train, val_data=val, progress=False)
    assert train.calls[-3:] == [(0.25, 0.5)] * 3  # the training batches (earlier calls: sigma_data probes)
    assert set(train.calls[:-3]) <= {(0.0, 0.0)}
    assert TrainWorldModelConfig.default().end_clip_fraction > 0  # the shipped recipe uses them
    with pytest.raises(ValueError, match="end_clip_fraction"):
        TrainWorldModelConfig.tiny(start_clip_fraction=0.6, end_clip_fraction=0.5)


def test_cli_overrides_window_and_clip_length(latents_dir, tmp_path):
    from typer.testing import CliRunner

    from oniris_env.cli import app
    from training.world_model.checkpoint import load_checkpoint

    out = tmp_path / "run"
    args = ["train", "world-model", "--latents", str(latents_dir), "--out", str(out), "--preset", "tiny"]
    result = CliRunner().invoke(app, [*args, "--steps", "1", "--window", "3", "--clip-frames", "5", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert load_world_model(out / "world_model.safetensors").config.window == 3
    assert load_checkpoint(out).train_config["clip_frames"] == 5
    result = CliRunner().invoke(app, [*args, "--window", "0"])
    assert result.exit_code == 2 and "--window" in result.output


class InterruptingWindows(CountingWindows):
    """Interrupts the trainer when it draws training batch number `at` (1-based): raises KeyboardInterrupt (as
    Ctrl-C would) or, with `sigterm`, sends this process SIGTERM (as kill, timeout or torchrun would)."""

    def __init__(self, windows: EpisodeWindows, at: int, sigterm: bool = False) -> None:
        super().__init__(windows)
        self.at, self.sigterm = at, sigterm

    def sample_batch(self, rng, batch_size, start_fraction=0.0, end_fraction=0.0):
        if len([c for c in self.calls if c != (0.0, 0.0)]) + 1 == self.at:
            if self.sigterm:  # the step goes on: the run saves after it
                os.kill(os.getpid(), signal.SIGTERM)
            else:
                rng.random()  # the interrupted step has already used the generator: the checkpoint must not keep that
                raise KeyboardInterrupt
        return super().sample_batch(rng, batch_size, start_fraction, end_fraction)


@pytest.mark.parametrize("sigterm", [False, True], ids=["ctrl-c", "sigterm"])
def test_an_interruption_saves_and_the_run_resumes_exactly(latents_dir, tmp_path, sigterm):
    """Ctrl-C during step 7 saves 6 steps (step 7 is redone); SIGTERM lets step 7 end, saves 7 and exits 143."""
    from training.interrupt import Terminated

    def windows(split):
        return EpisodeWindows(latents_dir, 6, split=split, key="latents", val_fraction=0.34)

    cfg = TrainWorldModelConfig.tiny(steps=10, val_every=100, start_clip_fraction=0.25, end_clip_fraction=0.25)
    straight = train_world_model(
        None, tmp_path / "a", config=cfg, train_data=windows("train"), val_data=windows("val"), progress=False
    )
    with pytest.raises(Terminated if sigterm else KeyboardInterrupt) as stopped:  # no periodic checkpoint before
        train_world_model(
            None, tmp_path / "b", config=cfg, train_data=InterruptingWindows(windows("train"), 7, sigterm),
            val_data=windows("val"), progress=False,
        )
    if sigterm:
        assert stopped.value.code == 128 + signal.SIGTERM and stopped.value.step == 7
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the handler lives only while training
    assert read_metadata(tmp_path / "b" / "world_model.safetensors")["notes"]["step"] == (7 if sigterm else 6)
    resumed = train_world_model(
        None, tmp_path / "b", config=cfg, train_data=windows("train"), val_data=windows("val"), progress=False
    )
    a, b = load_file(straight), load_file(resumed)
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=0, rtol=0, msg=k)


def test_ctrl_c_during_validation_resumes_exactly(latents_dir, tmp_path, interrupt_call):
    """Ctrl-C during the validation after step 6 saves 6 finished steps with the random streams after step 6."""
    import training.world_model.train as train_module

    def run(out):
        val = EpisodeWindows(latents_dir, 6, split="val", key="latents", val_fraction=0.34)
        train = EpisodeWindows(latents_dir, 6, split="train", key="latents", val_fraction=0.34)
        cfg = TrainWorldModelConfig.tiny(steps=10, val_every=3, log_every=2)
        return train_world_model(None, out, config=cfg, train_data=train, val_data=val, progress=False)

    straight = run(tmp_path / "a")
    interrupt_call(train_module, "validate", 2)  # the validation after step 6 (tests/conftest.py)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b")
    assert read_metadata(tmp_path / "b" / "world_model.safetensors")["notes"]["step"] == 6
    a, b = load_file(straight), load_file(run(tmp_path / "b"))
    for k in a:
        torch.testing.assert_close(a[k], b[k], atol=0, rtol=0, msg=k)
    records = [json.loads(line) for line in (tmp_path / "b" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["split"] == "train"] == [2, 4, 6, 8, 10]


def test_resume_refuses_a_changed_config_naming_the_fields(latents_dir, tmp_path):
    """The saved config used to win silently over new settings (a `default` preset kept training the tiny model)."""
    from typer.testing import CliRunner

    from oniris_env.cli import app

    cfg = TrainWorldModelConfig.tiny(steps=2)
    train_world_model(latents_dir, tmp_path / "run", config=cfg, progress=False)
    changed = replace(cfg, lr_ref=0.5, clip_frames=4)
    with pytest.raises(ValueError, match=r"clip_frames: 6 -> 4; lr_ref: 0.002 -> 0.5.*resume=False"):
        train_world_model(latents_dir, tmp_path / "run", config=changed, progress=False)
    more = replace(cfg, steps=3, num_threads=1)
    resumed = train_world_model(latents_dir, tmp_path / "run", config=more, progress=False)
    assert read_metadata(resumed)["notes"]["step"] == 3  # more steps and other threads are not a new config
    args = ["train", "world-model", "--latents", str(latents_dir), "--out", str(tmp_path / "run"), "--device", "cpu"]
    result = CliRunner().invoke(app, [*args, "--preset", "default"])
    assert result.exit_code == 2 and "--no-resume" in result.output and len(result.output.strip().splitlines()) == 1
