"""Train an interatomic potential: ``python train.py [hydra overrides]`` (see README.md)."""

from mlip.cli.malloc_tuning import restart_with_huge_pages

if __name__ == "__main__":
    restart_with_huge_pages()  # first: a restart before the heavy imports costs nothing
    from mlip.cli.train import main

    main()
