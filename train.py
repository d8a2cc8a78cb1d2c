"""Train an interatomic potential: ``python train.py [hydra overrides]`` (see README.md)."""

from mlip.cli.train import main

if __name__ == "__main__":
    main()
