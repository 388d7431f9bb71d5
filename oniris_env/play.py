"""Fly the lander with the keyboard in a pygame window: in the dream, in the real game, or both side by side.

Keys: Up / W / Space = main engine, Left / A = left engine, Right / D = right engine, nothing = no-op. One action
per step; when several are held the main engine wins, then left, then right. R resets, P pauses, Esc / Q quits.
Key state is tracked from pygame events (`KeyState`), so the loop runs headless with `SDL_VIDEODRIVER=dummy`
and scripted actions or posted events.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# Action indices (LunarLander): 0 no-op, 1 left engine, 2 main engine, 3 right engine.
NOOP, LEFT, MAIN, RIGHT = 0, 1, 2, 3
OVERLAY_HEIGHT = 34
RECORD_SCALE = 3


class KeyState:
    """Held keys, updated from pygame events; `action()` maps them to one LunarLander action."""

    def __init__(self) -> None:
        import pygame

        self._bindings = (
            (MAIN, {pygame.K_UP, pygame.K_w, pygame.K_SPACE}),
            (LEFT, {pygame.K_LEFT, pygame.K_a}),
            (RIGHT, {pygame.K_RIGHT, pygame.K_d}),
        )
        self._commands = {pygame.K_r: "reset", pygame.K_p: "pause", pygame.K_ESCAPE: "quit", pygame.K_q: "quit"}
        self._keydown, self._keyup, self._quit = pygame.KEYDOWN, pygame.KEYUP, pygame.QUIT
        self.held: set[int] = set()

    def handle(self, event: Any) -> str | None:
        """Update the held keys from one event; return 'reset', 'pause' or 'quit' for command keys."""
        if event.type == self._quit:
            return "quit"
        if event.type == self._keydown:
            self.held.add(event.key)
            return self._commands.get(event.key)
        if event.type == self._keyup:
            self.held.discard(event.key)
        return None

    def action(self) -> int:
        """Main engine > left > right > no-op, by the keys held now."""
        for action, keys in self._bindings:
            if self.held & keys:
                return action
        return NOOP


@dataclass(frozen=True)
class PlayConfig:
    """How a play session looks and ends."""

    scale: int = 6
    """Window pixels per frame pixel (nearest neighbour)."""
    fps: float = 25.0
    """Target steps per second (the real game runs at 50 physics steps/s / action_repeat = 25)."""
    max_steps: int | None = None
    """Stop after this many steps (for headless runs and tests)."""
    record: Path | None = None
    """Save the session to this .mp4 / .gif file."""
    seed: int | None = None
    """Seed of the first reset (later resets continue the env's RNG)."""

    def __post_init__(self) -> None:
        if self.scale < 1:
            raise ValueError(f"scale must be >= 1, got {self.scale}")
        if self.fps <= 0:
            raise ValueError(f"fps must be > 0, got {self.fps}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1, got {self.max_steps}")


@dataclass
class PlayResult:
    """What a session did (for tests and the CLI summary)."""

    steps: int = 0
    episodes: int = 0
    actions: list[int] = field(default_factory=list)
    returns: list[float] = field(default_factory=list)
    recorded_frames: int = 0
    slow_steps: int = 0


class Panels:
    """One or more envs stepped with the same action; the first one's start frame seeds the others (side by side)."""

    def __init__(self, envs: Sequence[Any], labels: Sequence[str], linked_start: bool = False) -> None:
        if not envs or len(envs) != len(labels):
            raise ValueError("need one label per env and at least one env")
        self.envs, self.labels, self.linked_start = list(envs), list(labels), linked_start

    def reset(self, seed: int | None) -> list[np.ndarray]:
        first, _ = self.envs[0].reset(seed=seed)
        frames = [first]
        start = {"context_frames": first[None], "context_actions": np.zeros(0, np.int64)}
        for env in self.envs[1:]:
            options = start if self.linked_start else None
            frames.append(env.reset(seed=seed, options=options)[0])
        return frames

    def step(self, action: int) -> tuple[list[np.ndarray], list[float], bool]:
        frames, rewards, done = [], [], False
        for env in self.envs:
            obs, reward, terminated, truncated, _ = env.step(action)
            frames.append(obs)
            rewards.append(float(reward))
            done = done or terminated or truncated
        return frames, rewards, done


def _compose(pygame: Any, font: Any, frames: list[np.ndarray], scale: int, lines: list[str]) -> Any:
    h, w, _ = frames[0].shape
    surface = pygame.Surface((len(frames) * w * scale + (len(frames) - 1) * scale, h * scale + OVERLAY_HEIGHT))
    surface.fill((25, 25, 35))
    for i, frame in enumerate(frames):
        img = pygame.surfarray.make_surface(np.ascontiguousarray(frame.transpose(1, 0, 2)))
        surface.blit(pygame.transform.scale(img, (w * scale, h * scale)), (i * (w + 1) * scale, 0))
    for j, line in enumerate(lines):
        surface.blit(font.render(line, True, (220, 220, 220)), (4, h * scale + 2 + 16 * j))
    return surface


def play(
    panels: Panels,
    config: PlayConfig,
    scripted: Sequence[int] | None = None,
    divergence: Callable[[np.ndarray, np.ndarray], float | None] | None = None,
    info_line: str = "",
    pilot: Any = None,
) -> PlayResult:
    """Run an interactive (or scripted) session; returns what happened. Needs a display or SDL_VIDEODRIVER=dummy.

    Args:
        panels: the env(s) to drive; two panels are shown side by side.
        config: window, pacing, recording, limits.
        scripted: actions to play instead of the keyboard (the session ends when they run out).
        divergence: `(frame_a, frame_b) -> px` shown for two panels (e.g. the lander-position gap).
        info_line: extra text for the overlay (e.g. the number of denoising steps).
        pilot: an agent that flies instead of the keyboard (`agents.pilot.AgentPilot`: `reset(env, frame)`,
            `observe(env, frame)`, `act() -> action`); it watches the first panel, and every panel gets its actions.
    """
    import pygame

    pygame.display.init()
    pygame.font.init()
    font = pygame.font.Font(None, 18)
    keys, result, recording = KeyState(), PlayResult(), []
    frames = panels.reset(config.seed)
    if pilot is not None:
        pilot.reset(panels.envs[0], frames[0])
    h, w, _ = frames[0].shape
    n = len(frames)
    screen = pygame.display.set_mode((n * w * config.scale + (n - 1) * config.scale, h * config.scale + OVERLAY_HEIGHT))
    pygame.display.set_caption("oniris-env: " + " | ".join(panels.labels))
    clock, budget = pygame.time.Clock(), 1.0 / config.fps
    paused, episode_return, reward, step_time, t = False, 0.0, 0.0, 0.0, 0
    script = iter(scripted) if scripted is not None else None
    try:
        while config.max_steps is None or result.steps < config.max_steps:
            command = None
            for event in pygame.event.get():
                command = keys.handle(event) or command
            if command == "quit":
                break
            if command == "pause":
                paused = not paused
            if command == "reset":
                frames, episode_return, t = panels.reset(None), 0.0, 0
                if pilot is not None:
                    pilot.reset(panels.envs[0], frames[0])
            if not paused:
                if pilot is not None:
                    action = pilot.act()
                else:
                    action = keys.action() if script is None else next(script, None)
                if action is None:
                    break
                started = time.perf_counter()
                frames, rewards, done = panels.step(action)
                step_time = time.perf_counter() - started
                result.slow_steps += step_time > budget
                reward, t = rewards[-1], t + 1
                episode_return += reward
                result.steps += 1
                result.actions.append(action)
                if done:
                    result.episodes += 1
                    result.returns.append(episode_return)
                    frames, episode_return, t = panels.reset(None), 0.0, 0
                    if pilot is not None:
                        pilot.reset(panels.envs[0], frames[0])
                elif pilot is not None:
                    pilot.observe(panels.envs[0], frames[0])
            slow = ""
            if step_time > budget:  # say so rather than stall input: keys are read every loop iteration
                slow = f"  SLOW: {1000 * step_time:.0f} ms/step > {1000 * budget:.0f} ms budget"
            gap = divergence(frames[0], frames[1]) if divergence is not None and n == 2 else None
            lines = [
                f"{clock.get_fps():4.1f} fps  step {t}  reward {reward:+.2f}  return {episode_return:+.1f}"
                + ("  PAUSED" if paused else ""),
                info_line + (f"  lander gap {gap:.1f} px" if gap is not None else "") + slow,
            ]
            screen.blit(_compose(pygame, font, frames, config.scale, lines), (0, 0))
            pygame.display.flip()
            if config.record is not None:
                rec = _compose(pygame, font, frames, min(config.scale, RECORD_SCALE), lines)
                recording.append(pygame.surfarray.array3d(rec).transpose(1, 0, 2))
            clock.tick(config.fps)
    finally:
        pygame.display.quit()
    if config.record is not None and recording:
        from oniris_env.video import write_video

        write_video(config.record, recording, config.fps)
        result.recorded_frames = len(recording)
    return result


def read_actions_file(path: Path | str, num_actions: int = 4) -> list[int]:
    """Scripted input: integers in [0, num_actions) separated by whitespace or commas; '#' starts a comment."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"actions file not found: {path}")
    try:
        text = path.read_text()
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a text file of actions (undecodable byte at position {e.start})") from e
    tokens = []
    for line in text.splitlines():
        tokens += line.split("#", 1)[0].replace(",", " ").split()
    try:
        actions = [int(tok) for tok in tokens]
    except ValueError as e:
        raise ValueError(f"{path}: actions must be integers in [0, {num_actions}): {e}") from e
    bad = [a for a in actions if not 0 <= a < num_actions]
    if bad or not actions:
        raise ValueError(f"{path}: actions must be integers in [0, {num_actions}), got {bad[:5] or 'none'}")
    return actions
