import numpy as np

from oniris_env.real_env import OnirisLunarLanderReal
from training.lander import centroid_error, lander_centroid, landers_visible, state_to_pixel
from training.policies import heuristic_action


def test_locator_matches_true_state_on_real_frames():
    env = OnirisLunarLanderReal()
    rng = np.random.default_rng(0)
    errors = []
    for ep in range(4):
        obs, info = env.reset(seed=500 + ep)
        done = False
        while not done:
            errors.append(centroid_error(lander_centroid(obs), state_to_pixel(info["state"])))
            action = heuristic_action(info["state"]) if ep % 2 else int(rng.integers(4))
            obs, _, term, trunc, info = env.step(action)
            done = term or trunc
    assert None not in errors  # on screen the whole time
    assert np.median(errors) < 1.0
    assert np.percentile(errors, 95) < 1.5


def test_locator_reports_none_when_the_lander_is_off_screen():
    env = OnirisLunarLanderReal()
    obs, info = env.reset(seed=1)
    off_screen, frames = [], [obs]
    for _ in range(60):  # main engine only: the lander climbs out of the top of the frame
        obs, _, term, _, info = env.step(2)
        frames.append(obs)
        row, _ = state_to_pixel(info["state"])
        if row < -4:  # body centre more than 4 px above the top edge: nothing of it is visible
            off_screen.append(lander_centroid(obs))
        if term:
            break
    assert off_screen, "the lander never left the screen"
    assert all(c is None for c in off_screen)
    # the batched test agrees with the locator frame by frame, on screen and off
    visible = landers_visible(np.stack(frames))
    assert visible.tolist() == [lander_centroid(f) is not None for f in frames]
    assert visible[0] and not visible[-1]


def test_locator_on_synthetic_frames():
    frame = np.zeros((64, 96, 3), np.uint8)
    assert lander_centroid(frame) is None
    frame[10:14, 20:26] = (128, 102, 230)  # a 4 x 6 purple block
    frame[40:, :] = 255  # white terrain does not count
    frame[30, 50] = (200, 60, 60)  # a red flame particle does not count
    row, col = lander_centroid(frame)
    assert abs(row - 11.5) < 1e-6 and abs(col - 22.5) < 1e-6
