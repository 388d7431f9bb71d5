"""VAE speed: encode and decode frames/s at batch 1 and 32, fp32 vs bf16 autocast, on this CPU.

    python benchmarks/bench_vae.py [--weights PATH] [--threads 2] [--preset default]

Batch 1 decodes one latent per call with the streaming cache (as the dream env does each step); batch 32
decodes 32 streams at once. Prints one JSON line per setting.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from oniris_env.vae import VAE_PRESETS, GroupCausalVAE, load_vae


def frames_per_s(fn, frames: int, repeats: int) -> float:
    for _ in range(3):
        fn()
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return frames * repeats / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--weights", default=None, help="a vae.safetensors (default: an untrained --preset model)")
    ap.add_argument("--preset", default="default")
    ap.add_argument("--threads", type=int, default=torch.get_num_threads())
    ap.add_argument("--repeats", type=int, default=20)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    vae = load_vae(args.weights) if args.weights else GroupCausalVAE(VAE_PRESETS[args.preset]).eval()
    cfg = vae.config
    print(json.dumps({"params": vae.num_parameters(), "threads": args.threads, "config": cfg.to_dict()}))
    for memory_format in (torch.contiguous_format, torch.channels_last):
        vae = vae.to(memory_format=memory_format)
        for bf16 in (False, True):
            for batch in (1, 32):
                shape = (batch, cfg.time_compression, cfg.frame_height, cfg.frame_width, cfg.image_channels)
                frames = torch.randint(0, 256, shape, dtype=torch.uint8)
                z = vae.encode_frames(frames)
                _, enc_cache = vae.encode_frames_step(frames, None, bf16=bf16)
                _, dec_cache = vae.decode_latents_step(z, None, bf16=bf16)
                n = batch * cfg.time_compression
                reps = max(2, args.repeats // (8 if batch > 1 else 1))
                enc = frames_per_s(
                    lambda v=vae, f=frames, c=enc_cache, b=bf16: v.encode_frames_step(f, c, bf16=b), n, reps
                )
                dec = frames_per_s(lambda v=vae, z=z, c=dec_cache, b=bf16: v.decode_latents_step(z, c, bf16=b), n, reps)
                print(
                    json.dumps(
                        {
                            "memory_format": str(memory_format).removeprefix("torch."),
                            "bf16": bf16,
                            "batch": batch,
                            "encode_frames_per_s": round(enc, 1),
                            "decode_frames_per_s": round(dec, 1),
                            "decode_ms_per_call": round(1000 * n / dec, 2),
                        }
                    ),
                    flush=True,
                )


if __name__ == "__main__":
    main()
