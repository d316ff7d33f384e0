"""``python -m auxtrain`` runs the command-line interface (``cli.main_exit``, as the console script)."""

from auxtrain.cli import main_exit

if __name__ == "__main__":
    main_exit()
