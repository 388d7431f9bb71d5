"""The evaluation's pure metric functions against small hand-computed examples."""

import math

import numpy as np
import pytest
from PIL import Image

from training.collect import episode_seed
from training.evaluate.controllability import judged, lander_axis_angle, same_sign, signature, wrap_angle
from training.evaluate.data import RealEpisode, check_disjoint
from training.evaluate.frames import pair_metrics
from training.evaluate.long_dream import LocatorPilot, terrain_change, window_stats
from training.evaluate.open_loop import aligned_steps, horizon_pairs
from training.evaluate.plots import Series, line_chart, nice_ticks
from training.evaluate.report import finite_json, side_by_side
from training.evaluate.reward_term import (
    first_true,
    reward_stats,
    terminal_sign_agreement,
    termination_by_outcome,
    termination_events,
)
from training.evaluate.rollout import context_at

PURPLE = (128, 102, 230)


def frame_with_lander(row: int, col: int, h: int = 4, w: int = 4) -> np.ndarray:
    frame = np.zeros((64, 96, 3), np.uint8)
    frame[row : row + h, col : col + w] = PURPLE
    return frame


def test_termination_events_precision_recall_with_tolerance():
    real = [np.array([0, 0, 0, 1], bool), np.array([0, 0, 0, 0, 0, 1], bool), np.zeros(4, bool), np.array([0, 1], bool)]
    pred = [
        np.array([0, 0, 1, 1], bool),  # end at 2, real at 3: within 2 steps -> TP
        np.array([1, 0, 0, 0, 0, 0], bool),  # end at 0, real at 5: FP and FN
        np.array([0, 1, 0, 0], bool),  # no real end: FP
        np.zeros(2, bool),
    ]  # missed: FN
    m = termination_events(pred, real, tolerance=2)
    assert (m["true_pos"], m["false_pos"], m["false_neg"]) == (1, 2, 2)
    assert m["precision"] == pytest.approx(1 / 3) and m["recall"] == pytest.approx(1 / 3)
    assert termination_events([np.zeros(3, bool)], [np.zeros(3, bool)], 2)["precision"] is None
    assert first_true(np.array([0, 0, 1, 1], bool)) == 2 and first_true(np.zeros(3, bool)) is None


def test_termination_recall_by_outcome():
    real = [np.array([0, 0, 1], bool), np.array([0, 0, 0, 1], bool), np.array([0, 1], bool), np.zeros(3, bool)]
    pred = [np.array([0, 1, 0], bool), np.array([1, 0, 0, 0], bool), np.array([0, 1], bool), np.array([1, 0, 0], bool)]
    by = termination_by_outcome(pred, real, ["crashed", "landed", "crashed", "timeout"], tolerance=1)
    # crash 1: end 1 vs 2 (hit); landing: end 0 vs 3 (miss); crash 2: exact (hit); the timeout has no real end
    assert by == {
        "crashed": {"ends": 2, "matched": 2, "recall": 1.0},
        "landed": {"ends": 1, "matched": 0, "recall": 0.0},
    }


def test_reward_stats_and_terminal_sign():
    pred = [np.array([1.0, 2.0, -50.0]), np.array([0.0, 3.0])]
    real = [np.array([1.0, 1.0, -100.0]), np.array([1.0, 3.0])]
    m = reward_stats(pred, real)
    assert m["mae"] == pytest.approx((0 + 1 + 50 + 1 + 0) / 5)
    assert m["return_abs_err_mean"] == pytest.approx((51 + 1) / 2)  # sums -47 vs -98 and 3 vs 4
    assert m["corr"] == pytest.approx(np.corrcoef([1, 2, -50, 0, 3], [1, 1, -100, 1, 3])[0, 1])
    terms = [np.array([0, 0, 1], bool), np.array([0, 1], bool)]
    # episode 1: strongest predicted reward near the end is -50 (real -100): agree; episode 2: +3 vs +3: agree
    assert terminal_sign_agreement(pred, real, terms, 1) == {"agreement": 1.0, "terminals": 2}
    flipped = [np.array([1.0, 2.0, 60.0]), np.array([0.0, -3.0])]
    assert terminal_sign_agreement(flipped, real, terms, 1)["agreement"] == 0.0


def test_open_loop_alignment():
    # 10 transitions, context of 4 frames (0..3): dream steps 1..7 compare with frames 4..10
    assert aligned_steps(10, 4) == 7 and aligned_steps(10, 4, cap=5) == 5 and aligned_steps(2, 4) == 0
    assert horizon_pairs([10, 5, 40], 4, 7) == [(0, 10), (2, 10)]
    ep = RealEpisode(
        1,
        "random",
        "crashed",
        np.arange(11)[:, None, None, None].repeat(3, -1).astype(np.uint8),
        np.arange(10),
        np.zeros(10, np.float32),
        np.zeros(10, bool),
    )
    frames, actions = context_at(ep, 3, 4)
    assert frames[:, 0, 0, 0].tolist() == [0, 1, 2, 3] and actions.tolist() == [0, 1, 2]
    with pytest.raises(ValueError):
        context_at(ep, 2, 4)


def test_pair_metrics_baseline_by_hand():
    real = frame_with_lander(10, 20)[None]
    shifted = frame_with_lander(10, 22)[None]
    m = pair_metrics(real, shifted)
    assert m["centroid_err_median"] == pytest.approx(2.0) and m["found_rate"] == 1.0
    mse = 16 * sum(c**2 for c in PURPLE) / (64 * 96 * 3)  # 2 columns x 4 rows on each side differ fully
    assert m["psnr"] == pytest.approx(10 * math.log10(255**2 / mse))
    lost = pair_metrics(real, np.zeros_like(real))
    assert lost["found_rate"] == 0.0 and lost["centroid_err_median"] is None
    assert lost["centroid_err_median_lost_inf"] == math.inf
    # 3 pairs: errors 2 and 0 px, one lander lost -> median of (0, 2, inf) = 2
    three = pair_metrics(np.concatenate([real, real, real]), np.concatenate([shifted, real, np.zeros_like(real)]))
    assert three["centroid_err_median"] == pytest.approx(1.0) and three["centroid_err_median_lost_inf"] == 2.0
    assert pair_metrics(real, real)["psnr"] == math.inf


def test_axis_angle_and_signatures():
    assert lander_axis_angle(frame_with_lander(10, 20, h=2, w=10)) == pytest.approx(0.0)
    assert abs(lander_axis_angle(frame_with_lander(10, 20, h=10, w=2))) == pytest.approx(90.0)
    diag = np.zeros((64, 96, 3), np.uint8)
    for i in range(8):
        diag[10 + i, 20 + i] = PURPLE
        diag[10 + i, 21 + i] = PURPLE
    assert lander_axis_angle(diag) == pytest.approx(45.0, abs=1.0)  # rows grow with columns
    assert math.isnan(lander_axis_angle(np.zeros((64, 96, 3), np.uint8)))
    assert wrap_angle(100.0) == pytest.approx(-80.0) and wrap_angle(-95.0) == pytest.approx(85.0)
    assert signature(np.array([1.0, 3.0, np.nan]), np.array([0.0, 0.0, 0.0])) == pytest.approx(2.0)
    assert signature(np.array([80.0]), np.array([-80.0]), angle=True) == pytest.approx(-20.0)
    assert same_sign(-1.0, -3.0) and not same_sign(1.0, -3.0) and not same_sign(float("nan"), -3.0)
    assert judged(-3.0) and not judged(0.0) and not judged(float("nan"))  # no real lander: the trial is not scored


def test_long_dream_helpers():
    a = np.zeros((64, 96, 3), np.uint8)
    b = a.copy()
    b[-1] = 255  # one of the 8 terrain rows changes fully
    assert terrain_change(a, b) == pytest.approx(255 / 8)
    assert window_stats(np.arange(250.0), 100) == [49.5, 149.5, 224.5]
    pilot = LocatorPilot()
    assert pilot.act(frame_with_lander(10, 46)) == 0  # no velocity yet
    assert pilot.act(frame_with_lander(12, 46)) == 2  # falling 2 px/step: main engine
    pilot.reset()
    pilot.act(frame_with_lander(10, 10))
    assert pilot.act(frame_with_lander(10, 10)) == 3  # left of the middle: push right


def test_eval_seeds_must_not_be_training_seeds():
    check_disjoint([episode_seed(1_000_003, 0)], train_range=100)
    with pytest.raises(ValueError, match="training seeds"):
        check_disjoint([episode_seed(0, 5)], train_range=100)


def test_line_chart_writes_a_png_of_the_requested_size(tmp_path):
    path = line_chart(
        tmp_path / "c.png",
        [Series("a", [1, 2, 3], [1.0, None, 2.0]), Series("b", [1, 2, 3], [0.5, 1.5, float("nan")], dashed=True)],
        "title",
        "x",
        "y",
        size=(320, 200),
    )
    with Image.open(path) as img:
        assert img.size == (320, 200) and img.mode == "RGB"
        assert len(img.getcolors(10_000)) > 3  # something was drawn
    assert nice_ticks(0.0, 9.3) == [0, 2, 4, 6, 8, 10]


def test_report_helpers():
    assert finite_json({"a": [1.0, float("nan")], "b": np.float32(2.5), "c": math.inf}) == {
        "a": [1.0, None],
        "b": 2.5,
        "c": None,
    }
    real = np.zeros((5, 64, 96, 3), np.uint8)
    assert side_by_side([(real, real), (real[:3], real[:4])], zoom=2).shape == (8, 128, 2 * (3 * 96 + 4), 3)
