import gymnasium as gym
import numpy as np
import pytest
from gymnasium.envs.box2d.lunar_lander import LunarLander
from gymnasium.utils.env_checker import check_env

import oniris_env  # noqa: F401  (registers the ids)
from oniris_env.preprocess import area_matrix, preprocess_frame
from oniris_env.real_env import OnirisLunarLanderReal
from oniris_env.spec import GameSpec


def test_check_env_passes():
    env = gym.make("OnirisLunarLanderReal-v0")
    check_env(env.unwrapped, skip_render_check=False)
    assert env.observation_space.shape == (64, 96, 3) and env.observation_space.dtype == np.uint8
    assert env.action_space.n == 4


def test_make_without_prior_import_by_module_prefix():
    env = gym.make("oniris_env:OnirisLunarLanderReal-v0")
    obs, info = env.reset(seed=0)
    assert obs.shape == (64, 96, 3)


def rollout(seed, actions):
    env = OnirisLunarLanderReal()
    obs, info = env.reset(seed=seed)
    frames, states = [obs], [info["state"]]
    for a in actions:
        obs, _, term, trunc, info = env.step(a)
        frames.append(obs)
        states.append(info["state"])
        if term or trunc:
            break
    return np.stack(frames), np.stack(states)


def test_replay_is_deterministic():
    actions = np.random.default_rng(0).integers(4, size=40).tolist()
    f1, s1 = rollout(7, actions)
    f2, s2 = rollout(7, actions)
    np.testing.assert_array_equal(f1, f2)
    np.testing.assert_array_equal(s1, s2)
    f3, _ = rollout(8, actions)
    assert not np.array_equal(f1[:5], f3[:5])


def test_one_step_is_action_repeat_physics_steps_with_summed_reward():
    """Oracle: stepping LunarLander-v3 by hand k times with the same action gives the same state and reward sum."""
    actions = [2, 2, 1, 0, 3, 2, 0, 0, 1, 3]
    for k in (1, 2, 3):
        env = OnirisLunarLanderReal(action_repeat=k)
        _, info = env.reset(seed=3)
        ref = LunarLander()
        state, _ = ref.reset(seed=3)
        np.testing.assert_array_equal(info["state"], state)
        for i, a in enumerate(actions):
            _, reward, term, _, info = env.step(a)
            expected = 0.0
            for _ in range(k):
                state, r, ref_term, _, _ = ref.step(a)
                expected += r
                if ref_term:
                    break
            assert info["physics_steps"] == k * (i + 1) or term
            np.testing.assert_allclose(info["state"], state, rtol=0, atol=0)
            assert reward == pytest.approx(expected, abs=1e-9)
            assert isinstance(reward, float) and isinstance(term, bool)
            if term:
                break


def test_time_limit_is_counted_in_physics_steps():
    env = OnirisLunarLanderReal(action_repeat=3)
    assert env.game_spec.max_episode_steps == 334
    env.game_spec = GameSpec(action_repeat=3, max_physics_steps=10)
    env.reset(seed=0)
    flags = [env.step(0)[3] for _ in range(4)]
    assert flags == [False, False, False, True]  # 3 + 3 + 3 + 1 physics steps
    env.reset(seed=0)
    *_, info = env.step(0)
    assert info["physics_steps"] == 3


def test_terminal_step_reports_outcome_and_stops_repeating():
    env = OnirisLunarLanderReal(action_repeat=4)
    env.reset(seed=1)
    term = trunc = False
    while not (term or trunc):
        _, reward, term, trunc, info = env.step(0)  # free fall: crash
    assert term and info["outcome"] == "crashed"
    assert reward < -90  # the -100 crash penalty is included


def test_bad_input():
    env = OnirisLunarLanderReal()
    with pytest.raises(RuntimeError, match="reset"):
        env.step(0)
    env.reset(seed=0)
    for bad in (4, -1, 1.5, "a"):
        with pytest.raises(ValueError, match="action"):
            env.step(bad)
    with pytest.raises(ValueError, match="render_mode"):
        OnirisLunarLanderReal(render_mode="video")


def test_render_modes():
    env = OnirisLunarLanderReal(render_mode="rgb_array")
    obs, _ = env.reset(seed=0)
    np.testing.assert_array_equal(env.render(), obs)
    human = OnirisLunarLanderReal(render_mode="human")  # SDL dummy driver in tests
    human.reset(seed=0)
    human.step(0)
    human.close()


def test_area_averaging_matches_block_mean_and_preserves_mass():
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, size=(128, 192, 3), dtype=np.uint8)
    expected = frame.reshape(64, 2, 96, 2, 3).mean(axis=(1, 3))
    np.testing.assert_array_equal(preprocess_frame(frame), np.rint(expected).astype(np.uint8))
    m = area_matrix(400, 64)
    np.testing.assert_allclose(m.sum(1), 1.0, rtol=1e-6)  # each output averages
    np.testing.assert_allclose(m.sum(0), 64 / 400, rtol=1e-5)  # each input counted equally
    with pytest.raises(ValueError, match=r"\(H, W, 3\) uint8"):
        preprocess_frame(frame.astype(np.float32))
