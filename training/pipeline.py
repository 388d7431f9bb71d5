"""The whole pipeline in one call: collect -> VAE (-> fine-tune) -> encode -> world model -> weights bundle
(-> heads refitted on more episodes -> the final bundle).

`run_pipeline(out, config)` is what `oniris-env train --preset NAME --out OUT` calls. A run folder holds

    OUT/pipeline.json   the resolved `PipelineConfig` (a folder is only ever continued with the same config)
    OUT/data/real       recorded episodes (`training.collect`)
    OUT/vae, OUT/vae_ft VAE runs (`training.vae.train`; vae_ft only when the config fine-tunes)
    OUT/latents         the dataset encoded by the final VAE (`training.encode`)
    OUT/wm              the world-model run (`training.world_model.train`)
    OUT/bundle          vae.safetensors + world_model.safetensors + start_contexts.npz (`oniris_env.bundle`): the
                        world model as trained, heads included
    OUT/data/heads      more recorded episodes, from another seed, for the heads (only with `head_refit`)
    OUT/latents_heads   those episodes encoded by the final VAE
    OUT/heads           the head refit (`training.world_model.head_refit`): OUT/heads/bundle is OUT/bundle with
                        refitted reward / termination heads, the final bundle; OUT/heads/head_refit.json its report

Every stage is skipped when its output is complete, resumed from its own checkpoint when it is not, and re-run
from scratch when what it was built from changed (like `make`): each trainer's folder records the fingerprint of
its input in `inputs.json`, the latent manifest records the VAE's sha256, the bundle is compared file by file.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from enum import Enum
from pathlib import Path
from typing import Any

from oniris_env.checksums import sha256
from oniris_env.config_io import atomic_write_bytes, atomic_write_text
from training.bank import DEFAULT_CONTEXT_LENGTH
from training.heads.config import HEAD_REFIT_PRESETS, HeadRefitConfig
from training.policies import POLICY_NAMES
from training.vae.config import TRAIN_VAE_PRESETS, TrainVAEConfig
from training.world_model.config import TrainWorldModelConfig

#: Episodes for the heads come from `seed + HEAD_SEED_OFFSET` (the shipped heads: seed 7 next to the trunk's 0).
HEAD_SEED_OFFSET = 7

CONFIG_FILE = "pipeline.json"
INPUTS_FILE = "inputs.json"
STAGES = ("collect", "vae", "vae_ft", "encode", "world_model", "bundle", "collect_heads", "encode_heads", "heads")


class Action(Enum):
    """What a stage does with its output."""

    SKIP = "skip"
    """complete: nothing to do"""
    RUN = "run"
    """nothing there yet: build it"""
    RESUME = "resume"
    """partly built: continue from the stage's own checkpoint"""
    RERUN = "rerun"
    """built from other inputs: delete it and build it again"""


@dataclass(frozen=True)
class StageStatus:
    """A stage's answer to "what is left to do?" and the line the pipeline prints for it (`str`): 'skip (complete)',
    'run', 'resume from DETAIL' or 'rerun (DETAIL)'."""

    action: Action
    detail: str = ""
    """Where a resume starts ('step 3 of 10'), or why a rerun is needed ('inputs changed')."""

    @property
    def runs(self) -> bool:
        """The stage has work to do."""
        return self.action is not Action.SKIP

    def __str__(self) -> str:
        if self.action is Action.SKIP:
            return "skip (complete)"
        if self.action is Action.RESUME:
            return f"resume from {self.detail}"
        if self.action is Action.RERUN:
            return f"rerun ({self.detail})"
        return "run"


SKIP, RUN = StageStatus(Action.SKIP), StageStatus(Action.RUN)


class PipelineMismatchError(ValueError):
    """The run folder was made with another pipeline config, or by something else; the message is one line."""


@dataclass(frozen=True)
class PipelineConfig:
    """What `oniris-env train` builds. The defaults are the recipe of the shipped weights (docs/RESULTS.md)."""

    name: str = "default"
    """The preset this config came from (kept in pipeline.json so a folder says what made it)."""
    episodes: int = 800
    """Real episodes to collect."""
    policy: str = "mix"
    """Collection policy (`training.policies.POLICY_NAMES`)."""
    seed: int = 0
    """Base seed of the collection: episode i's seed derives from (seed, i) (`training.collect.episode_seed`)."""
    vae: TrainVAEConfig = field(default_factory=lambda: TRAIN_VAE_PRESETS["default"])
    """The main VAE run."""
    vae_finetune: TrainVAEConfig | None = field(default_factory=lambda: TRAIN_VAE_PRESETS["finetune"])
    """A second VAE run started from the first one's weights (None: ship the first). Its `init_from` is set by
    the pipeline, so it must be empty here."""
    world_model: TrainWorldModelConfig = field(default_factory=TrainWorldModelConfig.default)
    """The world-model run."""
    bank_size: int = 256
    """Start contexts in the bundle: the starts of the first `bank_size` training-split episodes."""
    bank_length: int = DEFAULT_CONTEXT_LENGTH
    """Frames per start context."""
    head_refit: HeadRefitConfig | None = field(default_factory=lambda: HEAD_REFIT_PRESETS["default"])
    """Refit the reward / termination heads on the frozen trained world model, from the training episodes and
    `head_episodes` more (None: ship the heads trained with the world model)."""
    head_episodes: int = 3200
    """Extra real episodes recorded for the head refit (same policy, base seed `seed + HEAD_SEED_OFFSET`)."""

    def __post_init__(self) -> None:
        from oniris_env.vae import VAE_PRESETS

        if self.episodes < 1 or self.bank_size < 1 or self.bank_length < 1 or self.head_episodes < 0:
            raise ValueError("episodes, bank_size and bank_length must be >= 1, head_episodes >= 0")
        if self.policy not in POLICY_NAMES:
            raise ValueError(f"policy must be one of {POLICY_NAMES}, got {self.policy!r}")
        if VAE_PRESETS[self.vae.model].time_compression != 1:
            raise ValueError(f"the world model needs one latent per env step; VAE {self.vae.model!r} has g > 1")
        if self.vae_finetune is not None:
            if self.vae_finetune.model != self.vae.model:
                raise ValueError(
                    f"vae_finetune.model {self.vae_finetune.model!r} must be vae.model "
                    f"{self.vae.model!r} (it starts from those weights)"
                )
            if self.vae_finetune.init_from:
                raise ValueError("vae_finetune.init_from must be empty: the pipeline starts it from OUT/vae")

    @property
    def head_seed(self) -> int:
        """Base seed of the episodes recorded for the heads (apart from the training collection's)."""
        return self.seed + HEAD_SEED_OFFSET

    def with_seed(self, seed: int) -> PipelineConfig:
        """The same recipe with `seed` for the collections and all the trainings."""
        finetune = replace(self.vae_finetune, seed=seed) if self.vae_finetune is not None else None
        heads = replace(self.head_refit, seed=seed) if self.head_refit is not None else None
        return replace(
            self,
            seed=seed,
            vae=replace(self.vae, seed=seed),
            vae_finetune=finetune,
            world_model=replace(self.world_model, seed=seed),
            head_refit=heads,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON form (tuples become lists), as stored in pipeline.json."""
        return json.loads(json.dumps(asdict(self)))


PIPELINE_PRESETS: dict[str, PipelineConfig] = {
    "default": PipelineConfig(),
    # About a minute on 2 cores: a few short random-policy episodes, the tiny models, every stage exercised.
    "tiny": PipelineConfig(
        name="tiny",
        episodes=6,
        policy="random",
        vae=TRAIN_VAE_PRESETS["tiny"],
        vae_finetune=replace(TRAIN_VAE_PRESETS["tiny"], steps=10, lr=5e-4, warmup_steps=2, excess_weight=50.0),
        world_model=TrainWorldModelConfig.tiny(),
        bank_size=4,
        head_refit=HEAD_REFIT_PRESETS["tiny"],
        head_episodes=4,
    ),
}


@dataclass(frozen=True)
class RunFolders:
    """Where each stage of a pipeline run writes."""

    root: Path

    @property
    def data(self) -> Path:
        return self.root / "data" / "real"

    @property
    def vae(self) -> Path:
        return self.root / "vae"

    @property
    def vae_ft(self) -> Path:
        return self.root / "vae_ft"

    @property
    def latents(self) -> Path:
        return self.root / "latents"

    @property
    def wm(self) -> Path:
        return self.root / "wm"

    @property
    def bundle(self) -> Path:
        return self.root / "bundle"

    @property
    def head_data(self) -> Path:
        return self.root / "data" / "heads"

    @property
    def head_latents(self) -> Path:
        return self.root / "latents_heads"

    @property
    def heads(self) -> Path:
        return self.root / "heads"


def prepare_run_folder(out: Path | str, config: PipelineConfig) -> RunFolders:
    """Write OUT/pipeline.json, or check that the one there holds `config`.

    Raises `PipelineMismatchError` (one line) when OUT was made with another config, or is a non-empty folder
    that `oniris-env train` did not make.
    """
    root = Path(out)
    path = root / CONFIG_FILE
    wanted = config.to_dict()
    if path.is_file():
        try:
            saved = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise PipelineMismatchError(f"{path}: unreadable ({e}); choose another --out") from e
        if saved != wanted:
            diff = _differences(saved, wanted)
            raise PipelineMismatchError(
                f"{root} was made with preset {saved.get('name')!r} and another config ({'; '.join(diff[:3])}); "
                "use the same preset and --seed, or another --out"
            )
    elif root.exists() and any(root.iterdir()):
        raise PipelineMismatchError(
            f"{root} is not empty and holds no {CONFIG_FILE} (not made by `oniris-env train`); choose another --out"
        )
    else:
        root.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(wanted, indent=1))
    return RunFolders(root)


def _differences(saved: Any, wanted: Any, prefix: str = "") -> list[str]:
    """Dotted names of the fields that differ, with both values."""
    if isinstance(saved, dict) and isinstance(wanted, dict):
        out = []
        for key in sorted(set(saved) | set(wanted), key=str):
            out += _differences(saved.get(key), wanted.get(key), f"{prefix}{key}.")
        return out
    return [] if saved == wanted else [f"{prefix.rstrip('.')} {saved!r} there, {wanted!r} now"]


def _read_inputs(run_dir: Path) -> str | None:
    path = run_dir / INPUTS_FILE
    return json.loads(path.read_text())["inputs"] if path.is_file() else None


def _write_inputs(run_dir: Path, fingerprint: str) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / INPUTS_FILE).write_text(json.dumps({"inputs": fingerprint}) + "\n")


def _trainer_status(
    run_dir: Path, weights: str, steps: int, fingerprint: str, weights_step: Callable[[Path], int]
) -> StageStatus:
    """The status of a trainer's run folder (or the head refit's); reads, never writes.

    Complete = the weights file exists and records a step >= `steps`, and the folder was built from `fingerprint`.
    """
    recorded = _read_inputs(run_dir)
    if recorded is not None and recorded != fingerprint:
        return StageStatus(Action.RERUN, "inputs changed")
    try:
        if weights_step(run_dir / weights) >= steps:
            return SKIP
    except (FileNotFoundError, ValueError):  # missing, truncated or foreign weights: not complete
        pass
    checkpoint = run_dir / "checkpoint.pt"
    if checkpoint.is_file():
        import torch

        step = int(torch.load(checkpoint, map_location="cpu", weights_only=True)["step"])
        return StageStatus(Action.RESUME, f"step {step} of {steps}")
    return RUN


def _start_trainer(run_dir: Path, status: StageStatus, weights: str, fingerprint: str) -> None:
    """Before a trainer (or the head refit) runs: a rerun deletes the stale checkpoint and weights (so neither can
    pass for the new run's); the folder then records the inputs it is built from."""
    if status.action is Action.RERUN:
        for name in ("checkpoint.pt", weights):
            (run_dir / name).unlink(missing_ok=True)
    _write_inputs(run_dir, fingerprint)


def _vae_step(path: Path) -> int:
    from oniris_env.vae import read_vae_metadata

    if not path.is_file():
        raise FileNotFoundError(path)
    return int(read_vae_metadata(path)["notes"].get("step", -1))


def _world_model_step(path: Path) -> int:
    from oniris_env.world_model import read_metadata

    return int(read_metadata(path)["notes"].get("step", -1))


def _episodes_fingerprint(root: Path) -> str:
    """Hash of a dataset folder's episode list (what a trainer or the encoder read from it)."""
    from training.episodes import require_manifest

    episodes = require_manifest(root, "oniris-env collect")["episodes"]
    return hashlib.sha256(json.dumps(episodes, sort_keys=True).encode()).hexdigest()


def run_pipeline(
    out: Path | str,
    config: PipelineConfig,
    workers: int = 1,
    threads: int | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> Path:
    """Build (or finish) every stage of `config` in `out`; return the final bundle directory: `out/heads/bundle`
    when the config refits the heads, else `out/bundle`.

    Args:
        out: the run folder (see the module docstring); created, or continued when its pipeline.json matches.
        config: the recipe, e.g. `PIPELINE_PRESETS["tiny"]`.
        workers: collection processes (they do not change the episodes).
        threads: torch intra-op threads for the trainings and the encoder (None: torch's default).
        progress: show the stages' own progress bars.
        echo: receives one line per stage: its name and 'skip (complete)', 'resume from ...', 'run' or 'rerun'.

    Raises `PipelineMismatchError` when `out` was made with another config.
    """
    import torch

    folders = prepare_run_folder(Path(out).resolve(), config)
    if threads is not None:
        torch.set_num_threads(threads)
    _collect_stage("collect", folders.data, config.episodes, config.seed, config.policy, workers, progress, echo)
    final_vae = _vae_stages(folders, config, progress, echo)
    _encode_stage("encode", folders.data, folders.latents, final_vae, progress, echo)
    _world_model_stage(folders, config, progress, echo)
    bundle = _bundle_stage(folders, config, final_vae, echo)
    if config.head_refit is None:
        return bundle
    if config.head_episodes:
        _collect_stage(
            "collect_heads",
            folders.head_data,
            config.head_episodes,
            config.head_seed,
            config.policy,
            workers,
            progress,
            echo,
        )
        _encode_stage("encode_heads", folders.head_data, folders.head_latents, final_vae, progress, echo)
    return _heads_stage(folders, config, progress, echo)


def _collect_stage(
    name: str,
    root: Path,
    episodes: int,
    seed: int,
    policy: str,
    workers: int,
    progress: bool,
    echo: Callable[[str], None],
    weights: Path | None = None,
) -> None:
    """Collect `root` up to `episodes` episodes (skip / resume / run); `weights`: the bundle whose VAE an agent
    policy reads through (the closed loop's flights)."""
    from training.collect import collect_to_total
    from training.episodes import read_manifest

    manifest = read_manifest(root)
    have = len(manifest["episodes"]) if manifest is not None else 0
    status = StageStatus(Action.RESUME, f"episode {have} of {episodes}") if have else RUN
    if have >= episodes:
        status = SKIP
    echo(f"{name}: {status}")
    if not status.runs:
        return
    # Episode i is determined by (seed, i): finishing a partial folder gives the same episodes as one run.
    collect_to_total(root, episodes, seed, policy, workers, progress=progress, weights=weights)


def _vae_stages(folders: RunFolders, config: PipelineConfig, progress: bool, echo: Callable[[str], None]) -> Path:
    """The main VAE run, then the fine-tune when configured; returns the final VAE weights."""
    main = folders.vae / "vae.safetensors"
    _vae_stage("vae", folders, folders.vae, config.vae, _episodes_fingerprint(folders.data), progress, echo)
    if config.vae_finetune is None:
        return main
    finetune = replace(config.vae_finetune, init_from=str(main))
    _vae_stage("vae_ft", folders, folders.vae_ft, finetune, sha256(main), progress, echo)
    return folders.vae_ft / "vae.safetensors"


def _vae_stage(
    name: str,
    folders: RunFolders,
    run_dir: Path,
    cfg: TrainVAEConfig,
    fingerprint: str,
    progress: bool,
    echo: Callable[[str], None],
) -> None:
    from training.vae.train import train_vae

    status = _trainer_status(run_dir, "vae.safetensors", cfg.steps, fingerprint, _vae_step)
    echo(f"{name}: {status}")
    if status.runs:
        _start_trainer(run_dir, status, "vae.safetensors", fingerprint)
        train_vae(folders.data, run_dir, config=cfg, progress=progress)


def _encode_stage(name: str, data: Path, latents: Path, vae: Path, progress: bool, echo: Callable[[str], None]) -> None:
    from training.encode import encode_dataset
    from training.episodes import read_manifest, require_manifest

    wanted = {e["index"] for e in require_manifest(data, "oniris-env collect")["episodes"]}
    manifest = read_manifest(latents)
    if manifest is None:
        status = RUN
    elif manifest.get("vae", {}).get("sha256") != sha256(vae):
        status = StageStatus(Action.RERUN, "latents of another VAE")
    else:
        done = {e["index"] for e in manifest["episodes"]}
        resume = StageStatus(Action.RESUME, f"episode {len(done & wanted)} of {len(wanted)}")
        status = SKIP if wanted <= done else resume
    echo(f"{name}: {status}")
    if not status.runs:
        return
    if status.action is Action.RERUN:
        shutil.rmtree(latents)
    encode_dataset(data, latents, vae, progress=progress)


def _latents_fingerprint(root: Path) -> list:
    """What a stage read from a latent folder: the encoding VAE and the episode list (not the whole manifest: it
    names paths, and a run folder may move)."""
    from training.episodes import read_manifest

    latents = read_manifest(root)
    return [latents["vae"]["sha256"], latents["episodes"]]


def _world_model_stage(
    folders: RunFolders, config: PipelineConfig, progress: bool, echo: Callable[[str], None]
) -> None:
    from training.world_model.train import WEIGHTS_NAME, train_world_model

    fingerprint = hashlib.sha256(json.dumps(_latents_fingerprint(folders.latents)).encode()).hexdigest()
    status = _trainer_status(folders.wm, WEIGHTS_NAME, config.world_model.steps, fingerprint, _world_model_step)
    echo(f"world_model: {status}")
    if status.runs:
        _start_trainer(folders.wm, status, WEIGHTS_NAME, fingerprint)
        train_world_model(folders.latents, folders.wm, config=config.world_model, progress=progress)


def _bundle_stage(folders: RunFolders, config: PipelineConfig, vae: Path, echo: Callable[[str], None]) -> Path:
    """Copy the final weights next to a start-context bank; skipped when the copies match their sources."""
    from oniris_env.bundle import VAE_FILE, WORLD_MODEL_FILE
    from training.bank import write_start_contexts
    from training.world_model.train import WEIGHTS_NAME

    bundle = folders.bundle
    sources = {VAE_FILE: vae, WORLD_MODEL_FILE: folders.wm / WEIGHTS_NAME}
    status = SKIP if bundle_is_current(bundle, sources) else RUN
    echo(f"bundle: {status}")
    if not status.runs:
        return bundle
    copy_weights(bundle, sources)
    write_start_contexts(folders.data, bundle, config.bank_length, "train", config.bank_size)
    return bundle


def bundle_is_current(bundle: Path, sources: dict[str, Path]) -> bool:
    """True when `bundle` holds a start bank and a copy (same sha256) of every `sources` file under its name."""
    from oniris_env.bundle import CONTEXTS_FILE

    copies = all((bundle / name).is_file() and sha256(bundle / name) == sha256(src) for name, src in sources.items())
    return copies and (bundle / CONTEXTS_FILE).is_file()


def copy_weights(bundle: Path, sources: dict[str, Path]) -> None:
    """Copy each `sources` file into `bundle` under its name, atomically (`bundle` is created)."""
    bundle.mkdir(parents=True, exist_ok=True)
    for name, src in sources.items():
        atomic_write_bytes(bundle / name, src.read_bytes())


def _heads_stage(folders: RunFolders, config: PipelineConfig, progress: bool, echo: Callable[[str], None]) -> Path:
    """Refit the heads of OUT/bundle on the training latents (and the heads' own episodes); skipped when
    OUT/heads/bundle was refitted from the same world model and latents. Returns OUT/heads/bundle."""
    from oniris_env.bundle import WORLD_MODEL_FILE
    from oniris_env.sampler import DEFAULT_SAMPLER
    from training.world_model.head_refit import REPORT_FILE, refit_bundle

    assert config.head_refit is not None
    roots = [folders.latents] + ([folders.head_latents] if config.head_episodes else [])
    sources = [sha256(folders.bundle / WORLD_MODEL_FILE)] + [_latents_fingerprint(r) for r in roots]
    fingerprint = hashlib.sha256(json.dumps(sources).encode()).hexdigest()
    # Complete = the report exists (refit_bundle writes it last); it has no steps, so any report counts as step 0.
    status = _trainer_status(folders.heads, REPORT_FILE, 0, fingerprint, _report_step)
    echo(f"heads: {status}")
    if status.runs:
        _start_trainer(folders.heads, status, REPORT_FILE, fingerprint)
        # Recorded head inputs are cached in OUT/heads under their own key: an interrupted refit resumes after them.
        refit_bundle(folders.bundle, roots, folders.heads, config.head_refit, DEFAULT_SAMPLER, progress=progress)
    return folders.heads / "bundle"


def _report_step(path: Path) -> int:
    if not path.is_file():
        raise FileNotFoundError(path)
    return 0
