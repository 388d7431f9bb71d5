"""The batched adapters: gymnasium `VectorEnv` (`gym.make_vec`) and SB3 `VecEnv`, with same-step autoreset."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import oniris_env  # noqa: F401  (registers the ids)
from oniris_env.bundle import save_random_bundle
from oniris_env.sb3_vec_env import OnirisSB3VecEnv
from oniris_env.vector import OnirisLunarLanderVector

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py

NEVER, ALWAYS = 1 - 1e-9, 1e-9  # termination thresholds that a random-init head never / always exceeds


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_random_bundle(tmp_path_factory.mktemp("vector") / "bundle")


def test_make_vec_uses_the_vector_entry_point(bundle: Path) -> None:
    env = gym.make_vec("OnirisLunarLander-v0", num_envs=3, weights=bundle, max_episode_steps=7)
    assert isinstance(env.unwrapped, OnirisLunarLanderVector)
    assert env.num_envs == 3 and env.episodes.max_episode_steps == 7
    obs, info = env.reset(seed=0)
    assert obs.shape == (3, 64, 96, 3) and obs.dtype == np.uint8 and env.observation_space.contains(obs)
    obs, rewards, terminated, truncated, info = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs)
    assert rewards.shape == (3,) and terminated.dtype == np.bool_ and truncated.dtype == np.bool_
    default = gym.make_vec("OnirisLunarLander-v0", num_envs=2, weights=bundle)
    assert default.episodes.max_episode_steps == 500


def test_vector_time_limit_autoresets_in_the_same_step(bundle: Path) -> None:
    env = OnirisLunarLanderVector(num_envs=2, weights=bundle, max_episode_steps=3, termination_threshold=NEVER)
    env.reset(seed=0)
    for _ in range(2):
        obs, _, terminated, truncated, info = env.step(np.array([0, 1]))
        assert not terminated.any() and not truncated.any() and "final_obs" not in info
    obs, _, terminated, truncated, info = env.step(np.array([2, 3]))
    assert truncated.all() and not terminated.any()
    assert info["_final_obs"].all() and info["_final_info"].all()
    # the returned observation starts the next episode (a bank frame); the final one is the dream's last frame
    bank_last = env.episodes.simulator.contexts.frames[:, -1]
    for i in range(2):
        assert any(np.array_equal(obs[i], f) for f in bank_last)
        assert not np.array_equal(info["final_obs"][i], obs[i])
    assert not env.step(np.array([0, 0]))[3].any()  # the episode counter restarted


def test_vector_termination_autoresets(bundle: Path) -> None:
    env = OnirisLunarLanderVector(num_envs=2, weights=bundle, termination_threshold=ALWAYS, obs_mode="latent")
    obs, _ = env.reset(seed=0)
    obs, _, terminated, truncated, info = env.step(np.array([0, 0]))
    assert terminated.all() and not truncated.any() and info["_final_obs"].all()
    latent_shape = env.episodes.simulator.world_model.config.latent_shape
    assert obs.shape == (2, *latent_shape) and info["final_obs"][0].shape == latent_shape


def test_vector_partial_reset_and_contexts(bundle: Path) -> None:
    env = OnirisLunarLanderVector(num_envs=3, weights=bundle)
    first, _ = env.reset(seed=1)
    stepped, *_ = env.step(np.array([1, 2, 3]))
    frames = np.zeros((1, 2, 64, 96, 3), np.uint8)
    frames[0, -1, 10:20, 10:20] = 200
    options = {"reset_mask": np.array([False, True, False]), "context_frames": frames,
               "context_actions": np.array([[2]])}
    obs, _ = env.reset(options=options)
    assert np.array_equal(obs[1], frames[0, -1])
    assert np.array_equal(obs[[0, 2]], stepped[[0, 2]])
    with pytest.raises(ValueError, match="reset_mask"):
        env.reset(options={"reset_mask": np.zeros(3, bool)})


def test_vector_seeded_determinism(bundle: Path) -> None:
    def run() -> list[np.ndarray]:
        env = OnirisLunarLanderVector(num_envs=2, weights=bundle, max_episode_steps=4)
        out = [env.reset(seed=5)[0]]
        for t in range(10):
            out.append(env.step(np.array([t % 4, (t + 1) % 4]))[0])
        return out

    for a, b in zip(run(), run(), strict=True):
        assert np.array_equal(a, b)


def test_vector_bad_input(bundle: Path) -> None:
    env = OnirisLunarLanderVector(num_envs=2, weights=bundle)
    with pytest.raises(RuntimeError, match="before reset"):
        env.step(np.array([0, 0]))
    env.reset(seed=0)
    for bad in (np.array([0, 4]), np.array([0]), np.array([0.5, 1.0]), np.array([[0, 1]]), np.array([True, False]),
                [True, True]):
        with pytest.raises(ValueError, match="actions must be 2 ints"):
            env.step(bad)
    with pytest.raises(ValueError, match=r"\(N, T, 64, 96, 3\)"):
        env.reset(options={"context_frames": np.zeros((2, 64, 96, 3), np.uint8)})
    with pytest.raises(ValueError, match="unknown reset options"):
        env.reset(options={"foo": 1})


def test_vector_context_options_are_checked_as_the_single_env_checks_them(bundle: Path) -> None:
    from oniris_env.dream_env import OnirisLunarLanderDream

    env = OnirisLunarLanderVector(num_envs=2, weights=bundle)
    single = OnirisLunarLanderDream(weights=bundle)
    env.reset(seed=0)
    one = np.zeros((2, 1, 64, 96, 3), np.uint8)
    one[:, 0, 5:9, 5:9] = 150
    obs, _ = env.reset(options={"context_frames": one})  # a one-frame context needs no actions
    assert np.array_equal(obs, one[:, -1])
    single.reset(options={"context_frames": one[0]})
    for options in ({"context_actions": np.zeros((2, 1), np.int64)}, {"context_frames": np.zeros((2, 3, 64, 96, 3),
                                                                                                   np.uint8)}):
        with pytest.raises(ValueError, match="context_") as batched:
            env.reset(options=options)
        with pytest.raises(ValueError, match="context_") as alone:
            single.reset(options={k: v[0] for k, v in options.items()})
        assert str(batched.value).split("(")[0] == str(alone.value).split("(")[0]  # the same message


@pytest.mark.parametrize("num_envs", [2.5, True, "2", 0, -1])
def test_num_envs_must_be_a_positive_int(bundle: Path, num_envs) -> None:
    error = ValueError if isinstance(num_envs, int) and not isinstance(num_envs, bool) else TypeError
    for make in (OnirisLunarLanderVector, OnirisSB3VecEnv):
        with pytest.raises(error, match=r"num_envs must be an int >= 1, got"):
            make(num_envs=num_envs, weights=bundle)
    with pytest.raises(error, match="num_envs"):
        gym.make_vec("OnirisLunarLander-v0", num_envs=num_envs, weights=bundle)
    assert OnirisLunarLanderVector(num_envs=np.int64(2), weights=bundle).num_envs == 2


def test_step_and_reset_after_close_raise(bundle: Path) -> None:
    vector = OnirisLunarLanderVector(num_envs=2, weights=bundle)
    sb3 = OnirisSB3VecEnv(num_envs=2, weights=bundle)
    vector.reset(seed=0)
    sb3.reset()
    vector.close()
    sb3.close()
    vector.close()
    sb3.close()  # twice is allowed
    with pytest.raises(RuntimeError, match=r"step\(\) called after close"):
        vector.step(np.array([0, 0]))
    with pytest.raises(RuntimeError, match=r"reset\(\) called after close"):
        vector.reset(seed=0)
    with pytest.raises(RuntimeError, match=r"step\(\) called after close"):
        sb3.step(np.array([0, 0]))
    with pytest.raises(RuntimeError, match=r"reset\(\) called after close"):
        sb3.reset()


def test_sb3_vec_env_autoreset_contract(bundle: Path) -> None:
    env = OnirisSB3VecEnv(num_envs=2, weights=bundle, max_episode_steps=2, termination_threshold=NEVER)
    env.seed(0)
    obs = env.reset()
    assert obs.shape == (2, 64, 96, 3) and obs.dtype == np.uint8
    obs, rewards, dones, infos = env.step(np.array([0, 1]))
    assert rewards.dtype == np.float32 and dones.dtype == np.bool_ and not dones.any()
    assert infos == [{}, {}]
    obs, rewards, dones, infos = env.step(np.array([2, 3]))
    assert dones.all()
    for i, info in enumerate(infos):
        assert info["TimeLimit.truncated"] is True
        assert info["terminal_observation"].shape == (64, 96, 3)
        assert not np.array_equal(info["terminal_observation"], obs[i])

    terminating = OnirisSB3VecEnv(num_envs=2, weights=bundle, termination_threshold=ALWAYS)
    terminating.reset()
    _, _, dones, infos = terminating.step(np.array([0, 0]))
    assert dones.all() and all(info["TimeLimit.truncated"] is False for info in infos)
    with pytest.raises(ValueError, match="actions must be 2 ints"):
        terminating.step(np.array([0, 9]))


def test_sb3_vec_env_ends_dreams_that_lost_the_lander(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`lost_lander_reward`: a dream whose decoded frame shows no lander terminates with that reward; the others go
    on with the reward head's rewards (the locator is stubbed: a random-init bundle draws no lander)."""
    import training.lander

    seen: list[np.ndarray] = []

    def visible(frames: np.ndarray) -> np.ndarray:
        seen.append(frames)
        return np.array([True, False])

    monkeypatch.setattr(training.lander, "landers_visible", visible)
    plain = OnirisSB3VecEnv(num_envs=2, weights=bundle, obs_mode="latent", termination_threshold=NEVER)
    ruled = OnirisSB3VecEnv(
        num_envs=2, weights=bundle, obs_mode="latent", termination_threshold=NEVER, lost_lander_reward=-7.0
    )
    for env in (plain, ruled):
        env.seed(5)
        env.reset()
    _, plain_rewards, plain_dones, _ = plain.step(np.array([1, 2]))
    assert not seen and not plain_dones.any()
    obs, rewards, dones, infos = ruled.step(np.array([1, 2]))
    assert len(seen) == 1 and seen[0].shape == (2, 64, 96, 3) and seen[0].dtype == np.uint8
    assert dones.tolist() == [False, True] and infos[1]["TimeLimit.truncated"] is False and infos[1]["lost_lander"]
    assert rewards[0] == plain_rewards[0] and rewards[1] == -7.0
    assert infos[1]["terminal_observation"].shape == obs[1].shape


def test_sb3_vec_env_seeding_and_rendering(bundle: Path) -> None:
    def run() -> np.ndarray:
        env = OnirisSB3VecEnv(num_envs=2, weights=bundle, render_mode="rgb_array")
        env.seed(3)
        env.reset()
        obs = env.step(np.array([1, 2]))[0]
        assert np.array_equal(np.stack(env.get_images()), obs)
        return obs

    assert np.array_equal(run(), run())


def test_sb3_ppo_learns_in_the_batched_dream(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PPO learns through the adapter: when the dream rewards the main engine (action 2) and nothing else, a few
    updates on the latent observations make the policy pick it far more often than the 1 / 4 it starts with. The
    reward is swapped in at the simulator, so it reaches PPO through `DreamEpisodes` and the VecEnv as the reward
    head's would (a random-init bundle rewards no action in particular). With all rewards 0, p stays ~0.2."""
    import dataclasses

    import torch
    from stable_baselines3 import PPO

    env = OnirisSB3VecEnv(num_envs=2, weights=bundle, obs_mode="latent", max_episode_steps=5)
    simulator, dream_step = env.episodes.simulator, env.episodes.simulator.step

    def rewarding_main_engine(actions: np.ndarray):
        return dataclasses.replace(dream_step(actions), rewards=(np.asarray(actions) == 2).astype(np.float32))

    monkeypatch.setattr(simulator, "step", rewarding_main_engine)
    model = PPO("MlpPolicy", env, n_steps=16, batch_size=32, n_epochs=4, learning_rate=3e-3, seed=0, device="cpu")
    obs = torch.as_tensor(env.reset())

    def p_main_engine() -> float:
        with torch.no_grad():
            return float(model.policy.get_distribution(obs).distribution.probs[:, 2].mean())

    before = p_main_engine()
    model.learn(total_timesteps=256)
    after = p_main_engine()
    assert abs(before - 0.25) < 0.05 and after > 0.5, (before, after)  # 0.25 -> ~1.0 here in 256 steps


@pytest.mark.slow
def test_compiled_dream_equals_the_eager_one(bundle: Path) -> None:
    """`compile=True` (`torch.compile` of the cached step) dreams what the eager step dreams: the same seeded
    latents and rewards over two windows of steps (the ring cache wraps) and time-limit autoresets."""
    from oniris_env.bundle import load_bundle

    window = load_bundle(bundle).world_model.config.window

    def run(compile: bool) -> tuple[list[np.ndarray], list[np.ndarray]]:
        env = OnirisSB3VecEnv(num_envs=2, weights=bundle, obs_mode="latent", device="cpu",
                              max_episode_steps=window + 3, termination_threshold=NEVER, compile=compile)
        env.seed(3)
        obs, rewards = [env.reset()], []
        for t in range(2 * window + 2):
            env.step_async(np.array([t % 4, (t + 2) % 4]))
            o, r, _, _ = env.step_wait()
            obs.append(o)
            rewards.append(r)
        return obs, rewards

    (eager_obs, eager_rewards), (compiled_obs, compiled_rewards) = run(False), run(True)
    for a, b in zip(eager_obs + eager_rewards, compiled_obs + compiled_rewards, strict=True):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-5)
