"""The shared training machinery: device and DDP runtime, checkpoints, the training loop."""
