"""`python -m kit ...`: the `kit` command where no console script was installed (a machine that
has the kit on PYTHONPATH only, as the device measurements run it: scripts/device_gpu.sh)."""

from kit.cli import main

main()
