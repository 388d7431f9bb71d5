"""`OnirisLunarLander-v0` on a tiny random-init bundle: checkers, determinism, reset options, bad inputs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import oniris_env  # noqa: F401  (registers the ids)
from oniris_env.bundle import (
    CONTEXTS_FILE,
    VAE_FILE,
    WORLD_MODEL_FILE,
    load_bundle,
    save_random_bundle,
    shipped_weights_dir,
)
from oniris_env.dream_env import OnirisLunarLanderDream
from oniris_env.spec import GameSpec, SpecMismatchError

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-init bundle whose start contexts are the first frames of 2 real random-policy episodes."""
    from training.bank import build_start_contexts, write_start_contexts
    from training.collect import collect_episodes

    root = tmp_path_factory.mktemp("dream")
    collect_episodes(root / "data", 2, seed=11, policy="random", progress=False)
    contexts, _ = build_start_contexts(root / "data", length=3)
    assert contexts.frames.shape == (2, 3, 64, 96, 3) and contexts.actions.shape == (2, 2)
    path = save_random_bundle(root / "bundle", contexts=contexts)
    write_start_contexts(root / "data", path, length=3)  # the same bank, through the file-writing entry point
    assert np.array_equal(load_bundle(path).contexts.frames, contexts.frames)
    return path


def test_gymnasium_env_checker(bundle: Path) -> None:
    from gymnasium.utils.env_checker import check_env

    check_env(gym.make("OnirisLunarLander-v0", weights=bundle, render_mode="rgb_array").unwrapped)
    check_env(gym.make("OnirisLunarLander-v0", weights=bundle, obs_mode="latent").unwrapped, skip_render_check=True)


def test_sb3_env_checker(bundle: Path) -> None:
    from stable_baselines3.common.env_checker import check_env

    check_env(gym.make("OnirisLunarLander-v0", weights=bundle).unwrapped, warn=False)


def _rollout(env: gym.Env, seed: int, actions: list[int]) -> list[tuple]:
    obs, _ = env.reset(seed=seed)
    out = [(obs.copy(),)]
    for a in actions:
        obs, reward, terminated, truncated, info = env.step(a)
        out.append((obs.copy(), reward, terminated, truncated, info["latent"].copy()))
    return out


def test_seeded_rollouts_are_identical_over_50_steps(bundle: Path) -> None:
    actions = np.random.default_rng(0).integers(4, size=50).tolist()
    first = _rollout(OnirisLunarLanderDream(weights=bundle), 7, actions)
    again = _rollout(OnirisLunarLanderDream(weights=bundle), 7, actions)
    for a, b in zip(first, again, strict=True):
        for x, y in zip(a, b, strict=True):
            assert np.array_equal(x, y)
    other = _rollout(OnirisLunarLanderDream(weights=bundle), 8, actions)
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(first[1:], other[1:], strict=True))


def test_step_types_and_spaces(bundle: Path) -> None:
    env = gym.make("OnirisLunarLander-v0", weights=bundle, render_mode="rgb_array")
    assert env.spec.max_episode_steps == 500
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs) and info["context_length"] == 3
    assert np.array_equal(env.render(), obs)
    obs, reward, terminated, truncated, info = env.step(np.int64(2))
    assert env.observation_space.contains(obs) and np.array_equal(env.render(), obs)
    assert type(reward) is float and type(terminated) is bool and type(truncated) is bool
    latent_shape = load_bundle(bundle).world_model.config.latent_shape
    assert info["latent"].shape == latent_shape and info["latent"].dtype == np.float32

    latent_env = gym.make("OnirisLunarLander-v0", weights=bundle, obs_mode="latent")
    obs, _ = latent_env.reset(seed=0)
    assert obs.shape == latent_shape and obs.dtype == np.float32
    assert latent_env.observation_space.contains(latent_env.step(0)[0])


def test_time_limit_truncates(bundle: Path) -> None:
    env = gym.make("OnirisLunarLander-v0", weights=bundle, max_episode_steps=3, termination_threshold=0.999999)
    env.reset(seed=0)
    assert [env.step(0)[3] for _ in range(3)] == [False, False, True]
    direct = OnirisLunarLanderDream(weights=bundle, max_episode_steps=2, termination_threshold=0.999999)
    direct.reset(seed=0)
    assert [direct.step(0)[3] for _ in range(2)] == [False, True]


def test_reset_from_given_context(bundle: Path) -> None:
    env = OnirisLunarLanderDream(weights=bundle)
    frames = load_bundle(bundle).contexts.frames[1]
    obs, info = env.reset(seed=0, options={"context_frames": frames, "context_actions": np.array([1, 2])})
    assert np.array_equal(obs, frames[-1]) and info["context_length"] == 3
    obs, info = env.reset(options={"context_frames": frames[:1]})  # T = 1: no actions needed
    assert np.array_equal(obs, frames[0]) and info["context_length"] == 1
    long = np.concatenate([frames] * 3)  # 9 frames > window 4: the last 4 are used
    obs, info = env.reset(options={"context_frames": long, "context_actions": np.zeros(8, np.int64)})
    assert np.array_equal(obs, frames[-1]) and info["context_length"] == env.simulator.world_model.config.window
    env.step(0)


def test_bad_actions_raise_and_step_nothing(bundle: Path) -> None:
    env = OnirisLunarLanderDream(weights=bundle)
    with pytest.raises(RuntimeError, match="before reset"):
        env.step(0)
    reference = OnirisLunarLanderDream(weights=bundle)
    env.reset(seed=3)
    reference.reset(seed=3)
    for bad in (4, -1, 1.5, "2", None, np.array([1, 2]), True, np.bool_(True)):
        with pytest.raises(ValueError, match=r"action must be an int in \[0, 4\)"):
            env.step(bad)
    assert np.array_equal(env.step(1)[0], reference.step(1)[0])  # the bad calls advanced nothing


def test_step_and_reset_after_close_raise(bundle: Path) -> None:
    env = OnirisLunarLanderDream(weights=bundle)
    env.reset(seed=0)
    env.close()
    env.close()  # twice is allowed
    with pytest.raises(RuntimeError, match=r"step\(\) called after close"):
        env.step(0)
    with pytest.raises(RuntimeError, match=r"reset\(\) called after close"):
        env.reset(seed=0)
    wrapped = gym.make("OnirisLunarLander-v0", weights=bundle)
    wrapped.reset(seed=0)
    wrapped.close()
    with pytest.raises(RuntimeError, match="after close"):
        wrapped.step(0)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"context_frames": np.zeros((2, 64, 96), np.uint8)}, r"\(T, 64, 96, 3\)"),
        ({"context_frames": np.zeros((2, 96, 64, 3), np.uint8), "context_actions": [0]}, r"\(T, 64, 96, 3\)"),
        ({"context_frames": np.zeros((2, 64, 96, 3), np.float32), "context_actions": [0]}, "uint8"),
        ({"context_frames": np.zeros((0, 64, 96, 3), np.uint8)}, "T >= 1"),
        ({"context_frames": np.zeros((3, 64, 96, 3), np.uint8), "context_actions": [0]}, r"shape \(2,\)"),
        ({"context_frames": np.zeros((3, 64, 96, 3), np.uint8)}, "context_actions"),
        ({"context_frames": np.zeros((2, 64, 96, 3), np.uint8), "context_actions": [7]}, r"in \[0, 4\)"),
        ({"context_frames": np.zeros((1, 64, 96, 3), np.uint8), "start": 1}, "unknown reset options"),
    ],
)
def test_bad_context_raises_value_error(bundle: Path, options: dict, match: str) -> None:
    env = OnirisLunarLanderDream(weights=bundle)
    with pytest.raises(ValueError, match=match):
        env.reset(seed=0, options=options)


def test_bad_constructor_arguments(bundle: Path) -> None:
    with pytest.raises(ValueError, match="obs_mode"):
        OnirisLunarLanderDream(weights=bundle, obs_mode="rgb")
    with pytest.raises(ValueError, match="render_mode"):
        OnirisLunarLanderDream(weights=bundle, render_mode="ansi")
    with pytest.raises(ValueError, match="device"):
        OnirisLunarLanderDream(weights=bundle, device="tpu")


def _copy_bundle(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for name in (VAE_FILE, WORLD_MODEL_FILE, CONTEXTS_FILE):
        (dst / name).write_bytes((src / name).read_bytes())
    return dst


def test_weights_for_another_spec_are_refused(bundle: Path, tmp_path: Path) -> None:
    other = GameSpec(action_repeat=3)
    for name in (WORLD_MODEL_FILE, VAE_FILE):
        made = save_random_bundle(tmp_path / name, spec=other)
        mixed = _copy_bundle(bundle, tmp_path / f"mixed-{name}")
        (mixed / name).write_bytes((made / name).read_bytes())
        with pytest.raises(SpecMismatchError, match=rf"(?s){name}.*action_repeat: expected 2, found 3"):
            OnirisLunarLanderDream(weights=mixed)


def test_corrupt_files_are_named(bundle: Path, tmp_path: Path) -> None:
    for name in (VAE_FILE, WORLD_MODEL_FILE, CONTEXTS_FILE):
        broken = _copy_bundle(bundle, tmp_path / f"broken-{name}")
        data = (broken / name).read_bytes()
        (broken / name).write_bytes(data[: len(data) // 2])
        with pytest.raises(ValueError, match=name.replace(".", r"\.")):
            OnirisLunarLanderDream(weights=broken)


def test_damaged_file_with_a_valid_header_is_named_by_its_checksum(bundle: Path, tmp_path: Path) -> None:
    """Flipped bytes inside the tensors leave a loadable file: only the recorded checksum tells."""
    from oniris_env.checksums import write_checksums

    for name in (VAE_FILE, WORLD_MODEL_FILE, CONTEXTS_FILE):
        damaged = _copy_bundle(bundle, tmp_path / f"damaged-{name}")
        write_checksums(damaged, (VAE_FILE, WORLD_MODEL_FILE, CONTEXTS_FILE))
        OnirisLunarLanderDream(weights=damaged).close()  # intact: loads
        data = bytearray((damaged / name).read_bytes())
        data[-9:-1] = b"\xff" * 8  # the last bytes of the last tensor (NaN in float32)
        (damaged / name).write_bytes(bytes(data))
        with pytest.raises(ValueError, match=rf"{name.replace('.', '[.]')} is damaged.*SHA256SUMS"):
            OnirisLunarLanderDream(weights=damaged)


def test_shipped_weights_match_their_recorded_checksums() -> None:
    from oniris_env.checksums import RECORD, verify_checksum

    shipped = shipped_weights_dir()
    recorded = (shipped / RECORD).read_text()
    for name in (VAE_FILE, WORLD_MODEL_FILE, CONTEXTS_FILE):
        assert f"  {name}\n" in recorded
        verify_checksum(shipped / name)


def test_pickled_start_contexts_are_never_unpickled(bundle: Path, tmp_path: Path) -> None:
    evil = _copy_bundle(bundle, tmp_path / "evil")
    np.savez(evil / CONTEXTS_FILE, frames=np.array([object()], dtype=object), actions=np.zeros(1), spec=np.array("{}"))
    with pytest.raises(ValueError, match=CONTEXTS_FILE.replace(".", r"\.")):
        OnirisLunarLanderDream(weights=evil)


def test_missing_weights_name_the_path_and_the_command(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"(?s)world_model\.safetensors.*oniris-env train"):
        OnirisLunarLanderDream(weights=tmp_path)
    if not (shipped_weights_dir() / WORLD_MODEL_FILE).is_file():
        with pytest.raises(FileNotFoundError, match=r"(?s)oniris_env/weights.*oniris-env train"):
            gym.make("OnirisLunarLander-v0")


def test_empty_or_non_path_weights_are_refused(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from oniris_env.vector import OnirisLunarLanderVector

    monkeypatch.chdir(bundle)  # "" would have loaded the bundle of the current folder
    for make in (OnirisLunarLanderDream, OnirisLunarLanderVector):
        with pytest.raises(ValueError, match="weights is an empty path"):
            make(weights="")
        with pytest.raises(TypeError, match="weights must be a directory path"):
            make(weights=3)
    assert load_bundle(".").path == Path(".")  # a folder given explicitly is still a folder


def test_make_without_prior_import(bundle: Path) -> None:
    code = (
        "import sys, gymnasium as gym\n"
        f"env = gym.make('oniris_env:OnirisLunarLander-v0', weights={str(bundle)!r})\n"
        "obs, _ = env.reset(seed=0)\n"
        "assert obs.shape == (64, 96, 3), obs.shape\n"
        "env.step(0)\n"
        "vec = gym.make_vec('OnirisLunarLander-v0', num_envs=2, weights=" + repr(str(bundle)) + ")\n"
        "assert vec.reset(seed=0)[0].shape == (2, 64, 96, 3)\n"
        "print('ok')\n"
    )
    env = {**os.environ, "SDL_VIDEODRIVER": "dummy", "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_import_stays_torch_free() -> None:
    code = "import sys, oniris_env, gymnasium as gym; gym.spec('OnirisLunarLander-v0'); print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "False", result.stderr


def test_simulator_equals_the_value_cache_oracle(bundle: Path) -> None:
    """The simulator (in-place ring cache, spliced resets) == the same dream computed with immutable caches
    and the plain sampler functions, past the window and across a reset of one dream."""
    from oniris_env.sampler import commit_context, sample_next
    from oniris_env.simulator import DEFAULT_TERMINATION_THRESHOLD, DreamSimulator
    from oniris_env.world_model import frame_actions

    loaded = load_bundle(bundle)
    model, steps = loaded.world_model, 10  # > window (4)
    sim = DreamSimulator.from_bundle(loaded, 2, decode=False)
    sim.seed(0)
    sim.reset(None, np.random.default_rng(0))
    actions = [np.array([t % 4, 2]) for t in range(steps)]
    got = [sim.step(a) for a in actions]
    sim.reset(np.array([False, True]), np.random.default_rng(1))
    got.append(sim.step(np.array([1, 3])))

    gen = torch.Generator().manual_seed(0)
    sigma = sim.sampler.sigma_min

    def start(rng: np.random.Generator, n: int) -> tuple:
        pick = rng.integers(len(loaded.contexts), size=n)
        latents = loaded.vae.encode_frames(loaded.contexts.frames[pick])
        acts = torch.as_tensor(loaded.contexts.actions[pick], dtype=torch.int64)
        return latents, frame_actions(acts, model.config.start_action)

    with torch.inference_mode():
        cache, _ = commit_context(model, model.init_cache(2), *start(np.random.default_rng(0), 2), gen, sigma)
        want = []
        for a in actions:
            out = sample_next(model, cache, torch.as_tensor(a), gen, sim.sampler)
            cache = out.cache
            want.append(out)
        fresh, _ = commit_context(model, model.init_cache(1), *start(np.random.default_rng(1), 1), gen, sigma)
        want.append(sample_next(model, cache.splice(torch.tensor([1]), fresh), torch.tensor([1, 3]), gen,
                                sim.sampler))
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g.latents, w.latent, rtol=0, atol=1e-5)
        torch.testing.assert_close(torch.as_tensor(g.term_logits), w.term_logit.float(), rtol=0, atol=1e-4)
        assert np.array_equal(g.terminated, 1 / (1 + np.exp(-g.term_logits)) > DEFAULT_TERMINATION_THRESHOLD)


def test_bank_contexts_are_encoded_once_alone(bundle: Path) -> None:
    """A reset from the bank uses each context's own encoding (`encode_frames` of that context alone), computed on
    its first draw and kept: later draws call no VAE, and a reseeded simulator reproduces the same dream."""
    from oniris_env.simulator import DreamSimulator

    loaded = load_bundle(bundle)
    calls = []
    encode = loaded.vae.encode_frames

    def counting(frames, *args, **kwargs):
        calls.append(len(frames))
        return encode(frames, *args, **kwargs)

    loaded.vae.encode_frames = counting
    sim = DreamSimulator.from_bundle(loaded, 3, decode=False)
    pick = np.random.default_rng(4).integers(len(loaded.contexts), size=3)
    _, latents = sim.reset(None, np.random.default_rng(4))
    want = torch.cat([encode(loaded.contexts.frames[i : i + 1])[:, -1] for i in pick])
    assert torch.equal(latents, want)
    assert calls == [1] * len(set(pick.tolist()))
    runs = []
    for _ in range(2):
        sim.seed(0)
        sim.reset(None, np.random.default_rng(4))
        runs.append([sim.step(np.array([0, 1, 2])).latents for _ in range(3)])
    assert len(calls) == len(set(pick.tolist()))  # no VAE call after the first draws
    for a, b in zip(*runs, strict=True):
        assert torch.equal(a, b)
