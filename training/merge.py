"""Merge episode folders into one, so a trainer that reads one folder trains on several collections.

The merged folder holds a manifest whose episodes are renumbered in folder order, and one entry per episode that
points at the source file (a relative symbolic link, or a copy with `copy=True`; links fall back to copies where
the file system has none). The folders must agree on everything but their episodes: kind (frames or latents), game
spec and, for latents, the VAE and the latent shape; and no episode seed may appear twice, since the train /
validation split is a hash of the seed and an episode counted twice would weigh double. Every episode file is
checked before anything is written (complete, and the length and seed its manifest lists; `check_episode_file`):
a truncated or damaged file is refused with its name, never linked.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from training.episodes import check_episode_file, episode_filename, read_manifest, require_manifest, write_manifest

_SHARED_FIELDS = ("format_version", "kind", "spec", "vae", "latent_shape")


def merged_manifest(roots: list[Path]) -> dict[str, Any]:
    """The manifest of `roots` merged (no file touched): shared fields from the first folder, episodes renumbered,
    each entry's `source` naming the file it comes from. Raises ValueError when the folders disagree."""
    if len(roots) < 2:
        raise ValueError(f"merge needs at least 2 folders, got {len(roots)}")
    manifests = [require_manifest(root, "oniris-env collect (frames) or oniris-env encode (latents)") for root in roots]
    first = manifests[0]
    for root, manifest in zip(roots[1:], manifests[1:], strict=True):
        for field in _SHARED_FIELDS:
            if manifest.get(field) != first.get(field):
                raise ValueError(
                    f"{root} and {roots[0]} differ in {field!r}: {_brief(manifest.get(field))} vs "
                    f"{_brief(first.get(field))}; only folders of the same kind, spec and VAE merge"
                )
    seen: dict[int, Path] = {}
    episodes = []
    for root, manifest in zip(roots, manifests, strict=True):
        for entry in manifest["episodes"]:
            seed = int(entry["seed"])
            if seed in seen:
                raise ValueError(f"episode seed {seed} is in both {seen[seed]} and {root}: the same episode twice")
            seen[seed] = root
            index = len(episodes)
            episodes.append(
                {**entry, "file": episode_filename(index), "index": index, "source": str(Path(root) / entry["file"])}
            )
    shared = {k: first[k] for k in _SHARED_FIELDS if k in first}
    sources = [{"root": str(root), "episodes": len(m["episodes"])} for root, m in zip(roots, manifests, strict=True)]
    return {**shared, "merged_from": sources, "episodes": episodes}


def merge_datasets(roots: list[Path | str], out: Path | str, copy: bool = False, progress: bool = True) -> dict:
    """Write the folder `out` holding every episode of `roots` (see the module docstring); returns its manifest.

    Re-running with the same folders is a no-op, and completes a merge that was interrupted (links written, no
    manifest yet); an `out` that holds anything else is refused (ValueError).
    """
    roots, out = [Path(r) for r in roots], Path(out)
    if any(out.resolve() == r.resolve() for r in roots):
        raise ValueError(f"--out {out} is one of the folders to merge; merge into a new folder")
    manifest = merged_manifest(roots)
    existing = read_manifest(out)
    if existing is not None:
        if existing == manifest and all((out / e["file"]).is_file() for e in manifest["episodes"]):
            return existing
        raise ValueError(f"{out} already holds another dataset; merge into a new folder")
    planned = {e["file"] for e in manifest["episodes"]}
    if out.exists() and any(p.name not in planned for p in out.iterdir()):  # planned ones: an interrupted merge
        raise ValueError(f"{out} is not empty; merge into a new folder")
    missing = [e["source"] for e in manifest["episodes"] if not Path(e["source"]).is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} episode files named by the manifests are missing, e.g. {missing[0]}")
    key = "latents" if manifest.get("kind") == "latents" else "frames"
    for entry in tqdm(manifest["episodes"], desc="check", unit="ep", disable=not progress):
        check_episode_file(entry["source"], entry, key)  # a truncated or swapped file is refused, not linked
    out.mkdir(parents=True, exist_ok=True)
    for entry in tqdm(manifest["episodes"], desc="merge", unit="ep", disable=not progress):
        _place(Path(entry["source"]), out / entry["file"], copy)
    write_manifest(out, manifest)  # last: a folder with a manifest is complete
    return manifest


def _place(source: Path, target: Path, copy: bool) -> None:
    if target.is_symlink() or target.exists():
        target.unlink()  # left by an interrupted merge (no manifest yet)
    if not copy:
        try:
            target.symlink_to(os.path.relpath(source.resolve(), target.parent.resolve()))
            return
        except OSError:  # no symbolic links here (some Windows setups): copy instead
            pass
    shutil.copy2(source, target)


def _brief(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
