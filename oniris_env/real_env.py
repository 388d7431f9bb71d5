"""`OnirisLunarLanderReal-v0`: the real LunarLander-v3 seen through the same pixels and steps as the dream."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.error import DependencyNotInstalled

from oniris_env.preprocess import preprocess_frame
from oniris_env.spec import DEFAULT_SPEC, GameSpec

#: LunarLander-v3 runs 50 physics steps per second.
PHYSICS_FPS = 50
#: Observation types of the real env: the 64 x 96 frame, or the true 8-d state (no rendering).
OBS_TYPES = ("pixels", "state")
#: LunarLander's state: x, y, vx, vy, angle, angular velocity, left leg contact, right leg contact.
STATE_DIM = 8


def episode_seed(base_seed: int, index: int) -> int:
    """The seed of episode `index` of a collection or evaluation started with `base_seed` (31-bit, for Box2D's
    reset): hashed, so that the episodes of two different bases never share a seed in practice."""
    return int(np.random.SeedSequence([base_seed, index]).generate_state(1)[0] >> 1)


def heuristic_action(state: np.ndarray) -> int:
    """The gymnasium heuristic pilot's action for the true 8-d state (LunarLander's discrete actions)."""
    from gymnasium.envs.box2d.lunar_lander import heuristic

    # the heuristic reads only `env.unwrapped.continuous` from its env argument
    return int(heuristic(SimpleNamespace(unwrapped=SimpleNamespace(continuous=False)), state))


def _make_lunar_lander() -> Any:
    try:
        from gymnasium.envs.box2d.lunar_lander import LunarLander
    except ImportError as e:  # Box2D or pygame missing
        raise DependencyNotInstalled(
            f"the real LunarLander needs Box2D and pygame-ce: pip install 'gymnasium[box2d]' ({e})"
        ) from e
    return LunarLander(render_mode="rgb_array")


def terminal_outcome(game: Any, terminated: bool, truncated: bool) -> str | None:
    """Why a LunarLander episode ended: 'landed', 'crashed', 'flew_off', 'timeout', or None if it did not."""
    if terminated:
        if not game.lander.awake:
            return "landed"
        if game.game_over:
            return "crashed"
        return "flew_off"  # |x| >= 1: left the screen sideways
    return "timeout" if truncated else None


class OnirisLunarLanderReal(gym.Env):
    """LunarLander-v3 with pixel observations, the ground truth every oniris model is trained and judged on.

    ## Description
    The Box2D game of Gymnasium's `LunarLander-v3` (discrete actions, default gravity, no wind), seen the way
    the dream `OnirisLunarLander-v0` shows it: small RGB frames and one env step per `action_repeat` physics
    steps.

    ## Action space
    `Discrete(4)`, LunarLander's meaning: 0 no-op, 1 left orientation engine, 2 main engine, 3 right engine.
    The action is applied for `action_repeat` consecutive physics steps.

    ## Observation space
    `Box(0, 255, (64, 96, 3), uint8)`: the 400 x 600 render resized by exact area averaging
    (`oniris_env.preprocess.preprocess_frame`, the one preprocessing used everywhere). With `obs_type="state"`
    the observation is LunarLander's 8-d state instead (`Box((8,), float32)`) and nothing is rendered: the same
    episodes at a fraction of the cost, for agents and baselines that read the true state.

    ## Rewards
    The sum of LunarLander's rewards over the repeated physics steps (shaping, fuel, and +-100 at the end).

    ## Episode end
    `terminated` when LunarLander terminates (crash, leaving the screen sideways, or coming to rest);
    repeating stops at that physics step. `truncated` after 1000 physics steps (LunarLander-v3's time
    limit), i.e. after `ceil(1000 / action_repeat)` env steps; the env enforces this itself.

    ## Info
    `info["state"]`: the true 8-d LunarLander state (float32) after `reset` and after every `step`;
    `info["physics_steps"]`: physics steps since reset; on the last step `info["outcome"]` is one of
    'landed', 'crashed', 'flew_off', 'timeout'.

    ## Arguments
    `action_repeat` (default 2, see docs/RESULTS.md), `render_mode` in {None, 'rgb_array', 'human'}, `obs_type`
    in {'pixels', 'state'} (default 'pixels'). `render()` shows the 64 x 96 frame (scaled up in a window for
    'human').

    ## Differences from LunarLander-v3
    Pixel observations instead of the state vector; coarser time steps (action repeat); the time limit is
    counted in physics steps.

    ## Version history
    v0: first version.
    """

    metadata = {"render_modes": ["rgb_array", "human"], "render_fps": PHYSICS_FPS // DEFAULT_SPEC.action_repeat}

    def __init__(
        self, action_repeat: int = DEFAULT_SPEC.action_repeat, render_mode: str | None = None, obs_type: str = "pixels"
    ) -> None:
        self.game_spec = GameSpec(action_repeat=action_repeat)
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        if obs_type not in OBS_TYPES:
            raise ValueError(f"obs_type must be one of {OBS_TYPES}, got {obs_type!r}")
        self.render_mode, self.obs_type = render_mode, obs_type
        self.metadata = {**self.metadata, "render_fps": PHYSICS_FPS / action_repeat}
        if obs_type == "state":
            self.observation_space = spaces.Box(-np.inf, np.inf, (STATE_DIM,), dtype=np.float32)
        else:
            self.observation_space = spaces.Box(0, 255, self.game_spec.frame_shape, dtype=np.uint8)
        self.action_space = spaces.Discrete(self.game_spec.num_actions)
        self._game = _make_lunar_lander()
        self._frame: np.ndarray | None = None
        self._started = False
        self._physics_steps = 0
        self._viewer: Any = None

    @property
    def game(self) -> Any:
        """The underlying Box2D `LunarLander` (for the heuristic pilot and tests)."""
        return self._game

    def _observe(self, state: np.ndarray) -> np.ndarray:
        """The observation after reset / step: the preprocessed frame, or the state (`obs_type="state"`), where
        a frame is rendered only when `render_mode` asks for one."""
        if self.obs_type == "pixels" or self.render_mode is not None:
            spec = self.game_spec
            self._frame = preprocess_frame(self._game.render(), spec.frame_height, spec.frame_width)
        if self.obs_type == "state":
            return np.asarray(state, dtype=np.float32)
        return self._frame

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        state, _ = self._game.reset(seed=seed)
        self._physics_steps = 0
        self._started = True
        obs = self._observe(state)
        if self.render_mode == "human":
            self.render()
        return obs, {"state": np.asarray(state, dtype=np.float32), "physics_steps": 0}

    def step(self, action: Any) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        if not self._started:
            raise RuntimeError("step() called before reset(): call env.reset() first")
        if not self.action_space.contains(action):
            raise ValueError(f"action must be an int in [0, {self.action_space.n}), got {action!r}")
        total, terminated, truncated = 0.0, False, False
        for _ in range(self.game_spec.action_repeat):
            state, reward, terminated, _, _ = self._game.step(int(action))
            self._physics_steps += 1
            total += float(reward)
            if terminated:
                break
            if self._physics_steps >= self.game_spec.max_physics_steps:
                truncated = True
                break
        obs = self._observe(state)
        info: dict[str, Any] = {"state": np.asarray(state, dtype=np.float32), "physics_steps": self._physics_steps}
        outcome = terminal_outcome(self._game, terminated, truncated)
        if outcome is not None:
            info["outcome"] = outcome
        if self.render_mode == "human":
            self.render()
        return obs, total, bool(terminated), truncated, info

    def render(self) -> np.ndarray | None:
        if self._frame is None:
            return None
        if self.render_mode == "rgb_array":
            return self._frame.copy()
        if self.render_mode == "human":
            from oniris_env.viewer import FrameViewer

            if self._viewer is None:
                self._viewer = FrameViewer("OnirisLunarLanderReal-v0", fps=self.metadata["render_fps"])
            self._viewer.show(self._frame)
        return None

    def close(self) -> None:
        if self._viewer is not None:
            self._viewer.close()
            self._viewer = None
        self._game.close()
