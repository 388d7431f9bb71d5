"""Encode recorded episodes once with the frozen VAE: `oniris-env encode --data FRAMES --out LATENTS`.

Each episode file of the output holds `latents (T+1, C, h, w)` float32 (normalised, the VAE posterior mean)
with the episode's actions, rewards, terminated, truncated and states unchanged, so latent step t is env step
t (this needs a VAE without time compression, g = 1). The manifest records the VAE (file hash and config) and
refuses to mix latents of two VAEs. Encoding is resumable: episodes already listed are skipped.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from oniris_env.checksums import sha256
from training.episodes import (
    TRANSITION_KEYS,
    load_episode,
    manifest_spec,
    new_manifest,
    read_manifest,
    require_manifest,
    save_episode,
    write_manifest,
)


@torch.inference_mode()
def encode_frames_chunked(vae: Any, frames: np.ndarray, chunk: int = 64) -> np.ndarray:
    """Stream `(T, H, W, 3)` uint8 frames through the VAE encoder in chunks (constant memory) -> `(T, C, h, w)`."""
    latents, cache = [], None
    for start in range(0, len(frames), chunk):
        z, cache = vae.encode_frames_step(frames[None, start : start + chunk], cache)
        latents.append(z[0].float().cpu().numpy())
    return np.concatenate(latents).astype(np.float32)


def encode_dataset(
    data_dir: Path | str,
    out_dir: Path | str,
    vae_path: Path | str | None = None,
    device: str = "cpu",
    progress: bool = True,
) -> dict[str, Any]:
    """Encode every episode of `data_dir` not yet in `out_dir`; return the output manifest.

    `vae_path=None` uses the VAE shipped in the package. Raises `ValueError` when `out_dir` holds latents of
    another VAE or another game spec, or when the VAE compresses time (g > 1).
    """
    from oniris_env.vae import load_vae, shipped_vae_path

    data_dir, out_dir = Path(data_dir), Path(out_dir)
    source = require_manifest(data_dir, "oniris-env collect --episodes N --out DIR", kind="frames")
    spec = manifest_spec(source)
    vae_file = Path(vae_path) if vae_path is not None else shipped_vae_path()
    vae = load_vae(vae_file if vae_path is not None else None, device=device, spec=spec)
    if vae.config.time_compression != 1:
        raise ValueError(
            f"{vae_file}: the world model needs one latent per env step, but this VAE compresses time by "
            f"g = {vae.config.time_compression}; train a VAE with g = 1"
        )
    vae_info = {"sha256": sha256(vae_file), "file": str(vae_file), "config": vae.config.to_dict()}
    out_dir.mkdir(parents=True, exist_ok=True)
    manifest = read_manifest(out_dir)
    if manifest is None:
        manifest = new_manifest(spec, kind="latents", vae=vae_info, latent_shape=list(vae.config.latent_shape))
    else:
        spec.check_matches(manifest_spec(manifest), f"latent dataset {out_dir}")
        if manifest.get("vae", {}).get("sha256") != vae_info["sha256"]:
            raise ValueError(
                f"{out_dir} holds latents of another VAE ({manifest.get('vae', {}).get('file')}, sha256 "
                f"{manifest.get('vae', {}).get('sha256', '?')[:12]}); encode into a new folder"
            )
    done = {e["index"] for e in manifest["episodes"]}
    todo = [e for e in source["episodes"] if e["index"] not in done]
    for entry in tqdm(todo, desc="encode", unit="ep", disable=not progress):
        episode = load_episode(data_dir / entry["file"])
        arrays = {"latents": encode_frames_chunked(vae, episode["frames"])}
        arrays |= {k: episode[k] for k in (*TRANSITION_KEYS, "states", "seed") if k in episode}
        save_episode(out_dir / entry["file"], arrays)
        manifest["episodes"].append(dict(entry))
        write_manifest(out_dir, manifest)
    return manifest
