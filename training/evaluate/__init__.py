"""`oniris-env evaluate`: how good is a dream bundle, measured against fresh real LunarLander episodes.

One module per part of the report: `data` (fresh real episodes), `frames` (per-frame metrics), `rollout`
(replaying real actions in the dream), `open_loop`, `reward_term`, `controllability`, `long_dream`, `cost`,
`plots` (Pillow charts), `report` (JSON, Markdown, side-by-side video) and `run` (the whole evaluation).
"""
