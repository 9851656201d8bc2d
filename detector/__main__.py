"""`python -m detector` is the `vigil` command."""

from detector.cli import main

if __name__ == "__main__":
    main()
