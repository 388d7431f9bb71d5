"""report.md: the evaluation's numbers as Markdown tables, the targets first."""

from __future__ import annotations

import math

from training.evaluate.long_dream import POLICIES


def fmt(v: object, digits: int = 2) -> str:
    """A table cell: floats with `digits` decimals, None / NaN as n/a."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def table(header: list[str], rows: list[list[object]], digits: int = 2) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(c, digits) for c in row) + " |" for row in rows]
    return lines + [""]


def outcome_rows(rt: dict, names: list[str]) -> list[list[object]]:
    """One table row per real outcome: termination recall of each set of replays, and the ends behind it."""
    outcomes = sorted({o for n in names for o in rt[n]["termination_by_outcome"]})
    rows = []
    for outcome in outcomes:
        per = [rt[n]["termination_by_outcome"].get(outcome, {}) for n in names]
        ends = "/".join(str(p.get("ends", 0)) for p in per)
        rows.append([f"termination recall, {outcome} ({ends} ends)", *(p.get("recall") for p in per)])
    return rows


def render_markdown(report: dict) -> str:
    """The whole report.md: a header, the targets, then one section per part of the evaluation."""
    sections = (
        _header,
        _targets,
        _vae,
        _open_loop,
        _controllability,
        _reward_termination,
        _long_dreams,
        _cost,
        _files,
    )
    return "\n".join(line for section in sections for line in section(report))


def _header(report: dict) -> list[str]:
    cfg = report["config"]
    return [
        "# oniris-env evaluation",
        "",
        f"Weights `{report['weights']['path']}` (world model sha256 "
        f"`{report['weights']['files']['world_model.safetensors']['sha256'][:12]}`), "
        f"{report['data']['episodes']} fresh real episodes (`mix` policy, seeds `episode_seed({cfg['base_seed']}, i)`,"
        f" disjoint from training), outcomes {report['data']['outcomes']}, device {report['device']}, "
        f"wall-clock {report['wall_clock_s']:.0f} s.",
        "",
    ]


def _targets(report: dict) -> list[str]:
    passed = sum(t["pass"] for t in report["targets"])
    return [
        f"## Targets: {passed} / {len(report['targets'])} met",
        "",
        *table(
            ["metric", "value", "target", "pass"],
            [[t["name"], t["value"], t["target"], "PASS" if t["pass"] else "FAIL"] for t in report["targets"]],
            3,
        ),
    ]


def _vae(report: dict) -> list[str]:
    return [
        "## VAE (reconstruction of the evaluation episodes)",
        "",
        *table(
            ["PSNR (dB)", "fg PSNR (dB)", "centroid err median (px)", "p90 (px)", "found rate", "frames"],
            [
                [
                    report["vae"][k]
                    for k in ("psnr", "fg_psnr", "centroid_err_median", "centroid_err_p90", "found_rate", "pairs")
                ]
            ],
        ),
    ]


OPEN_LOOP_METRICS = (
    "psnr",
    "fg_psnr",
    "centroid_err_median",
    "centroid_err_median_lost_inf",
    "centroid_err_p90",
    "found_rate",
)


def _open_loop(report: dict) -> list[str]:
    ol = report["open_loop"]
    return [
        f"## Open loop (context {ol['context_frames']} real frames, real actions replayed)",
        "",
        "Dream | repeat-last-frame baseline. Centroid error: median over pairs where the lander is found in both "
        "frames, and (targets) median over pairs where it is in the real frame with a lost lander counted as an "
        "infinite error (n/a: lost in half of them or more). Found rate = lander found in the prediction where it is "
        "in the real frame.",
        "",
        *table(
            [
                "horizon",
                "pairs",
                "PSNR",
                "fg PSNR",
                "centroid err median (px)",
                "... lost = inf (px)",
                "centroid err p90 (px)",
                "found rate",
            ],
            [
                [h, m["dream"]["pairs"]]
                + [f"{fmt(m['dream'][k])} \\| {fmt(m['baseline'][k])}" for k in OPEN_LOOP_METRICS]
                for h, m in ol["horizons"].items()
            ],
        ),
    ]


def _controllability(report: dict) -> list[str]:
    ctrl = report["controllability"]
    rate = ctrl["per_signature_right_rate"]
    judged, every = ctrl["per_signature_trials"], ctrl["per_signature_right_rate_all_trials"]
    real, dream = ctrl["real_signature_mean"], ctrl["dream_signature_mean"]
    return [
        f"## Controllability ({ctrl['trials']} trials, each action held {ctrl['steps']} steps)",
        "",
        "Signatures (mean over steps, action minus no-op, read by the lander locator): main = row shift (px, < 0 "
        "slows the fall); rotation = principal-axis angle of the lander mask (degrees); drift = column shift (px). "
        "A dream trial is right when its signature has the real game's sign from the same start; the rate is over "
        "the trials the real game judges (its lander on the screen and its signature non-zero), next to the rate "
        "over all trials (unjudged ones counted as wrong).",
        "",
        *table(
            [
                "signature",
                "dream right rate",
                "judged trials",
                "right rate, all trials",
                "real game mean signature",
                "dream mean signature",
            ],
            [[k, rate[k], judged[k], every[k], real[k], dream[k]] for k in rate],
        ),
        f"Spread (mean pairwise distance between the 4 actions' lander positions): dream "
        f"{fmt(ctrl['spread_px_dream'])} px ({ctrl['spread_trials_dream']} trials), real "
        f"{fmt(ctrl['spread_px_real'])} px ({ctrl['spread_trials_real']} trials).",
        "",
    ]


def _reward_termination(report: dict) -> list[str]:
    cfg, ol = report["config"], report["open_loop"]
    rt = report["reward_termination"]
    names = list(rt)
    return [
        "## Reward and termination",
        "",
        f"`open_loop`: the from-start replays above; `terminal_anchored`: the last "
        f"{cfg['terminal_steps']} steps of every episode replayed from the {ol['context_frames']} frames before "
        f"them; `teacher_forced`: the heads on the real frames of whole episodes (no dreamt frame). A predicted "
        f"end matches a real one within {cfg['term_tolerance']} steps. A landing ends when Box2D puts the resting "
        f"lander to sleep, 11-14 steps after the last frame that changes (benchmarks/bench_landing_end.py): "
        f"the model sees it only if its window holds that many frames (16 does, 12 did not).",
        "",
        *table(
            ["metric", *names],
            [
                ["reward MAE / step", *(rt[n]["reward"]["mae"] for n in names)],
                ["reward correlation", *(rt[n]["reward"]["corr"] for n in names)],
                ["return abs error (mean)", *(rt[n]["reward"]["return_abs_err_mean"] for n in names)],
                ["termination precision", *(rt[n]["termination"]["precision"] for n in names)],
                ["termination recall", *(rt[n]["termination"]["recall"] for n in names)],
                [
                    "TP / FP / FN",
                    *(
                        f"{rt[n]['termination']['true_pos']} / {rt[n]['termination']['false_pos']} / "
                        f"{rt[n]['termination']['false_neg']}"
                        for n in names
                    ),
                ],
                *outcome_rows(rt, names),
                ["terminal reward sign agreement", *(rt[n]["terminal_sign"]["agreement"] for n in names)],
                ["steps", *(rt[n]["reward"]["steps"] for n in names)],
            ],
        ),
    ]


def _long_dreams(report: dict) -> list[str]:
    ld = report["long_dreams"]
    long_rows: list[list[object]] = [
        [k.replace("_", " "), *(ld[p][k] for p in POLICIES)]
        for k in (
            "found_fraction",
            "real_found_fraction",
            "resets",
            "real_resets",
            "nonfinite_steps",
            "latent_mean_drift",
            "latent_std_ratio_max_dev",
            "terrain_step_change",
            "terrain_change_vs_first",
            "terrain_change_vs_first_max_window",
        )
    ]
    per_dream = (" ".join(fmt(f) for f in ld[p]["found_fraction_per_dream"]) for p in POLICIES)
    long_rows.insert(1, ["found fraction per dream", *per_dream])
    return [
        f"## Long dreams ({ld[POLICIES[0]]['dreams']} dreams per policy, {ld[POLICIES[0]]['steps']} steps each)",
        "",
        *table(
            ["metric", *POLICIES],
            long_rows,
            3,
        ),
        f"Real reference: latent mean {fmt(ld['real_latent_mean'], 3)}, std {fmt(ld['real_latent_std'], 3)}; "
        f"terrain change vs first frame in the real episodes {fmt(report['data']['terrain_change_vs_first'], 3)}.",
        "",
    ]


def _cost(report: dict) -> list[str]:
    c = report["cost"]
    weight = c["sampler"].get("action_guidance", 0.0)
    guided = f", action guidance {weight:g}: all actions evaluated before the last call" if weight else ""
    return [
        "## Cost",
        "",
        *table(
            ["metric", "value"],
            [
                *[[f"dream steps/s {k}", v] for k, v in c["steps_per_s"].items()],
                [
                    "NFE per step",
                    f"{c['nfe_per_step']} ({c['sampler']['num_steps']} {c['sampler']['method']} steps{guided})",
                ],
                ["VAE parameters", c["vae_parameters"]],
                ["world-model parameters", c["world_model_parameters"]],
                ["bundle size (MB)", c["bundle_bytes"] / 1e6],
            ],
            1,
        ),
    ]


def _files(report: dict) -> list[str]:
    return [
        "## Files",
        "",
        *[f"- [{name}]({name})" for name in report["files"] if not name.endswith(".png")],
        "",
        *[f"![{name}]({name})\n" for name in report["files"] if name.endswith(".png")],
    ]
