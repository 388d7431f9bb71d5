"""Validation losses of world-model weights on a training run's fixed held-out batches, at any attention window.

Draws the same 8 validation batches as `train world-model --preset default` (clips of `clip_frames`, seed
`seed + 12345`) and runs `training.world_model.train.validate` on each given weights file, optionally with another
window (no weight depends on it). Compares runs whose own logged validation used other clips or windows:

    python benchmarks/bench_val_loss.py --data data/latents runs/wm_init_stage3.safetensors:12 \
        runs/wm_init_stage3.safetensors:16 oniris_env/weights/world_model.safetensors

Not a test: the figures depend on the weights and on the data.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import torch

from oniris_env.world_model import WorldModel, load_world_model
from training.dataset import EpisodeWindows
from training.world_model.config import TrainWorldModelConfig
from training.world_model.loss import DartBatch, LossUncertainty
from training.world_model.train import validate


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="folder written by `oniris-env encode`")
    p.add_argument("weights", nargs="+", help="world_model.safetensors, optionally :W to evaluate at window W")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    cfg = TrainWorldModelConfig.default()
    val = EpisodeWindows(args.data, cfg.clip_frames, split="val", key="latents")
    rng = np.random.default_rng(cfg.seed + 12345)  # the trainer's validation draw
    batches = [DartBatch.from_numpy(val.sample_batch(rng, cfg.batch_size), "cpu") for _ in range(cfg.val_batches)]
    print(f"| weights | window | denoise loss (raw) | reward MAE | termination BCE |  ({cfg.val_batches} batches of "
          f"{cfg.batch_size} clips of {cfg.clip_frames})")
    print("|---|---|---|---|---|")
    for spec in args.weights:
        path, _, window = spec.partition(":")
        loaded = load_world_model(path)
        model = WorldModel(dataclasses.replace(loaded.config, window=int(window or loaded.config.window))).eval()
        model.load_state_dict(loaded.state_dict())
        v = validate(model, LossUncertainty(), batches, cfg)
        print(f"| {path} | {model.config.window} | {v['denoise_raw']:.4f} | {v['reward_mae']:.2f} | {v['term']:.3f} |")


if __name__ == "__main__":
    main()
