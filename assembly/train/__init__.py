"""Training: the trainer, objectives, checkpoints, schedules, logging and plots."""
