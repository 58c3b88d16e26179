"""Optuna samplers of the project's own (the standard ones come from Optuna)."""

from nas.samplers.evolution import RegularizedEvolutionSampler

__all__ = ["RegularizedEvolutionSampler"]
