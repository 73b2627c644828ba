"""Experiment tracking (MLflow) with local SQLite defaults."""
