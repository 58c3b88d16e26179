"""The deployed detector's COCO AP on the shapes val split, as trained and as each exported file gives it.

Run by hand (from the repository root):

    python bench/deploy.py                      # -> bench/results/deploy.json

Trains SpineNet-49 at the proxy's scaling on ``experiments/proxy_shapes.yaml``
(``spinenas train --model-id 49 --config experiments/proxy_shapes.yaml``,
skipped when ``--run`` already holds that run), exports it with
``spinenas export --run ... --saved-model --litert --quantize float16,int8``,
and scores every file on the val split with training's scorer: the
SavedModel, the float32 LiteRT file, and the float16 and int8 (dynamic-range)
files, beside the AP training's own evaluation reported. Also records each
file's size and its LiteRT latency at batch 1 on one thread (median of 20).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

OUT = "bench/results/deploy.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default="runs/bench_deploy/train")
    parser.add_argument("--out", default="runs/bench_deploy/deployed")
    args = parser.parse_args()
    spinenas = [sys.executable, "-m", "nas.cli"]
    if not os.path.exists(os.path.join(args.run, "checkpoint.weights.h5")):
        subprocess.run([*spinenas, "train", "--model-id", "49", "--config", "experiments/proxy_shapes.yaml",
                        "--out", args.run, "--quiet"], check=True)
    subprocess.run([*spinenas, "export", "--run", args.run, "--saved-model", "--litert", "--quantize",
                    "float16,int8", "--out", args.out], check=True)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import numpy as np

    from nas.experiment import load_train_config
    from nas.tasks.deploy import load_saved_model
    from nas.tasks.detection.annotations import read_coco
    from nas.tasks.detection.deploy import deployed_ap
    from spinenet.latency.runtime import LiteRTModel

    config = load_train_config(os.path.join(args.run, "config.yaml"))
    with open(os.path.join(args.run, "metrics.json"), encoding="utf-8") as handle:
        trained = json.load(handle)
    with open(os.path.join(args.out, "deploy.json"), encoding="utf-8") as handle:
        deploy = json.load(handle)
    data = config.task.data
    train = read_coco(data.path("train", "annotations"), data.path("train", "images"))
    val = read_coco(data.path("val", "annotations"), data.path("val", "images"), category_ids=train.category_ids,
                    class_names=train.category_names)
    size = data.image_size
    rows = {"training evaluation": {"AP": trained["AP"], "AP50": trained["AP50"], "AP75": trained["AP75"]}}
    saved = load_saved_model(os.path.join(args.out, "saved_model"))
    rows["saved_model"] = deployed_ap(saved, val, size, batch_size=8)
    images = np.random.default_rng(0).uniform(0, 255, [1, size, size, 3]).astype(np.float32)
    for quantization in ("float32", "float16", "int8"):
        path = os.path.join(args.out, f"model_{quantization}.tflite")
        model = LiteRTModel(path, threads=1)
        metrics = deployed_ap(model.run, val, size, batch_size=1)
        metrics["bytes"] = os.path.getsize(path)
        metrics["latency_ms"] = model.time(images, repeats=20).median_ms
        rows[f"litert_{quantization}"] = metrics
        print(f"{quantization}: AP {metrics['AP']:.4f} ({metrics['AP'] - rows['litert_float32']['AP']:+.4f} "
              f"against float32), {metrics['bytes'] / 1e6:.2f} MB, {metrics['latency_ms']:.1f} ms", flush=True)
    result = {"command": "python bench/deploy.py " + " ".join(sys.argv[1:]), "run": args.run,
              "val": val.summary(), "image_size": size, "deploy": deploy, "rows": rows, "load": os.getloadavg()[0]}
    with open(OUT, "w", encoding="utf-8") as handle:
        json.dump(result, handle, indent=1, default=float)
    print(json.dumps({k: {m: v.get(m) for m in ("AP", "AP50", "bytes", "latency_ms")} for k, v in rows.items()},
                     indent=1, default=float))


if __name__ == "__main__":
    main()
