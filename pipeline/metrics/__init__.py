"""Evaluation metrics (pure functions on arrays)."""
