"""The end-to-end pipeline: stage orchestration and the run report."""
