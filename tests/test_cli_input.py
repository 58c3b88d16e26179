"""Hostile input to data, decode, train and evaluate: one-line errors, exit status 2; quiet TensorFlow."""

import argparse
import os
import re
import subprocess
import sys

import pytest

from nas.cli import build_parser, main
from tests.test_detection import TINY_GENOME


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def assert_one_line_error(code, err, pattern):
    assert code == 2, err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("spinenas: error: "), err
    assert re.search(pattern, err), err


@pytest.mark.parametrize("flag, value", [
    ("--head-num-convs", "-1"), ("--head-num-filters", "0"), ("--num-classes", "0"),
    ("--filter-size-scale", "0"), ("--resample-alpha", "-0.5"), ("--block-repeats", "0"),
    ("--endpoints-num-filters", "-8"), ("--filter-size-scale", "nan"),
])
def test_decode_refuses_nonpositive_values(capsys, flag, value):
    code, out, err = run_cli(capsys, "decode", "--head", "retinanet", flag, value)
    assert_one_line_error(code, err, rf"argument {flag}: expected .*{re.escape(value)}")
    assert out == ""


def test_head_settings_are_checked_in_configs_too(tmp_path, capsys):
    code, _, err = run_cli(capsys, "train", "--out", str(tmp_path / "o"), "--set", "task.head.num_convs=-1")
    assert_one_line_error(code, err, "num_convs: must be 0 or more")


def test_data_shapes_image_size_must_suit_the_genome(tmp_path, capsys):
    code, _, err = run_cli(capsys, "data", "shapes", "--out", str(tmp_path / "s"), "--image-size", "37")
    assert_one_line_error(code, err, r"--image-size 37: a level-7 genome needs sides divisible by 2\*\*7 = 128, "
                                     r"e.g. 128, 256 or 512")
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("flag", ["--max-objects", "--train", "--val"])
def test_data_shapes_refuses_zero_counts(tmp_path, capsys, flag):
    code, _, err = run_cli(capsys, "data", "shapes", "--out", str(tmp_path / "s"), "--image-size", "128", flag, "0")
    assert_one_line_error(code, err, f"argument {flag}: expected a positive integer, got '0'")


def test_non_utf8_files_are_named(tmp_path, capsys):
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("name: caf\xe9\n".encode("latin-1"))
    code, _, err = run_cli(capsys, "decode", "--genome", str(bad))
    assert_one_line_error(code, err, rf"{re.escape(str(bad))}: not UTF-8 text")
    code, _, err = run_cli(capsys, "train", "--config", str(bad), "--out", str(tmp_path / "o"))
    assert_one_line_error(code, err, rf"{re.escape(str(bad))}: not UTF-8 text")
    root = tmp_path / "data"
    (root / "train").mkdir(parents=True)
    (root / "instances_train.json").write_bytes(b'{"images": "\xff"}')
    code, out, _ = run_cli(capsys, "data", "check", str(root))
    assert code == 1 and "instances_train.json: not UTF-8 text" in out


def test_out_pointing_at_a_file(tmp_path, capsys):
    afile = tmp_path / "taken"
    afile.write_text("x")
    code, _, err = run_cli(capsys, "data", "shapes", "--out", str(afile), "--image-size", "128", "--quiet")
    assert_one_line_error(code, err, rf"--out {re.escape(str(afile))}: is a file, not a folder")
    code, _, err = run_cli(capsys, "train", "--out", str(afile))
    assert_one_line_error(code, err, "is a file, not a folder")
    code, _, err = run_cli(capsys, "data", "import", "yolo", str(tmp_path), "--out", str(afile))
    assert_one_line_error(code, err, "is a file, not a folder")
    assert "Errno" not in err


def test_usage_errors_are_one_line(capsys):
    code, _, err = run_cli(capsys, "decode", "--no-such-flag")
    assert_one_line_error(code, err, "unrecognized arguments: --no-such-flag")
    code, _, err = run_cli(capsys, "data")
    assert_one_line_error(code, err, "required: dataset")


def _subparsers(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices
    return {}


@pytest.mark.parametrize("command", ["data", "decode", "train", "evaluate"])
def test_every_option_and_subcommand_is_described(command):
    pending = [(command, _subparsers(build_parser())[command])]
    while pending:
        name, parser = pending.pop()
        assert parser.description, f"{name} has no description"
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                pending += [(f"{name} {k}", v) for k, v in action.choices.items()]
            else:
                assert action.help, f"{name} {action.option_strings or action.dest} has no help line"


TF_LOG = re.compile(r"^([IWE]\d{4} \d\d:\d\d:\d\d|WARNING: All log messages before absl|"
                    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+: [IWE] )|oneDNN|cuInit|cuda drivers", re.M)


def test_no_tensorflow_log_lines_unless_verbose(tmp_path):
    genome = tmp_path / "tiny.yaml"
    TINY_GENOME.save(genome)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TF_CPP")}
    argv = [sys.executable, "-m", "nas.cli", "decode", "--genome", str(genome), "--input-size", "128",
            "--filter-size-scale", "0.25", "--endpoints-num-filters", "8", "--json"]
    quiet = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    assert quiet.returncode == 0, quiet.stderr
    assert not TF_LOG.search(quiet.stderr), quiet.stderr
    assert '"params"' in quiet.stdout
    loud = subprocess.run(argv[:3] + ["--verbose"] + argv[3:], capture_output=True, text=True, timeout=300, env=env)
    assert loud.returncode == 0 and TF_LOG.search(loud.stderr)  # the lines exist; only --verbose shows them


def test_optuna_interrupt_traceback_is_hidden_and_real_failures_are_not():
    import logging
    import sys

    from nas.search.study import _HideInterruptedTrial

    hide = _HideInterruptedTrial()

    def record(message, error=None):
        exc_info = None
        if error is not None:
            try:
                raise error
            except BaseException:
                exc_info = sys.exc_info()
        return logging.LogRecord("optuna.study._optimize", logging.WARNING, __file__, 1, message, None, exc_info)

    assert not hide.filter(record("Trial 3 failed with parameters: {} because of the following error: "
                                  "KeyboardInterrupt('terminated by SIGTERM').", KeyboardInterrupt("x")))
    assert not hide.filter(record("Trial 3 failed with value None."))
    assert hide.filter(record("Trial 4 failed with value None."))  # not interrupted: shown
    assert hide.filter(record("Trial 5 failed with parameters: {} because of the following error: "
                              "ValueError('boom').", ValueError("boom")))


def test_an_expected_trial_failure_prints_no_optuna_traceback(tmp_path):
    # A diverged or crashed trial has spinenas's own line; Optuna's warning repeated it with a traceback and
    # every encoding parameter. The real Optuna path, through its own handler.
    import io
    import logging

    import optuna

    from nas.trials import TrialFailed
    from nas.search.study import describe_trial, hide_interrupted_trials

    hide_interrupted_trials()
    handler = next(h for h in logging.getLogger("optuna").handlers if isinstance(h, logging.StreamHandler))
    stream, handler.stream = handler.stream, io.StringIO()
    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial):
        trial.suggest_int("order_0", 0, 9)
        trial.set_user_attr("fail_reason", "diverged: loss became nan at step 3")
        raise TrialFailed("diverged: loss became nan at step 3")

    def crash(trial):
        raise ValueError("a bug, not an expected failure")

    try:
        study = optuna.create_study()
        study.optimize(objective, n_trials=1, catch=(TrialFailed,))
        quiet = handler.stream.getvalue()
        study.optimize(crash, n_trials=1, catch=(ValueError,))
        loud = handler.stream.getvalue()[len(quiet):]
    finally:
        handler.stream = stream
    assert quiet == "", quiet
    assert "Traceback" in loud and "a bug" in loud  # anything else still shows in full
    assert "reason: diverged: loss became nan" in describe_trial(study.trials[0], study)


def test_a_training_crash_writes_its_traceback_to_the_trial_log(tmp_path):
    from nas.search.child import ERROR_LOG, _train_one

    kind, reason = _train_one(None, {"not": "a genome"}, {}, str(tmp_path / "t"))
    assert kind == "error" and "(at " in reason
    text = (tmp_path / "t" / ERROR_LOG).read_text()
    assert text.startswith("Traceback (most recent call last):") and reason.split(":")[0] in text


def test_the_command_line_parses_before_tensorflow_loads():
    # TF_CPP_MIN_LOG_LEVEL and TF_ENABLE_ONEDNN_OPTS are read once, when TensorFlow loads: main() sets them
    # after parsing, so parsing (every command's and task's parser) must not import it.
    script = ("import sys, nas.cli; nas.cli.build_parser().parse_args(['search', 'x.yaml']); "
              "print(sorted(m for m in ('tensorflow', 'tf_keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
