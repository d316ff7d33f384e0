"""auxtrain: train image classifiers that stay accurate when their inputs are corrupted.

The public names re-exported here are the stable API; see README.md for examples.
"""

import os

# OpenMP's default busy-waiting makes every multi-threaded CPU op spin against any other load on
# the machine (measured here: 20-80x slower small ops, a 5x slower training epoch). Passive waiting
# costs little on an idle machine. It only takes effect if torch is not imported yet; a value set
# by the user wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from auxtrain.auxiliary import AuxiliaryModel as AuxiliaryModel  # noqa: E402
from auxtrain.export import load_model as load_model  # noqa: E402
from auxtrain.models import create_model as create_model  # noqa: E402
from auxtrain.models import list_models as list_models  # noqa: E402

__version__ = "0.1.0"

__all__ = ["AuxiliaryModel", "create_model", "list_models", "load_model", "__version__"]
