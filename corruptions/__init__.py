"""corruptions: the 19 CIFAR-C / ImageNet-C corruptions as batched, seeded torch kernels.

Standalone (imports numpy, torch, torchvision, PIL and tqdm, never auxtrain)::

    import torch, corruptions
    corruptions.get_corruption_names("common")        # the 15 benchmark names
    images = torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8)
    foggy = corruptions.corrupt(images, "fog", severity=3, generator=torch.Generator().manual_seed(0))
"""

from .api import corrupt as corrupt
from .api import get_corruption_names as get_corruption_names
from .make_c import make_c as make_c
from .transforms import Corrupt as Corrupt
from .transforms import RandomCorruption as RandomCorruption

__all__ = ["corrupt", "get_corruption_names", "make_c", "Corrupt", "RandomCorruption"]
