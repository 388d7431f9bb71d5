import numpy as np
import pytest
import torch

from oniris_env.vae import VAE_PRESETS, GroupCausalVAE, save_vae
from training.collect import collect_episodes
from training.dataset import EpisodeWindows
from training.encode import encode_dataset, encode_frames_chunked
from training.episodes import load_episode, read_manifest


@pytest.fixture(scope="module")
def frames_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("frames")
    collect_episodes(root, 2, seed=21, policy="random", progress=False)
    return root


def tiny_vae(seed: int) -> GroupCausalVAE:
    torch.manual_seed(seed)
    return GroupCausalVAE(VAE_PRESETS["tiny"]).eval()


def test_encode_writes_aligned_latents_equal_to_whole_clip_encoding(frames_dir, tmp_path):
    vae = tiny_vae(0)
    vae_file = save_vae(vae, tmp_path / "vae.safetensors")
    out = tmp_path / "latents"
    manifest = encode_dataset(frames_dir, out, vae_file, progress=False)
    assert manifest["kind"] == "latents" and manifest["latent_shape"] == list(vae.config.latent_shape)
    for entry in manifest["episodes"]:
        src, enc = load_episode(frames_dir / entry["file"]), load_episode(out / entry["file"], key="latents")
        assert enc["latents"].shape == (len(src["frames"]), *vae.config.latent_shape)
        for k in ("actions", "rewards", "terminated", "truncated", "states"):
            np.testing.assert_array_equal(enc[k], src[k])
        whole = vae.encode_frames(src["frames"][None])[0].numpy()
        np.testing.assert_allclose(enc["latents"], whole, atol=1e-5, rtol=0)
    ds = EpisodeWindows(out, 6, split="all", key="latents")
    assert ds[0]["latents"].shape == (6, *vae.config.latent_shape) and ds[0]["actions"].shape == (5,)


def test_encode_resumes_and_refuses_another_vae(frames_dir, tmp_path):
    first = save_vae(tiny_vae(0), tmp_path / "a.safetensors")
    out = tmp_path / "latents"
    encode_dataset(frames_dir, out, first, progress=False)
    stamp = (out / "ep_000000.npz").stat().st_mtime_ns
    encode_dataset(frames_dir, out, first, progress=False)  # nothing left to do
    assert (out / "ep_000000.npz").stat().st_mtime_ns == stamp
    assert len(read_manifest(out)["episodes"]) == 2
    other = save_vae(tiny_vae(1), tmp_path / "b.safetensors")
    with pytest.raises(ValueError, match="another VAE"):
        encode_dataset(frames_dir, out, other, progress=False)


def test_chunked_streaming_matches_one_chunk():
    vae = tiny_vae(2)
    frames = np.random.default_rng(0).integers(0, 256, size=(37, 64, 96, 3), dtype=np.uint8)
    np.testing.assert_allclose(encode_frames_chunked(vae, frames, chunk=8), encode_frames_chunked(vae, frames, 64),
                               atol=1e-5, rtol=0)
