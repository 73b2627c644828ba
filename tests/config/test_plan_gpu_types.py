"""The plan schema validates GPU names without importing the planner: its list must equal the planner's catalog."""

from app.config.plan import GPU_TYPES
from app.plan.gpus import CATALOG


def test_schema_gpu_types_are_the_catalog():
    assert tuple(CATALOG) == GPU_TYPES
