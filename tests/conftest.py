"""Shared test helpers: quiet TensorFlow, random valid genomes and one real tiny study."""

import contextlib
import dataclasses
import fcntl
import itertools
import json
import os
import pathlib
import random
import shutil
import sqlite3
import sys

import pytest
from hypothesis import settings

# CI derandomises Hypothesis, so a run's examples are the same every time (no flaky reds);
# locally it keeps exploring. The deadline is off: 2 shared cores make timings meaningless.
settings.register_profile("ci", derandomize=True, deadline=None, print_blob=True)
settings.register_profile("dev", deadline=None)
settings.load_profile("ci" if os.environ.get("CI") else "dev")

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# With a pytest-xdist worker per core, every core already runs a test: TensorFlow's intra-op thread pool on top
# only oversubscribes them. The tiny detector of tests/test_detection.py trained 8 epochs in 22-26 s and 28-31 s
# of CPU on one intra-op thread, 28-32 s and 36-43 s on two. Set before TensorFlow loads; the search, worker and
# training processes the tests start inherit it, as they keep any thread count a user set.
if int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0")) >= len(os.sched_getaffinity(0)):
    os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
from nas.cpu import ONEDNN, onednn_settings, use_settings  # noqa: E402

use_settings(onednn_settings())  # the kernels the commands use, here and in the processes tests start

from search_spaces.genome import Genome  # noqa: E402

# Tiny settings for unit tests: SpineNet needs sides divisible by 2**7.
TINY = {"filter_size_scale": 0.25, "resample_alpha": 0.25, "endpoints_num_filters": 16, "block_repeats": 1}
TINY_SIZE = 128


def random_genome(rng: random.Random, num_intermediate: int = 6, min_level: int = 3, max_level: int = 7) -> Genome:
    """A random valid genome: shuffled intermediate levels, then one output per level, random parents."""
    levels = [rng.randint(2, max_level) for _ in range(num_intermediate)]
    outputs = list(range(min_level, max_level + 1))
    rng.shuffle(outputs)
    specs = []
    for i, level in enumerate(levels + outputs):
        node = 2 + i
        parents = rng.sample(range(node), 2)
        specs.append((level, rng.choice(["bottleneck", "residual"]), tuple(parents), i >= num_intermediate))
    return Genome.from_block_specs(specs, min_level=min_level, max_level=max_level)


@pytest.fixture
def rng():
    """A random.Random seeded alike for every test."""
    return random.Random(1234)


@contextlib.contextmanager
def _exclusive(path):
    """Hold an exclusive lock on the file ``path`` (created if missing): one pytest-xdist worker at a time."""
    with open(path, "a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _output_to(printed, inherited):
    """This process's ``print`` output into the file ``printed``; file descriptors 1 and 2 (which the processes
    it starts inherit) into ``inherited``."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(printed, "w", encoding="utf-8", buffering=1) as out, open(inherited, "w", encoding="utf-8") as fds:
        os.dup2(fds.fileno(), 1)
        os.dup2(fds.fileno(), 2)
        try:
            with contextlib.redirect_stdout(out):
                yield
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


@dataclasses.dataclass(frozen=True)
class TinyStudy:
    """The shared study's experiment file, folder and storage, and what its search printed and returned."""

    directory: pathlib.Path
    path: str  # the experiment file
    storage: str
    code: int  # the search's exit status
    out: str  # what the search command printed (its workers' own lines are in directory/workers.log)
    pid: int  # the process that ran the search command
    threads_left: bool  # whether TF_NUM_INTRAOP_THREADS was set in that process after the search

    def copy_storage(self, folder: pathlib.Path) -> str:
        """A copy of the study in ``folder``/study.db, for a reader that writes; its storage URL.

        Through SQLite's backup: the file alone lacks what is still in its write-ahead log.
        """
        with contextlib.closing(sqlite3.connect(self.directory / "study.db")) as source, \
                contextlib.closing(sqlite3.connect(folder / "study.db")) as copy:
            source.backup(copy)
        return f"sqlite:///{folder}/study.db"


def _search_tiny_study(directory: pathlib.Path) -> dict:
    from nas.cli import main
    from tests.test_search import tiny_experiment

    directory.mkdir()
    # Four trials: the seed, the pre-screened one and two sampled while the other worker trains.
    path = tiny_experiment(directory, search={"n_trials": 4, "screening": {"proxy": "-params", "candidates": 4,
                                                                          "prescreen": 1}})
    with pytest.MonkeyPatch.context() as patch:
        # --workers auto sees a 2-core machine with 16 GiB and no GPU (its workers see the real one), and no
        # thread count of the user's (tests/conftest.py sets one under pytest-xdist).
        patch.chdir(directory)
        patch.setattr("nas.workers.usable_cores", lambda: 2)
        patch.setattr("nas.workers.gpu_count", lambda: 0)
        patch.setattr("nas.workers.physical_memory", lambda: 16 * 2**30)
        for name in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS", ONEDNN):
            patch.delenv(name, raising=False)
        with _output_to(directory / "search.out", directory / "workers.log"):
            code = main(["search", path])
        threads_left = "TF_NUM_INTRAOP_THREADS" in os.environ
    return {"path": path, "storage": f"sqlite:///{directory}/study.db", "code": code,
            "out": (directory / "search.out").read_text(encoding="utf-8"), "pid": os.getpid(),
            "threads_left": threads_left}


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory, worker_id) -> TinyStudy:
    """One real search of the tiny experiment of tests/test_search.py, read by every test that needs trained trials.

    ``spinenas search FILE`` (``--workers auto``) on a machine seen as 2 cores without GPUs: two single-threaded
    workers train 4 trials for real (the seed genome, the pre-screened one and two sampled, 64x64, one epoch each).
    Built once per test run: pytest-xdist workers share it through a lock and a folder beside their own temporary
    folders. Readers that write (a resume, an export) work on a copy of the storage.
    """
    shared = tmp_path_factory.getbasetemp()
    if worker_id != "master":
        shared = shared.parent  # the run's folder, above each worker's own
    directory = shared / "tiny_study"
    with _exclusive(shared / "tiny_study.lock"):
        built = directory / "built.json"
        if not built.exists():
            if directory.exists():
                shutil.rmtree(directory)  # a search that failed part-way: search again from scratch
            result = _search_tiny_study(directory)
            built.write_text(json.dumps(result), encoding="utf-8")
    return TinyStudy(directory=directory, **json.loads(built.read_text(encoding="utf-8")))


class _Lent:
    """A search's hold on the shared training process: it trains and scores there; its close() only lets go."""

    def __init__(self, process):
        self._process = process

    def run(self, genome, config, out_dir, report=None):
        # The child stays in the folder it was started in, another test's: it gets this trial's folder whole.
        return self._process.run(genome, config, os.path.abspath(out_dir), report)

    def score(self, *args, **kwargs):
        return self._process.score(*args, **kwargs)

    @property
    def pid(self):
        return self._process.pid

    def close(self, wait: bool = True) -> None:
        pass  # the next test's search trains in it too; the session's end stops it


@pytest.fixture(scope="session")
def _training_process():
    """This pytest worker's one warm training process, lent by warm_training."""
    from nas.search.child import TrialProcess

    process = TrialProcess(trials_per_process=10**6)
    yield process
    process.close()


@pytest.fixture
def warm_training(_training_process):
    """Searches and confirmations run in this test train in this pytest worker's one warm training process.

    Each would otherwise spawn its own, and pay TensorFlow's start-up in it (about 7 s of CPU). It is still a
    :class:`~nas.search.child.TrialProcess` (the value, for tests that drive it themselves): a trial that fails or
    dies in it replaces its child, as in a search. Searches that spawn worker processes are unaffected: each
    worker starts its own.
    """
    lent = _Lent(_training_process)
    with pytest.MonkeyPatch.context() as patch:  # not the test's monkeypatch, which a test may undo
        for module in ("nas.search.objective", "nas.fidelity.work_queue"):
            patch.setattr(f"{module}.TrialProcess", lambda *args, **kwargs: lent)
        yield _training_process


# The slowest tests and about how long each takes under `make test` on 2 cores (seconds), started first. pytest-xdist's
# worksteal hands each worker a contiguous share of the collection and lets an idle worker steal from the end of
# another's: a long test collected late would keep one worker busy long after the other ran out of tests. None of
# them uses a module-scoped fixture worth building twice (moved out of its module, a test sets those up again).
SLOWEST = {
    "tests/test_detection.py::test_training_lowers_loss_and_raises_ap": 53,
    "tests/test_detection.py::test_mixed_precision_trains_with_float32_outputs_and_leaves_no_policy_behind": 32,
    "tests/test_classification.py::test_classification_search_runs_resumes_and_reports": 28,
    "tests/test_failures.py::test_database_restart_under_three_workers_loses_nothing": 27,
    "tests/test_confirm.py::test_a_real_tiny_confirmation_trains_two_genomes_at_two_seeds": 25,
    "tests/test_distributed.py::test_three_workers_one_killed[postgres]": 24,
    "tests/test_distributed.py::test_three_workers_one_killed[journal]": 23,
    "tests/test_model_garden_checkpoint.py::test_export_command_writes_a_model_garden_checkpoint": 21,
    "tests/test_confirm.py::test_a_timed_search_with_a_confirmation_ends_within_ten_percent_of_the_budget": 21,
    "tests/test_screening.py::test_a_three_trial_predictor_search_trains_for_real": 18,
    "tests/test_model_garden_export.py::test_a_random_genome_trains_as_three_model_garden_detectors": 17,
    "tests/test_model_garden_export.py::test_spinenet49_exported_from_a_study_is_the_model_gardens_own": 17,
    "tests/test_screening.py::test_screened_search_scores_candidates_in_a_child": 16,
    "tests/test_search.py::test_sigkilled_search_resumes_without_losing_trials": 15,
    "tests/test_search.py::test_child_process_failures_are_reported": 14,
    "tests/test_model_garden_checkpoint.py::test_layout_is_the_model_garden_checkpoint[190]": 12,
    "tests/test_cli_input.py::test_no_tensorflow_log_lines_unless_verbose": 11,
    "tests/test_screening.py::test_every_proxy_is_finite_and_deterministic_for_a_seed[detection]": 11,
    "tests/test_fidelity.py::test_fidelity_command_end_to_end": 11,
    "tests/test_latency.py::test_the_latency_command_completes_the_table_then_measures_and_predicts": 10,
}
# Tests that share a session's expensive fixture go together, in one worker, as one unit of this many seconds more:
# the first builds it (tiny_study: a second worker would wait idle for it), the rest reuse it.
SHARED = {"tiny_study": 24, "warm_training": 10}


def _estimate(item) -> float:
    return SLOWEST.get(item.nodeid, 0.0)


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist, each worker's share of the collection starts with its part of the slowest tests."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0"))
    if workers < 2:
        return
    # The shares worksteal cuts the collection into: contiguous, as even in count as they go.
    sizes, left = [], len(items)
    for index in range(workers):
        sizes.append(left // (workers - index))
        left -= sizes[-1]
    units, grouped = [], set()
    for fixture, seconds in SHARED.items():
        group = [item for item in items if fixture in getattr(item, "fixturenames", ()) and id(item) not in grouped]
        if group:
            units.append((seconds + sum(map(_estimate, group)), group))
            grouped.update(map(id, group))
    units += [(_estimate(item), [item]) for item in items if _estimate(item) and id(item) not in grouped]
    units.sort(key=lambda unit: -unit[0])  # longest first, each to the share with least so far
    heads, loads = [[] for _ in range(workers)], [0.0] * workers
    for seconds, unit in units:
        share = min((i for i in range(workers) if len(heads[i]) + len(unit) <= sizes[i]), key=lambda i: loads[i])
        heads[share].extend(unit)
        loads[share] += seconds
    placed = {id(item) for head in heads for item in head}
    rest = iter([item for item in items if id(item) not in placed])
    items[:] = [item for head, size in zip(heads, sizes) for item in [*head, *itertools.islice(rest, size - len(head))]]
