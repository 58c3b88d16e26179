"""What every subcommand shares: loading experiments, finding studies and genomes, quiet TensorFlow.

Argument types and subcommand registration are in :mod:`nas.arguments`.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import subprocess
import sys
import warnings

from nas.arguments import UserError, dataset_folder


def genome_from_arg(entry: str):
    """A genome named on the command line: ``spinenet-49``, ``r50-like`` or a YAML/JSON file."""
    from spinenet.specs import resolve_genome

    return resolve_genome(entry)  # a GenomeError is a ValueError: one line, exit status 2


def add_study_options(parser, *, file_help: str = "the experiment file (or give --storage and --study-name)") -> None:
    """The positional experiment FILE and ``--storage``/``--study-name`` that name an existing study."""
    parser.add_argument("file", nargs="?", help=file_help)
    parser.add_argument("--storage", help="Optuna storage URL, e.g. sqlite:///runs/NAME/study.db "
                                          "(default: the experiment's)")
    parser.add_argument("--study-name", help="study name (default: the experiment's name)")
    add_data_option(parser, "the --data folder the search ran on, so that FILE names the same experiment "
                            "(its confirmation is found by it)")


# The layout is the task's (Task.check_data_layout); spinenas data import writes detection's.
DATA_HELP = ("your own data in place of the file's: a folder in the task's layout (detection: COCO format, "
             "instances_train.json, instances_val.json, train/ and val/, as spinenas data import writes it; "
             "classification: train/<class>/ and val/<class>/); the same as --set task.data.root=DIR "
             "--set task.data.generate_shapes=null")


def add_data_option(parser, help: str = DATA_HELP) -> None:
    """``--data DIR``: the dataset folder that stands for ``task.data.root=DIR`` and no generated data."""
    parser.add_argument("--data", type=dataset_folder, metavar="DIR", help=help)


def data_overrides(args) -> list[str]:
    """The ``--set`` overrides that ``--data DIR`` stands for; none without it.

    DIR is quoted so a folder named ``2024`` or ``null`` stays a string, as
    ``--set task.data.root=data/voc`` gives it.
    """
    folder = getattr(args, "data", None)
    if folder is None:
        return []
    return [f"task.data.root={json.dumps(folder, ensure_ascii=False)}", "task.data.generate_shapes=null"]


def check_data_folder(args, task, task_config) -> None:
    """With ``--data``, a one-line :class:`UserError` naming the first file or folder ``task`` needs and lacks.

    Cheap (nothing is read), so a command calls it before it records anything.
    """
    from nas.tasks.base import DataError

    if getattr(args, "data", None) is None:
        return
    try:
        task.check_data_layout(task_config)
    except DataError as err:
        raise UserError(f"--data {err}") from None


def experiment_from_args(args):
    """The experiment FILE with ``--set``, ``--data`` (its folder checked) and ``--strategy``, and those overrides.

    A command without one of those options gets none of its overrides.
    """
    from nas.experiment import load_experiment

    # --data after --set: it sets its two keys whatever --set says of them, and --set refines the rest.
    overrides = [*(getattr(args, "set", None) or ()), *data_overrides(args)]
    if getattr(args, "strategy", None):
        overrides.append(f"task.training.strategy={args.strategy}")
    experiment = load_experiment(args.file, overrides)
    check_data_folder(args, experiment.task_plugin, experiment.task)
    return experiment, overrides


def study_from_args(args):
    """The existing study named by an experiment FILE, or by --storage and --study-name; never creates one."""
    from nas.search.study import load_study

    if args.file:
        from nas.experiment import load_experiment

        experiment = load_experiment(args.file, ())
        return load_study(args.storage or experiment.storage_url, args.study_name or experiment.study_name)
    if not (args.storage and args.study_name):
        raise UserError("give an experiment FILE, or both --storage and --study-name")
    return load_study(args.storage, args.study_name)


def quiet_tensorflow(verbose: bool = False) -> None:
    """Set TensorFlow's C++ log level; must run before TensorFlow is imported to have any effect.

    oneDNN is not turned off to hide its start-up notice (that would change
    speed and numerics): the log level and :func:`hide_tensorflow_logs` hide
    it instead. ``nas.cpu.onednn_settings`` turns it on where TensorFlow
    would not.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "0" if verbose else "3")


def quiet_python(verbose: bool = False) -> None:
    """Silence Python warnings and loggers that are noise to a user; show the rest as one line each."""
    if verbose:
        return
    for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
        warnings.simplefilter("ignore", category)
    warnings.showwarning = _one_line_warning
    for name in ("tensorflow", "absl", "h5py"):
        logging.getLogger(name).setLevel(logging.ERROR)
    from nas.search.study import hide_interrupted_trials

    hide_interrupted_trials()


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    text = " ".join(str(message).split())
    print(f"spinenas: warning: {text} ({category.__name__} from {os.path.basename(filename)}:{lineno})",
          file=file or sys.stderr)


# TensorFlow's C++ log lines, in the absl format (I0000 00:00:1795.. 123 file.cc:12] ...), the older one
# (2025-01-01 12:00:00.123: W tensorflow/...] ...), and absl's notice before its log is initialised.
# Fatal (F) lines are kept: they explain a crash.
_FILTER_PROGRAM = r"""
import re, sys
pattern = re.compile(rb"^(?:[IWE]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ \S+:\d+\] "
                     rb"|\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWE] \S+:\d+\] "
                     rb"|WARNING: All log messages before absl::InitializeLog\(\) is called)")
out = sys.stdout.buffer
for line in sys.stdin.buffer:
    if not pattern.match(line):
        out.write(line)
        out.flush()
"""
_filter = None


def hide_tensorflow_logs() -> None:
    """Route this process's C-level stderr (file descriptor 2) through a filter that drops TensorFlow logs.

    Since TensorFlow 2.16 some C++ lines (the oneDNN notice, "Could not find
    cuda drivers", ``cuInit`` errors) are written before absl logging is set up
    and ignore ``TF_CPP_MIN_LOG_LEVEL``, so only a filter on the descriptor
    hides them. Python's own ``sys.stderr`` bypasses the filter. The filter is a
    separate process, so it still passes a crash's last words after this one dies.
    """
    global _filter
    if _filter is not None:
        return
    try:
        sys.stderr.flush()
        original = os.dup(2)
        _filter = subprocess.Popen([sys.executable, "-c", _FILTER_PROGRAM], stdin=subprocess.PIPE, stdout=original,
                                   stderr=subprocess.DEVNULL)
    except (OSError, ValueError, AttributeError):
        return  # no usable descriptor 2 (e.g. an embedding host): leave stderr as it is
    os.dup2(_filter.stdin.fileno(), 2)
    _filter.stdin.close()
    sys.stderr = open(original, "w", buffering=1, encoding=getattr(sys.stderr, "encoding", None) or "utf-8",
                      errors="backslashreplace", closefd=False)
    atexit.register(_stop_filter, original)


def _stop_filter(original: int) -> None:
    # Give descriptor 2 back and let the filter drain, so its last lines come before the shell prompt.
    try:
        sys.stderr.flush()
        os.dup2(original, 2)
        _filter.wait(timeout=2)
    except (OSError, subprocess.TimeoutExpired):
        pass


def recorded_verdict(args):
    """The confirmation's recorded verdict when the experiment FILE has a confirm section and one was run, else None."""
    if not getattr(args, "file", None):
        return None
    from nas.confirm import VERDICT_KEY, confirmation_study
    from nas.config import ConfigError

    experiment, _ = experiment_from_args(args)
    if experiment.confirm is None:
        return None
    try:
        return confirmation_study(experiment, args.storage, args.study_name).user_attrs.get(VERDICT_KEY)
    except ConfigError:  # not confirmed yet
        return None
