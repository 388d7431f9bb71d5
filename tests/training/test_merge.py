import json

import numpy as np
import pytest
from typer.testing import CliRunner

from oniris_env.cli import app
from training.collect import collect_episodes
from training.dataset import EpisodeWindows
from training.episodes import load_episode, read_manifest
from training.merge import merge_datasets

runner = CliRunner()


@pytest.fixture(scope="module")
def two_collections(tmp_path_factory):
    root = tmp_path_factory.mktemp("collections")
    collect_episodes(root / "a", 3, seed=5, policy="random", progress=False)
    collect_episodes(root / "b", 2, seed=6, policy="random", progress=False)
    return root / "a", root / "b"


@pytest.mark.parametrize("copy", [False, True])
def test_merged_folder_holds_every_episode_once_in_folder_order(two_collections, tmp_path, copy):
    a, b = two_collections
    out = tmp_path / "merged"
    manifest = merge_datasets([a, b], out, copy=copy, progress=False)
    sources = [(a, e) for e in read_manifest(a)["episodes"]] + [(b, e) for e in read_manifest(b)["episodes"]]
    assert [e["index"] for e in manifest["episodes"]] == list(range(5))
    assert manifest["merged_from"] == [{"root": str(a), "episodes": 3}, {"root": str(b), "episodes": 2}]
    for entry, (root, source) in zip(manifest["episodes"], sources, strict=True):
        assert entry["seed"] == source["seed"] and entry["length"] == source["length"]
        assert (out / entry["file"]).is_symlink() != copy
        merged, original = load_episode(out / entry["file"]), load_episode(root / source["file"])
        for key in original:
            np.testing.assert_array_equal(merged[key], original[key])
    assert read_manifest(out) == manifest
    # the trainers' reader sees the union, split by seed as in the sources
    for split in ("train", "val"):
        assert split_seeds(out, split) == split_seeds(a, split) | split_seeds(b, split)


def split_seeds(root, split):
    seeds = {e["index"]: e["seed"] for e in read_manifest(root)["episodes"]}
    return {seeds[i] for i in EpisodeWindows(root, 2, split=split, val_fraction=0.4).episodes}


def test_rerun_is_a_no_op_and_another_merge_into_the_same_folder_is_refused(two_collections, tmp_path):
    a, b = two_collections
    out = tmp_path / "merged"
    merge_datasets([a, b], out, progress=False)
    stamp = (out / "manifest.json").stat().st_mtime_ns
    merge_datasets([a, b], out, progress=False)
    assert (out / "manifest.json").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="another dataset"):
        merge_datasets([b, a], out, progress=False)


def test_rerun_completes_an_interrupted_merge_and_refuses_a_folder_with_other_files(two_collections, tmp_path):
    a, b = two_collections
    out = tmp_path / "merged"
    merge_datasets([a, b], out, progress=False)
    (out / "manifest.json").unlink()  # interrupted: some links written, no manifest
    (out / "ep_000004.npz").unlink()
    manifest = merge_datasets([a, b], out, progress=False)
    assert read_manifest(out) == manifest and all((out / e["file"]).is_file() for e in manifest["episodes"])
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty"):
        merge_datasets([a, b], busy, progress=False)


def test_refuses_duplicate_seeds_other_specs_and_its_own_input(two_collections, tmp_path):
    a, b = two_collections
    with pytest.raises(ValueError, match="same episode twice"):
        merge_datasets([a, a], tmp_path / "twice", progress=False)
    with pytest.raises(ValueError, match="one of the folders"):
        merge_datasets([a, b], a, progress=False)
    other = tmp_path / "other"
    other.mkdir()
    manifest = json.loads((b / "manifest.json").read_text())
    manifest["spec"]["action_repeat"] = 4
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="differ in 'spec'"):
        merge_datasets([a, other], tmp_path / "mixed", progress=False)
    assert not (tmp_path / "mixed").exists()


@pytest.mark.parametrize("damage", ["truncated", "swapped"])
def test_a_truncated_or_swapped_episode_file_is_refused_with_its_name(two_collections, tmp_path, damage):
    import shutil

    a, b = two_collections
    bad = shutil.copytree(b, tmp_path / "bad")
    victim = bad / read_manifest(bad)["episodes"][1]["file"]
    if damage == "truncated":  # an interrupted copy: the first half of the file
        victim.write_bytes(victim.read_bytes()[: victim.stat().st_size // 2])
    else:  # another episode's file under this name: its length and seed are not the manifest's
        shutil.copy(a / read_manifest(a)["episodes"][0]["file"], victim)
    with pytest.raises(ValueError, match=str(victim)):
        merge_datasets([a, bad], tmp_path / "merged", progress=False)
    assert not (tmp_path / "merged").exists()
    result = runner.invoke(app, ["merge", "--data", str(a), "--data", str(bad), "--out", str(tmp_path / "m")])
    assert result.exit_code == 2 and str(victim) in result.output and "Traceback" not in result.output


def test_cli_merge_and_its_errors(two_collections, tmp_path):
    a, b = two_collections
    result = runner.invoke(app, ["merge", "--data", str(a), "--data", str(b), "--out", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert "5 episodes" in result.output and len(read_manifest(tmp_path / "m")["episodes"]) == 5
    missing = runner.invoke(app, ["merge", "--data", str(a), "--data", str(tmp_path / "nope"), "--out", "x"])
    assert missing.exit_code == 2 and "no dataset" in missing.output
    twice = runner.invoke(app, ["merge", "--data", str(a), "--data", str(a), "--out", str(tmp_path / "t")])
    assert twice.exit_code == 2 and "same episode twice" in twice.output
