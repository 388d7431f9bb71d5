"""Which reconstruction loss keeps the lander? Short default-model runs, one per loss, scored on validation.

    python benchmarks/bench_vae_losses.py --data /work/data/real --out runs/vae_losses --steps 300

Each run trains the default VAE for `--steps` steps with one `recon_loss` (everything else as the default
preset) and reports PSNR, foreground PSNR, lander-centroid error and lost-lander rate on the first
`--eval-frames` validation frames. Results are appended to OUT/losses.jsonl.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from oniris_env.vae import read_vae_metadata
from training.vae import RECON_LOSSES, TRAIN_VAE_PRESETS, train_vae


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--eval-frames", type=int, default=1500)
    ap.add_argument("--losses", nargs="*", default=list(RECON_LOSSES))
    args = ap.parse_args()
    out = Path(args.out)
    for loss in args.losses:
        cfg = replace(
            TRAIN_VAE_PRESETS["default"],
            recon_loss=loss,
            steps=args.steps,
            warmup_steps=min(100, args.steps // 5),
            val_every=0,
            checkpoint_every=args.steps,
            stats_frames=256,
            eval_frames=args.eval_frames,
        )
        path = train_vae(args.data, out / loss, config=cfg, progress=False)
        notes = read_vae_metadata(path)["notes"]
        row = {
            "recon_loss": loss,
            "steps": args.steps,
            **{k: v for k, v in notes.items() if k.startswith("val_")},
            "train_wall_s": notes["train_wall_s"],
        }
        print(json.dumps(row), flush=True)
        with (out / "losses.jsonl").open("a") as f:
            f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
