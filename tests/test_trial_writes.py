"""The Optuna internals spinenas relies on (nas.search.trial_writes): fail here, loudly, when Optuna changes them."""

from __future__ import annotations

import inspect

import optuna
from optuna.trial import TrialState

from nas.search.trial_writes import claim_waiting, complete_trial, fail_trial


def test_the_private_storage_calls_still_exist_with_their_signatures():
    storage = optuna.storages.BaseStorage
    assert list(inspect.signature(storage.set_trial_state_values).parameters) == \
        ["self", "trial_id", "state", "values"], "Optuna changed BaseStorage.set_trial_state_values"
    assert list(inspect.signature(storage.set_trial_user_attr).parameters) == ["self", "trial_id", "key", "value"]
    study = optuna.create_study()
    assert isinstance(study._storage, storage) and isinstance(study.ask()._trial_id, int)


def test_a_waiting_trial_is_claimed_once(tmp_path):
    url = f"sqlite:///{tmp_path}/s.db"
    study = optuna.create_study(storage=url, study_name="s")
    study.enqueue_trial({}, user_attrs={"item": "a"})
    waiting = study.get_trials(states=(TrialState.WAITING,))[0]
    other = optuna.load_study(study_name="s", storage=url)  # a second worker
    mine = claim_waiting(study, waiting)
    assert mine is not None and mine.number == waiting.number
    assert claim_waiting(other, waiting) is None  # already taken
    assert study.trials[0].state == TrialState.RUNNING
    study.tell(mine, 1.0)
    assert claim_waiting(other, waiting) is None  # finished


def test_another_process_trial_is_failed_with_its_reason_once(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/s.db")
    running = study.ask()
    frozen = study.trials[0]
    assert fail_trial(study, frozen, "worker process 7 died during the trial")
    trial = study.trials[0]
    assert trial.state == TrialState.FAIL and trial.user_attrs["fail_reason"].startswith("worker process 7")
    assert not fail_trial(study, frozen, "again")  # another worker got there first
    assert running.number == 0


def test_a_cut_off_trial_is_completed_with_its_values_once(tmp_path):
    study = optuna.create_study(storage=f"sqlite:///{tmp_path}/s.db", directions=["maximize", "minimize"])
    study.ask()
    frozen = study.trials[0]
    assert complete_trial(study, frozen, [0.4, 2.0e6])
    trial = study.trials[0]
    assert trial.state == TrialState.COMPLETE and trial.values == [0.4, 2.0e6]
    assert not complete_trial(study, frozen, [0.9, 1.0])  # already finished: the first values stand
    assert study.trials[0].values == [0.4, 2.0e6]
