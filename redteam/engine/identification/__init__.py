"""Operator identification's parts (`redteam.engine.identify` is its entry point: see its docstring)."""
