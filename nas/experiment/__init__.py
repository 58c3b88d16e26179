"""Experiment and train config files: their schema, loading, fingerprints and fidelities.

:mod:`~nas.experiment.train_config` (the model and task sections one
training run reads), :mod:`~nas.experiment.schema` (the experiment file),
:mod:`~nas.experiment.fingerprint` (which studies an experiment may open),
:mod:`~nas.experiment.fidelities` (the ``fidelities`` overrides) and
:mod:`~nas.experiment.load` (reading the files). The names below are the
public way in: ``from nas.experiment import load_experiment``.

Examples:
    >>> from nas.experiment import Experiment
    >>> len(Experiment(name="demo").fingerprint)
    16
"""

from nas.experiment.load import load_experiment, load_train_config
from nas.experiment.schema import Experiment
from nas.experiment.train_config import ModelConfig, TrainConfig

__all__ = ["Experiment", "ModelConfig", "TrainConfig", "load_experiment", "load_train_config"]
