"""``python -m pipeline`` (and ``torchrun ... -m pipeline train <family> ...``): the CLI."""

from pipeline.cli import main

if __name__ == "__main__":
    main()
