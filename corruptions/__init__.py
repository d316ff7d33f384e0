"""corruptions: the 19 CIFAR-C / ImageNet-C corruptions as batched, seeded torch kernels."""
