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


def test_the_convolution_ceiling_times_exactly_the_work_the_cost_model_counts():
    # bench/conv_ceiling.py's bound means something only if its convolution calls are all of the counted work.
    from nas.tasks.detection.config import HeadConfig
    from nas.tasks.detection.cost import retinanet_head_cost
    from nas.tasks.detection.head import build_detector
    from spinenet import SPINENET_49, decode
    from spinenet.cost import network_cost
    from tests.conftest import TINY

    ceiling = _bench("conv_ceiling")
    head = HeadConfig(num_convs=2, num_filters=24, num_scales=2, aspect_ratios=(1.0, 2.0))
    detector = build_detector(decode(SPINENET_49, input_shape=(128, 128, 3), **TINY), 5, head)
    sites = ceiling.conv_sites(detector)
    assert sites[0]["input"] == [128, 128, 3]  # the stem first: it alone has no input gradient
    shared = [s for s in sites if s["name"] == "head_class_conv0"]
    assert [s["input"][:2] for s in shared] == [[128 // 2**level] * 2 for level in range(3, 8)]
    backbone = network_cost(SPINENET_49, 128, filter_size_scale=TINY["filter_size_scale"],
                            resample_alpha=TINY["resample_alpha"], block_repeats=TINY["block_repeats"],
                            endpoints_num_filters=TINY["endpoints_num_filters"])
    head_cost = retinanet_head_cost(num_classes=5, input_size=128, min_level=3, max_level=7, in_channels=16,
                                    num_convs=2, num_filters=24, num_anchors=4)
    assert sum(ceiling.multiply_adds(s, batch=2) for s in sites) == 2 * (backbone.multiply_adds
                                                                         + head_cost.multiply_adds)
