"""`python -m oniris_env` is the same CLI as `oniris-env` (so `torchrun -m oniris_env ...` works)."""

from oniris_env.cli import main

main()
