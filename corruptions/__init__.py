"""corruptions: the 19 CIFAR-C / ImageNet-C corruptions as batched, seeded torch kernels.

Standalone (imports numpy, torch, torchvision, PIL and tqdm, never auxtrain)::

    import torch, corruptions
    corruptions.get_corruption_names("common")        # the 15 benchmark names
    corruptions.resolve_names("noise,fog")            # names from any spec, canonical order
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    foggy = corruptions.corrupt(images, "fog", severity=3, generator=torch.Generator().manual_seed(0))
"""

from ._vocabulary import canonical_order as canonical_order
from ._vocabulary import family_of as family_of
from ._vocabulary import get_corruption_names as get_corruption_names
from ._vocabulary import parse_severities as parse_severities
from ._vocabulary import resolve_names as resolve_names
from .api import corrupt as corrupt
from .make_c import make_c as make_c
from .transforms import Corrupt as Corrupt
from .transforms import RandomCorruption as RandomCorruption

__all__ = ["corrupt", "get_corruption_names", "resolve_names", "family_of", "canonical_order",
           "parse_severities", "make_c", "Corrupt", "RandomCorruption"]
