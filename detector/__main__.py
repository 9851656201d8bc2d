"""`python -m detector` is the `vigil` command."""

from detector.cli import main

main()
