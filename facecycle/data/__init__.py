"""Dataset preparation (videos -> face tracks), pair datasets and augmentations for training."""
