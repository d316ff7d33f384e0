"""``python -m auxtrain`` runs the command-line interface."""

from auxtrain.cli import main_exit

if __name__ == "__main__":
    main_exit()
