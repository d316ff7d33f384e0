"""What each training mode feeds the training step (:mod:`auxtrain.train_step`): inputs and loss.

* ``auxiliary``: the clean batch and one view per branch; the main head learns from the clean
  chunk, each auxiliary head from its view (distillation, tying, companions: AuxiliaryLoss).
* ``augment`` (the naive baseline): the same inputs, every copy through the main head with its label.
* ``augmix``: the clean batch and two AugMix views through the main head; cross-entropy on the
  clean chunk and the Jensen-Shannon consistency over the three.
"""

from __future__ import annotations

import torch

from auxtrain.schedule import TrainingSchedule
from auxtrain.train_config import TrainConfig
from auxtrain.train_step import InputsFn, LossFn

__all__ = ["step_inputs", "step_loss"]


def step_inputs(cfg: TrainConfig, branches, severities) -> InputsFn:
    """The step's inputs ``[clean, view_1, ..., view_K]`` of a clean uint8 batch on the device.

    The views are pixel-aligned with the clean batch; ``cfg.view_order`` says whether they corrupt
    the cropped clean batch (the default) or the images before the same crop and flip.
    """
    from auxtrain.data import augment_with_views, make_views

    def make_inputs(images: torch.Tensor, gen: torch.Generator) -> list[torch.Tensor]:
        views = (lambda x: make_views(x, branches, gen, severities)) if branches else None
        if cfg.dataset == "imagefolder":  # augmented per sample in its dataset
            return [images, *(views(images) if views else [])]
        return augment_with_views(images, gen, views, view_order=cfg.view_order)

    return make_inputs


def step_loss(cfg: TrainConfig, net, criterion, schedule: TrainingSchedule, epoch: int, *,
              num_views: int) -> LossFn:
    """AuxiliaryLoss with this epoch's tying and companion weights, on the mode's split of the output."""
    tying_weight, companion_weight = schedule.tying_weight(epoch), schedule.companion_weight_at(epoch)
    jsd = cfg.mode == "augmix"
    # Labels per clean image: one, except in augment mode where every copy is a main-head sample.
    copies = 1 if net.num_branches or not num_views or jsd else num_views + 1

    def loss(out, target: torch.Tensor):
        y = target.repeat(copies) if copies > 1 else target
        main, *mixed = out.main.float().split(target.shape[0]) if jsd else (out.main.float(),)
        return criterion(main, [a.float() for a in out.aux], y, consistency=mixed,
                         tying=net.weight_tying_penalty(),
                         tying_weight=tying_weight, companions=out.companions,
                         companion_weight=companion_weight)

    return loss
