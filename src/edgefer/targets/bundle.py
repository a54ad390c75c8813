"""Device bundles (``edgefer export --bundle DIR``) and the measurements they bring back.

A bundle is a folder to copy to the real device: the artifact with its manifest, a few hundred
preprocessed held-out test images with their labels (``testset.npz``), ``bundle.json`` (what it holds,
with digests) and ``run_on_device.py`` (``edgefer.targets.device_runner``: Python 3, numpy and the
device's runtime only). The runner writes ``measurement.json``; ``load_measurement`` checks one before
``edgefer compare --measured`` puts it in the report.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import numpy as np

from edgefer.errors import EdgeferError, output_folder

BUNDLE_IMAGES = 300  # held-out images the runner scores: enough for an accuracy check, quick on a Pi
MEASUREMENT_FORMAT = "edgefer-measurement/1"
RUNNABLE_FORMATS = ("tflite", "onnx", "openvino-ir")  # what device_runner loads


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_bundle(target, model, folder: str | Path, model_name: str, data_root=None, images: int = BUNDLE_IMAGES) -> dict:
    """Export ``model`` for ``target`` into ``folder`` with its test images and the device runner."""
    from edgefer.data.preprocess import prepare_input
    from edgefer.data.splits import evenly_spaced
    from edgefer.nn.evaluate import model_labels
    from edgefer.nn.recipes import heldout_test_set
    from edgefer.targets import device_runner

    if target.artifact_format not in RUNNABLE_FORMATS:
        raise EdgeferError(f"{target.name} artifacts ({target.artifact_format}) cannot be run by the device runner, "
                           f"which loads {', '.join(RUNNABLE_FORMATS)}")
    folder = output_folder(folder)
    artifact = target.export(model, folder / "artifact")
    test = heldout_test_set(model, data_root)
    pick = evenly_spaced(len(test), images)
    inputs = prepare_input(test.images[pick], model.input_mode).astype(np.float32)
    labels = model_labels(model, test)[pick]
    np.savez(folder / "testset.npz", inputs=inputs, labels=labels, classes=np.array(model.classes))
    shutil.copyfile(device_runner.__file__, folder / "run_on_device.py")
    manifest = {
        "format": "edgefer-bundle/1", "target": target.name, "label": target.label, "model": model_name,
        "model_digest": model.digest(),
        "artifact": {"file": f"artifact/{Path(artifact.path).name}", "format": artifact.format,
                     "precision": artifact.precision, "sha256": _sha256(artifact.path)},
        "testset": {"file": "testset.npz", "n": int(len(labels)), "images": "evenly spaced over the model's held-out test set"},
        "install": device_runner.INSTALL[artifact.format],
        "run": "python3 run_on_device.py [--tegrastats | --hwmon /sys/class/hwmon/hwmonN | --power-w W --idle-w W]",
        "created": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }
    (folder / "bundle.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def load_measurement(path: str | Path) -> dict:
    """A runner's measurement.json, checked: its format, its numbers, where its power came from."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EdgeferError("no such measurement file", path) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise EdgeferError(f"not a readable measurement file ({exc})", path) from None
    if not isinstance(data, dict) or data.get("format") != MEASUREMENT_FORMAT or data.get("source") != "measured":
        raise EdgeferError(f"not an edgefer measurement (expected format {MEASUREMENT_FORMAT!r}, written by "
                           "run_on_device.py)", path)
    try:
        latency = float(data["latency_s"]["median"])
        accuracy = float(data["accuracy"])
        target, digest = str(data["target"]), str(data["model_digest"])
        power = data.get("power") or {}
        active = None if power.get("active_w") is None else float(power["active_w"])
    except (KeyError, TypeError, ValueError) as exc:
        raise EdgeferError(f"measurement lacks or garbles a field ({exc})", path) from None
    if not latency > 0 or not 0 <= accuracy <= 1 or (active is not None and not active > 0):
        raise EdgeferError("measurement holds impossible values (latency <= 0, accuracy outside 0..1 or power <= 0)", path)
    return {**data, "target": target, "model_digest": digest, "path": str(path)}
