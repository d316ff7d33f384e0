"""corruptions: the 19 CIFAR-C / ImageNet-C corruptions as batched, seeded torch kernels.

Standalone (imports numpy, torch, torchvision and PIL, never auxtrain)::

    import corruptions
    corruptions.get_corruption_names("common")        # the 15 benchmark names
    y = corruptions.corrupt(x, "fog", severity=3, generator=torch.Generator().manual_seed(0))
"""

from .api import corrupt as corrupt
from .api import get_corruption_names as get_corruption_names

__all__ = ["corrupt", "get_corruption_names"]
