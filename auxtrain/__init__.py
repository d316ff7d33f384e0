"""auxtrain: train image classifiers that stay accurate when their inputs are corrupted.

The public names re-exported here are the stable API; see README.md for examples.
"""

from auxtrain.auxiliary import AuxiliaryModel as AuxiliaryModel
from auxtrain.export import load_model as load_model
from auxtrain.models import create_model as create_model
from auxtrain.models import list_models as list_models

__version__ = "0.1.0"

__all__ = ["AuxiliaryModel", "create_model", "list_models", "load_model", "__version__"]
