"""The study's objective: sample a genome, cost it, check the budget, reuse or train, return the metrics."""

from __future__ import annotations

import os
import socket
import time
from typing import Callable, Optional

import optuna
from optuna.trial import TrialState

from nas.samplers.seeding import SEED_ATTR, trial_seed
from nas.experiment.schema import LATENCY_METRIC
from nas.search.child import TrialProcess
from nas.search.latency import LatencyUnavailable, measure_in_child, meter_for
from nas.search.screen import optional as optional_screener
from nas.search.storage import redacted, with_retries
from nas.search.study import RESULT_ATTR, process_alive
from nas.search.training_run import package_versions, train_trial
from nas.trials import TrialFailed
from nas.tasks.base import model_cost
from nas.cpu import onednn_setting
from search_spaces.space import InfeasibleGenome
from spinenet.cost import CostBudget


# The user attribute in which a trial claims the training of its genome (a time stamp; None once it yields).
CLAIM_ATTR = "training_claim"
# How often a trial waiting for a rival's result reads the storage, in seconds.
RIVAL_POLL_S = 2.0
# A twin that has recorded the genome but not claimed it yet is waited for this long (it is writing its claim).
CLAIM_SETTLE_S = 3.0
CLAIM_POLL_S = 0.2
# The claim a trial leaves once it waits for an earlier claimant.
YIELDED = "yielded"


class ModelBudget(CostBudget):
    """A :class:`~spinenet.cost.CostBudget` over the whole model (backbone plus the task's head), and its latency.

    ``latency(genome) -> ms`` backs ``max_latency_ms`` (the deployed model's latency).
    """

    def __init__(self, task, train_config, num_classes: int, *, max_params=None, max_multiply_adds=None,
                 max_latency_ms=None, latency: Optional[Callable] = None):
        if max_params is not None or max_multiply_adds is not None:
            super().__init__(max_params=max_params, max_multiply_adds=max_multiply_adds,
                             input_size=train_config.task.data.image_size, scaling=train_config.model.scaling)
        else:  # a latency-only budget
            self.max_params = self.max_multiply_adds = None
        if max_latency_ms is not None and latency is None:
            raise ValueError("max_latency_ms needs a latency function")
        self.task, self.train_config, self.num_classes = task, train_config, num_classes
        self.max_latency_ms, self.latency = max_latency_ms, latency

    def cost(self, genome):
        return model_cost(self.task, genome, self.train_config, self.num_classes)[0]

    def __call__(self, genome) -> list[float]:
        values = super().__call__(genome) if self.max_params is not None or self.max_multiply_adds is not None \
            else []
        if self.max_latency_ms is not None:
            values.append(self.latency(genome) / self.max_latency_ms - 1.0)
        return values


def model_budget(experiment, task, train_config, num_classes: int, latency=None) -> Optional[ModelBudget]:
    """The experiment's constraints as a :class:`ModelBudget` (None without any); ``latency`` backs max_latency_ms."""
    limits = experiment.search.constraints
    if limits.max_params is None and limits.max_multiply_adds is None and limits.max_latency_ms is None:
        return None
    return ModelBudget(task, train_config, num_classes, max_params=limits.max_params,
                       max_multiply_adds=limits.max_multiply_adds, max_latency_ms=limits.max_latency_ms,
                       latency=latency)


class Objective:
    """Sample, cost, deduplicate, then train in a child process.

    A genome over the experiment's constraints is recorded (genome, costs,
    ``constraints``, ``infeasible``) and ends PRUNED without training, the
    same path ``ScalePermutedSpace.sample(trial, constraint=...)`` takes.
    """

    def __init__(self, experiment, space, num_classes: int, log: Callable[[str], None] = print,
                 target: Optional[int] = None, storage_url: Optional[str] = None):
        self.experiment = experiment
        self.storage_url = redacted(storage_url or experiment.storage_url)  # for messages
        self.task = experiment.task_plugin
        self.train_config = experiment.train_config
        self.space = space
        self.num_classes = num_classes
        self.log = log
        self.target = target
        self.latency = meter_for(experiment, num_classes)
        self._latency_ms = {}  # fingerprint -> ms: a budget check and the record need it once
        self.budget = model_budget(experiment, self.task, self.train_config, num_classes,
                                   self.latency_ms if self.latency is not None else None)
        self.process = TrialProcess(experiment.search.trials_per_process,
                                    experiment.search.max_process_memory_growth_mb)
        self.screener = optional_screener(experiment, self.process, num_classes, self.budget, log)
        self.versions = package_versions()
        path = os.path.join(experiment.run_dir, "artifacts")
        os.makedirs(path, exist_ok=True)
        self.artifacts = optuna.artifacts.FileSystemArtifactStore(path)

    def __call__(self, trial: optuna.Trial):
        trial.set_user_attr("worker", {"host": socket.gethostname(), "pid": os.getpid()})
        seed = getattr(trial.study.sampler, "seed", None)
        if seed is not None:  # this trial's draws (nas.samplers.seeding), the same whichever worker runs it
            trial.set_user_attr(SEED_ATTR, trial_seed(seed, trial.number))
        threads = os.environ.get("TF_NUM_INTRAOP_THREADS", "")
        if threads.isdigit():  # a worker given its share of the cores: its trials' times depend on it
            trial.set_user_attr("cpu_threads", int(threads))
        if onednn_setting() is not None:  # set by spinenas or the user; unset: TensorFlow's own choice
            trial.set_user_attr("onednn", onednn_setting())
        if self.target is not None:
            # Another worker may have started the last needed trial a moment before this one.
            trials = trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.RUNNING))
            ahead = sum(1 for t in trials if t.state == TrialState.COMPLETE
                        or (t.state == TrialState.RUNNING and t.number < trial.number))
            if ahead >= self.target:
                trial.set_user_attr("cancelled", "enough trials complete or running")
                raise optuna.TrialPruned("enough trials complete or running")
        try:
            genome = self.space.sample(trial, constraint=self.budget)
        except InfeasibleGenome:
            genome = self.space.from_params(trial.params)
            self._record(trial, genome)
            self.log(f"trial {trial.number}: genome {genome.fingerprint} is over budget; not trained")
            raise
        except TrialFailed as err:  # its latency could not be measured for the budget
            self._fail_unmeasured(trial, err)
        try:
            known, trial_dir = self._record(trial, genome)
        except TrialFailed as err:
            self._fail_unmeasured(trial, err)
        if self.screener is not None:
            try:
                self.screener.record(trial, genome)
            except TrialFailed as err:
                trial.set_user_attr("fail_reason", str(err))
                raise
        twin = self._trained_twin(trial, genome.fingerprint) or self._wait_for_rival(trial, genome.fingerprint)
        if twin is not None:
            trial.set_user_attr("duplicate_of", twin.number)
            trial.set_user_attr("metrics", twin.user_attrs.get("metrics", {}))
            self.log(f"trial {trial.number}: genome {genome.fingerprint} was trained in trial {twin.number}; reusing")
            return self._result(trial, twin.values)

        # Intermediate values cost an evaluation each; only a pruner reads them (a task whose
        # evaluation.every_epoch is "auto" then evaluates only at the end).
        pruning = self.experiment.search.pruner.name != "none" and len(self.experiment.search.objectives) == 1
        report = self._reporter(trial) if pruning else None
        metrics, _ = train_trial(self.process, trial, genome, self.train_config, trial.user_attrs["seed"], trial_dir,
                               report=report, storage_url=self.storage_url, log=self.log)
        try:
            values = self._values(known, metrics)
        except TrialFailed as err:
            trial.set_user_attr("fail_reason", str(err))
            raise
        return self._result(trial, values)

    def cost(self, genome) -> tuple[float, float]:
        """Params and multiply-adds of backbone plus head at the task's image size (cost model)."""
        total, _ = model_cost(self.task, genome, self.train_config, self.num_classes)
        return float(total.params), float(total.multiply_adds)

    def latency_ms(self, genome) -> float:
        """The deployed model's latency (predicted, or measured in a child process), once per genome."""
        if genome.fingerprint not in self._latency_ms:
            if self.latency.config.source == "measured":
                try:
                    ms = measure_in_child(self.experiment, self.num_classes, genome)
                except LatencyUnavailable as err:  # this genome's trial fails; the search goes on
                    raise TrialFailed(f"measured latency: {err}") from None
                self._latency_ms[genome.fingerprint] = ms
            else:
                self._latency_ms[genome.fingerprint] = self.latency.predict(genome).ms
        return self._latency_ms[genome.fingerprint]

    def _fail_unmeasured(self, trial, err: TrialFailed):
        """Fail ``trial`` for a genome whose latency could not be had, keeping its genome on the record."""
        genome = self.space.from_params(trial.params)
        trial.set_user_attr("genome", genome.to_yaml())
        trial.set_user_attr("fingerprint", genome.fingerprint)
        trial.set_user_attr("fail_reason", str(err))
        self.log(f"trial {trial.number}: {err}; not trained")
        raise err

    def close(self) -> None:
        """Stop the warm training process."""
        self.process.close()

    def _record(self, trial, genome):
        """Store the genome, its costs, seed and versions on the trial (and the genome as an artifact)."""
        total, backbone = model_cost(self.task, genome, self.train_config, self.num_classes)
        trial_dir = os.path.join(self.experiment.run_dir, "trials", f"{trial.number:05d}")
        os.makedirs(trial_dir, exist_ok=True)
        genome_path = os.path.join(trial_dir, "genome.yaml")
        genome.save(genome_path)
        for key, value in (("genome", genome.to_yaml()), ("fingerprint", genome.fingerprint),
                           ("params", total.params), ("multiply_adds", total.multiply_adds),
                           ("backbone_params", backbone.params), ("backbone_multiply_adds", backbone.multiply_adds),
                           ("seed", self.experiment.seed + trial.number), ("versions", self.versions)):
            trial.set_user_attr(key, value)
        optuna.artifacts.upload_artifact(artifact_store=self.artifacts, file_path=genome_path, study_or_trial=trial)
        known = {"params": float(total.params), "multiply_adds": float(total.multiply_adds)}
        if self.latency is not None:
            known[LATENCY_METRIC] = self.latency_ms(genome)
            trial.set_user_attr(LATENCY_METRIC, known[LATENCY_METRIC])
            trial.set_user_attr("latency", {"source": self.latency.config.source, "input_size": self.latency.input_size,
                                            "threads": self.latency.threads})
        return known, trial_dir

    def _result(self, trial, values: list):
        """Record ``values`` on the trial (through a database restart) and return them for Optuna to write.

        Should Optuna's own write be lost, the next tidy-up finishes the trial
        from this record (:func:`~nas.search.study.fail_orphaned_trials`)
        instead of training the genome again.
        """
        with_retries(lambda: trial.set_user_attr(RESULT_ATTR, list(values)), self.storage_url, self.log)
        return values if len(values) > 1 else values[0]

    def _values(self, known: dict, metrics: dict) -> list:
        names = self.experiment.search.metric_names
        undefined = [name for name in names if name not in known and metrics.get(name) is None]
        if undefined:  # e.g. COCO APs on a validation split without small objects: no value to rank by
            raise TrialFailed(f"objective {undefined[0]} has no value: the validation split has nothing it "
                              "measures; choose another objective in search.objectives")
        return [known[name] if name in known else float(metrics[name]) for name in names]

    def _trained_twin(self, trial, fingerprint: str):
        for other in trial.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
            if other.user_attrs.get("fingerprint") == fingerprint and not other.user_attrs.get("infeasible"):
                return other
        return None

    def _wait_for_rival(self, trial, fingerprint: str):
        """Claim the training of ``fingerprint``; while an earlier claimant trains it, wait for its trial.

        Returns that trial once COMPLETE (its result is reused), or None when this
        trial is to train the genome itself (no rival, or the rival failed or died).
        Workers share nothing but the storage, which offers no compare-and-set:
        each trial writes its claim (a time stamp) and then reads the others'.
        While a running twin has recorded the genome but not yet claimed or
        yielded, this trial reads again (up to :data:`CLAIM_SETTLE_S`), so of two
        workers that sample one genome together both see both claims and agree
        that the earlier one trains.
        """
        announced = None
        while True:
            claim = time.time()
            trial.set_user_attr(CLAIM_ATTR, claim)
            settle = time.monotonic() + CLAIM_SETTLE_S
            rival, undecided = _earliest_rival(trial, fingerprint, (claim, trial.number))
            while rival is None and undecided and time.monotonic() < settle:
                time.sleep(CLAIM_POLL_S)
                rival, undecided = _earliest_rival(trial, fingerprint, (claim, trial.number))
            if rival is None:
                return self._trained_twin(trial, fingerprint)  # one may have finished meanwhile
            if rival.number != announced:
                self.log(f"trial {trial.number}: genome {fingerprint} is being trained by trial {rival.number}; "
                         "waiting for its result")
                announced = rival.number
            trial.set_user_attr(CLAIM_ATTR, YIELDED)  # later arrivals wait for the rival, not for this trial
            rival = _wait_until_finished(trial.study, rival)
            if rival.state == TrialState.COMPLETE:
                return rival
            ended = (f"ended {rival.state.name}" if rival.state != TrialState.RUNNING
                     else "lost its worker")
            self.log(f"trial {trial.number}: trial {rival.number} {ended}; training genome {fingerprint} here")

    def _reporter(self, trial):
        metric = self.experiment.search.metric_names[0]

        def report(step: int, metrics: dict) -> bool:
            if metrics.get(metric) is not None:
                trial.report(float(metrics[metric]), step)
                return not trial.should_prune()
            return True

        return report


def _earliest_rival(trial, fingerprint: str, mine: tuple):
    """The running trial of another live worker that claimed ``fingerprint`` before ``mine`` (claim, number),
    and whether a running twin has not decided yet (no claim written, none yielded)."""
    best, undecided = None, False
    for other in trial.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if other.number == trial.number or other.user_attrs.get("fingerprint") != fingerprint or not _worker_alive(other):
            continue
        claim = other.user_attrs.get(CLAIM_ATTR)
        if CLAIM_ATTR not in other.user_attrs:
            undecided = True
        elif claim is not None and claim != YIELDED and (claim, other.number) < mine \
                and (best is None or (claim, other.number) < best[0]):
            best = ((claim, other.number), other)
    return (None if best is None else best[1]), undecided


def _worker_alive(trial) -> bool:
    """False when the trial's worker ran on this host and is gone, or is this process (a worker runs one trial at a
    time, so another RUNNING trial of its own was cut off). Other hosts are trusted: heartbeats fail theirs."""
    worker = trial.user_attrs.get("worker") or {}
    if worker.get("host") != socket.gethostname() or not worker.get("pid"):
        return True
    return worker["pid"] != os.getpid() and process_alive(worker["pid"])


def _wait_until_finished(study, rival):
    """``rival`` read again every :data:`RIVAL_POLL_S` seconds until it is no longer running or its worker died."""
    while rival.state == TrialState.RUNNING and _worker_alive(rival):
        time.sleep(RIVAL_POLL_S)
        optuna.storages.fail_stale_trials(study)  # a worker on another host that died (storages with heartbeats)
        rival = next(t for t in study.get_trials(deepcopy=False) if t.number == rival.number)
    return rival
