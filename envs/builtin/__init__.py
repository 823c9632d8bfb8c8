"""Builtin envs: importing this package registers them (the registry does so on first use)."""

from posttrain.envs.builtin import algebra, arithmetic, graphs, logic, programs, puzzles, synthesis

__all__ = ["algebra", "arithmetic", "graphs", "logic", "programs", "puzzles", "synthesis"]
