"""Eval gates: suites as Ray Data batch jobs (suites.py, judges.py) → metrics → app.core.gates → report + registry."""
