"""The benchmark scripts' own bookkeeping (their measurements run by hand, not here)."""

import importlib.util
import os

import pytest

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _bench(name):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", os.path.join(HERE, "bench", f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_an_unfinished_proxy_measurement_resumes_from_its_file(tmp_path):
    proxy = _bench("proxy")
    path = str(tmp_path / "runs.json")
    revisions = {"this tree": "abc1234", "baselines": ["1e9f694"], "workers": 2}
    trees = {"baseline 1e9f694": ("/old", [], 1), "this tree": (HERE, [], 2)}
    assert proxy.resumed_runs(path, revisions, trees) == {"baseline 1e9f694": [], "this tree": []}
    done = {"baseline 1e9f694": [{"wall": 500.0}], "this tree": [{"wall": 580.0}, {"wall": 590.0}]}
    proxy.write_runs(path, done, revisions, complete=False)
    assert proxy.resumed_runs(path, revisions, trees) == done
    # Cut short in the second repeat: the baseline's second trial and this tree's second pair are left to run.
    assert proxy.already_measured(done["baseline 1e9f694"], 0, 1) and not proxy.already_measured(
        done["baseline 1e9f694"], 1, 1)
    assert proxy.already_measured(done["this tree"], 0, 2) and not proxy.already_measured(done["this tree"], 1, 2)
    assert not proxy.already_measured(done["this tree"][:1], 0, 2)  # half a pair is measured again
    with pytest.raises(SystemExit, match="uncommitted changes"):
        proxy.resumed_runs(path, {**revisions, "this tree": "abc1234+changes"}, trees)
    with pytest.raises(SystemExit, match="other revisions or settings"):  # another commit's runs are not mixed in
        proxy.resumed_runs(path, {**revisions, "this tree": "def5678"}, trees)
    proxy.write_runs(path, done, revisions, complete=True)
    with pytest.raises(SystemExit, match="finished measurement"):
        proxy.resumed_runs(path, revisions, trees)
    assert os.listdir(tmp_path) == ["runs.json"]  # no temporary file left
