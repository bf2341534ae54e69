"""Training: a generic solver (seeding, loop, checkpoints, metrics) and one module per model family."""
