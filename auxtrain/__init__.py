"""auxtrain: train image classifiers that stay accurate when their inputs are corrupted."""

__version__ = "0.1.0"
