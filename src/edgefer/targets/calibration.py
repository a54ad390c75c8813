"""``edgefer targets calibrate``: a device's cost model refitted on the user's own measurements.

Each measurement (``run_on_device.py``'s measurement.json) names the model it ran; its layer table
(rebuilt from the model, checked against the recorded digest) and measured latency join the device's
published fit points in the same grid fit (``costmodel.calibrate``). The result is a user constants
file; ``edgefer compare / search --constants FILE`` use its values instead of the published-point fit.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from edgefer.errors import EdgeferError, output_folder
from edgefer.targets import costmodel


def measured_network(measurement: dict) -> dict:
    """The measured model's layers and latency, for the fit."""
    from edgefer.nn.zoo import load_model
    from edgefer.targets.layers import op_table

    model = load_model(measurement["model"])
    if model.digest() != measurement["model_digest"]:
        raise EdgeferError(f"the model {measurement['model']!r} here is not the one measured (digest differs)",
                           measurement["path"])
    spec = model.spec
    shape = (spec.in_channels, spec.input_size, spec.input_size)
    return {"layers": op_table(spec.build(), shape), "in_values": int(np.prod(shape)), "out_values": spec.num_classes,
            "latency_s": float(measurement["latency_s"]["median"]), "model": measurement["model"],
            "measurement": measurement["path"]}


def _errors(m, networks: list[dict], device: str) -> dict:
    measured = [costmodel.ape(float(costmodel.network_latency(m, n["layers"], n["in_values"], n["out_values"])),
                              n["latency_s"]) for n in networks]
    points = costmodel._points(device)
    published = [costmodel.ape(float(p), q["latency_s"]) for p, q in zip(costmodel._predict_points(m, points), points)]
    return {"mdape_measured": costmodel.mdape(measured), "mdape_published": costmodel.mdape(published)}


def calibrate_from_measurements(paths, out: str | Path) -> dict:
    from edgefer.targets.bundle import load_measurement

    by_device: dict[str, list[dict]] = {}
    for path in paths:
        measurement = load_measurement(path)
        if measurement["target"] not in costmodel.device_table():
            raise EdgeferError(f"{measurement['target']} has no cost model to calibrate (measured targets need none)", path)
        if measurement.get("cpu_only"):
            raise EdgeferError("measured on the device's CPU only (--cpu): it says nothing about the accelerator", path)
        by_device.setdefault(measurement["target"], []).append(measured_network(measurement))
    report, devices = {"format": costmodel.USER_CONSTANTS_FORMAT, "devices": {}}, {}
    for device, networks in by_device.items():
        before = costmodel.fitted_model(device)
        after = costmodel.calibrate(device, networks)
        constants = {name: getattr(after, name) for name in after.fitted}
        devices[device] = {"constants": constants, "measurements": [n["measurement"] for n in networks]}
        report["devices"][device] = {"n_measured": len(networks), "constants": constants,
                                     "before": _errors(before, networks, device), "after": _errors(after, networks, device)}
    out = Path(out)
    output_folder(out.parent)
    out.write_text(json.dumps({"format": costmodel.USER_CONSTANTS_FORMAT, "devices": devices,
                               "report": report["devices"]}, indent=2) + "\n")
    return report
