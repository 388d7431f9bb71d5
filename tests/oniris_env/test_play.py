import gymnasium as gym
import numpy as np
import pygame
import pytest
from PIL import Image
from typer.testing import CliRunner

import oniris_env  # noqa: F401
from oniris_env.cli import app
from oniris_env.play import LEFT, MAIN, NOOP, RIGHT, KeyState, Panels, PlayConfig, play, read_actions_file


def key(kind, k):
    return pygame.event.Event(kind, key=k)


def test_key_state_priority_and_commands():
    pygame.display.init()
    keys = KeyState()
    assert keys.action() == NOOP
    keys.handle(key(pygame.KEYDOWN, pygame.K_RIGHT))
    assert keys.action() == RIGHT
    keys.handle(key(pygame.KEYDOWN, pygame.K_a))
    assert keys.action() == LEFT  # left beats right
    keys.handle(key(pygame.KEYDOWN, pygame.K_SPACE))
    assert keys.action() == MAIN  # main beats both
    keys.handle(key(pygame.KEYUP, pygame.K_SPACE))
    keys.handle(key(pygame.KEYUP, pygame.K_a))
    assert keys.action() == RIGHT
    assert keys.handle(key(pygame.KEYDOWN, pygame.K_r)) == "reset"
    assert keys.handle(key(pygame.KEYDOWN, pygame.K_p)) == "pause"
    assert keys.handle(key(pygame.KEYDOWN, pygame.K_ESCAPE)) == "quit"
    assert keys.handle(pygame.event.Event(pygame.QUIT)) == "quit"


def test_scripted_headless_play_records_every_step(tmp_path):
    out = tmp_path / "session.gif"
    script = [2, 2, 0, 1, 3, 2, 0, 0]
    result = play(Panels([gym.make("OnirisLunarLanderReal-v0")], ["real"]),
                  PlayConfig(fps=1000, record=out, seed=0), scripted=script)
    assert result.actions == script and result.steps == len(script)
    with Image.open(out) as gif:
        assert gif.n_frames == len(script)


def test_scripted_play_matches_stepping_the_env_by_hand():
    script = [2, 0, 3, 3, 1, 2]
    env = gym.make("OnirisLunarLanderReal-v0")
    frames = []

    class Spy(Panels):
        def step(self, action):
            out = super().step(action)
            frames.append(out[0][0])
            return out

    play(Spy([env], ["real"]), PlayConfig(fps=1000, seed=5), scripted=script)
    ref = gym.make("OnirisLunarLanderReal-v0")
    ref.reset(seed=5)
    for a, frame in zip(script, frames, strict=True):
        np.testing.assert_array_equal(ref.step(a)[0], frame)


def test_keyboard_events_drive_the_actions_and_quit_ends():
    pygame.display.init()
    pygame.event.post(key(pygame.KEYDOWN, pygame.K_UP))
    result = play(Panels([gym.make("OnirisLunarLanderReal-v0")], ["real"]), PlayConfig(fps=1000, max_steps=3, seed=0))
    assert result.actions == [MAIN] * 3
    pygame.display.init()
    pygame.event.post(key(pygame.KEYDOWN, pygame.K_q))
    result = play(Panels([gym.make("OnirisLunarLanderReal-v0")], ["real"]), PlayConfig(fps=1000, max_steps=3, seed=0))
    assert result.steps == 0


def test_actions_file_parsing(tmp_path):
    f = tmp_path / "keys.txt"
    f.write_text("2 2, 0 # comment\n3\n")
    assert read_actions_file(f) == [2, 2, 0, 3]
    f.write_text("2 7\n")
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        read_actions_file(f)
    binary = tmp_path / "keys.png"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(ValueError, match=f"{binary}: not a text file"):
        read_actions_file(binary)


def test_cli_play_real_headless(tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text("2 2 2 0 1 3")
    out = tmp_path / "s.gif"
    result = CliRunner().invoke(app, ["play", "--real", "--actions", str(keys), "--record", str(out), "--fps", "1000"])
    assert result.exit_code == 0, result.output
    assert "6 steps" in result.output and out.exists()
    bad = CliRunner().invoke(app, ["play", "--real", "--record", str(tmp_path / "s.avi")])
    assert bad.exit_code == 2 and ".gif" in bad.output
    missing = CliRunner().invoke(app, ["play", "--real", "--actions", str(tmp_path / "none.txt")])
    assert missing.exit_code == 2 and "none.txt" in missing.output
    (tmp_path / "keys.bin").write_bytes(bytes(range(256)))
    binary = CliRunner().invoke(app, ["play", "--real", "--actions", str(tmp_path / "keys.bin")])
    assert binary.exit_code == 2 and "keys.bin: not a text file" in binary.output and "Traceback" not in binary.output

