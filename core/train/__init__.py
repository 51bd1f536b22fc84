"""Training: the trainer, checkpoints, schedulers, distributed set-up."""
