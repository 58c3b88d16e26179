"""Search orchestration: the command line, experiments and Optuna studies."""
