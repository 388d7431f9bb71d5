"""VAE checkpoints: plain safetensors + JSON, identical outputs after a round trip, clear errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from oniris_env.spec import DEFAULT_SPEC, SpecMismatchError
from oniris_env.vae import VAE_PRESETS, GroupCausalVAE, load_vae, read_vae_metadata, save_vae, shipped_vae_path

CFG = dataclasses.replace(
    VAE_PRESETS["tiny"], frame_height=16, frame_width=24, temporal_down=(False, True), patch_size=1
)


def make_model() -> GroupCausalVAE:
    torch.manual_seed(0)
    model = GroupCausalVAE(CFG).eval()
    model.latent_shift.copy_(torch.tensor([0.1, -0.2, 0.3, 0.0]))
    model.latent_scale.copy_(torch.tensor([1.5, 0.5, 2.0, 1.0]))
    return model


def test_save_load_gives_identical_outputs(tmp_path: Path) -> None:
    model = make_model()
    path = save_vae(model, tmp_path / "vae.safetensors", notes={"steps": 3})
    loaded = load_vae(path)
    assert not loaded.training and loaded.config == CFG
    u8 = torch.randint(0, 256, (2, 4, 16, 24, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    z = model.encode_frames(u8)
    torch.testing.assert_close(loaded.encode_frames(u8), z, atol=0, rtol=0)
    torch.testing.assert_close(loaded.decode_latents(z), model.decode_latents(z), atol=0, rtol=0)
    torch.testing.assert_close(loaded.latent_scale, model.latent_scale, atol=0, rtol=0)
    meta = read_vae_metadata(path)
    assert meta["spec"] == DEFAULT_SPEC.to_dict() and meta["notes"] == {"steps": 3}
    assert not list(tmp_path.glob("*.tmp"))


def test_saved_weights_get_the_file_mode_of_their_neighbours(tmp_path: Path) -> None:
    """safetensors' own `save_file` writes 0600 files; ours follow the umask like any `open()` (0644 here)."""
    import os

    from oniris_env.bundle import CONTEXTS_FILE, VAE_FILE, WORLD_MODEL_FILE, save_random_bundle

    old = os.umask(0o022)
    try:
        bundle = save_random_bundle(tmp_path / "bundle")  # vae, world model (safetensors) and start contexts (npz)
        save_vae(make_model(), tmp_path / "vae.safetensors")
    finally:
        os.umask(old)
    for path in (bundle / VAE_FILE, bundle / WORLD_MODEL_FILE, bundle / CONTEXTS_FILE, tmp_path / "vae.safetensors"):
        assert path.stat().st_mode & 0o777 == 0o644, path


def test_spec_mismatch_is_refused(tmp_path: Path) -> None:
    other = dataclasses.replace(DEFAULT_SPEC, action_repeat=3)
    path = save_vae(make_model(), tmp_path / "vae.safetensors", spec=other)
    with pytest.raises(SpecMismatchError, match="action_repeat: expected 2, found 3"):
        load_vae(path)


def test_corrupt_file_error_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "broken.safetensors"
    path.write_bytes(b"\x00\x01 definitely not safetensors")
    with pytest.raises(ValueError, match="broken.safetensors"):
        load_vae(path)
    good = save_vae(make_model(), tmp_path / "good.safetensors")
    good.write_bytes(good.read_bytes()[:-100])  # truncated
    with pytest.raises(ValueError, match="good.safetensors"):
        load_vae(good)


def test_missing_file_names_path_and_training_command(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="oniris-env train vae"):
        load_vae(tmp_path / "nope.safetensors")


def test_shipped_weights_load_or_explain() -> None:
    path = shipped_vae_path()
    assert path.name == "vae.safetensors" and path.parent.name == "weights"
    if path.is_file():
        vae = load_vae()
        assert vae.config.latent_shape[1:] == (8, 12)
    else:
        with pytest.raises(FileNotFoundError, match=str(path)):
            load_vae()
