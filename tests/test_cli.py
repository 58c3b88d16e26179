"""The spinenas command line: summaries, JSON, saving, and one-line errors for bad input."""

import json
import subprocess
import sys

import pytest
import tf_keras

from nas.cli import main
from spinenet import SPINENET_49


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_json_summary_of_spinenet49s(capsys):
    code, out, _ = run_cli(capsys, "decode", "--model-id", "49S", "--input-size", "256", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["params"] == 9_146_351
    assert report["trainable_params"] < report["params"]
    assert report["endpoints"] == {str(l): [256 // 2**l, 256 // 2**l, 128] for l in range(3, 8)}
    assert report["fingerprint"] == SPINENET_49.fingerprint
    assert report["multiply_adds"] > 0


def test_text_summary_lists_blocks(capsys):
    code, out, _ = run_cli(capsys, "decode", "--model-id", "49", "--input-size", "128",
                           "--filter-size-scale", "0.25", "--resample-alpha", "0.25")
    assert code == 0
    assert "params:" in out and "multiply-adds:" in out and "level 7: 1x1x256" in out
    rows = [line.split() for line in out.splitlines() if line.strip()[:2].strip().isdigit()]
    assert [int(r[0]) for r in rows] == list(range(1, 16))
    assert rows[12][:4] == ["13", "5", "bottleneck", "7,12"] and "11" in rows[12]


def test_genome_file_and_save(tmp_path, capsys):
    genome_file = tmp_path / "mine.yaml"
    SPINENET_49.save(genome_file)
    out_path = tmp_path / "mine.keras"
    code, out, _ = run_cli(capsys, "decode", "--genome", str(genome_file), "--input-size", "128",
                           "--filter-size-scale", "0.25", "--endpoints-num-filters", "8",
                           "--save", str(out_path), "--json")
    assert code == 0
    report = json.loads(out)
    assert report["endpoints"]["3"] == [16, 16, 8]
    assert tf_keras.models.load_model(out_path).count_params() == report["params"]


def _broken(tmp_path, text, name="g.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize(
    "make_args, message",
    [
        (lambda p: ["--genome", _broken(p, "blocks: [[2, bottleneck\n")], "malformed YAML"),
        (lambda p: ["--genome", _broken(p, SPINENET_49.to_yaml().replace("[4, residual", "[4, resdual"))],
         "block 2: unknown block fn 'resdual'"),
        (lambda p: ["--genome", _broken(p, SPINENET_49.to_yaml().replace("[2, 4]", "[2, 9]"))],
         r"block 4 \(node 5\): input offset 9 points at a later node"),
        (lambda p: ["--genome", _broken(p, SPINENET_49.to_yaml().replace("[6, bottleneck, [12, 14], true]",
                                                                          "[5, bottleneck, [12, 14], true]"))],
         "block 15: duplicate output level 5"),
        (lambda p: ["--genome", str(p / "nope.yaml")], "nope.yaml: cannot read genome file"),
        (lambda p: ["--model-id", "50"], "unknown SpineNet model id '50'"),
        (lambda p: ["--input-size", "600"], "input height 600 is not divisible by 128"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, make_args, message):
    code, out, err = run_cli(capsys, "decode", *make_args(tmp_path))
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("spinenas: error: ")
    assert __import__("re").search(message, err), err


def test_console_script_reports_errors_without_traceback(tmp_path):
    bad = _broken(tmp_path, SPINENET_49.to_yaml().replace("[0, 1], false]\n- [4", "[0, 0], false]\n- [4"))
    proc = subprocess.run([sys.executable, "-m", "nas.cli", "decode", "--genome", bad],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "block 1: repeated parent 0" in proc.stderr
