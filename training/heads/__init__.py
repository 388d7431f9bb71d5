"""The reward / termination heads, refitted on a frozen world-model trunk (`oniris-env train heads`).

One module per job: `config` (`HeadRefitConfig` and presets), `record` (what the heads read, on real frames and in
dreams), `episodes` (the encoded real episodes and their split), `fit` (training a fresh head), `cache` (recorded
head inputs kept on disk) and `report` (held-out termination and reward scores). The stage that runs them and
writes the refitted bundle is `training.world_model.head_refit.refit_bundle`. Importing this package loads none
of them.
"""
