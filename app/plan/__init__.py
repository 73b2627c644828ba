"""Capacity planning: count parameters on a meta-device model, estimate memory (app.core.memory), choose GPUs."""
