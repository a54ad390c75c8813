"""Analytical per-layer latency / power / energy model for the modeled edge targets.

Per weight layer (convolution or dense; batch-norm and ReLU fold into it on every target's
compiler): ``max(MACs / (peak x efficiency), bytes moved / memory bandwidth) + per-layer overhead``.
Pooling layers move bytes only. Per inference: a fixed invoke overhead, the host<->device link
transfer of the input and output tensors (USB for NCS2 and Coral), parameters that do not fit the
Coral's on-chip SRAM streamed over USB every inference, and layers the device cannot run executed on
the fallback CPU. Power is the device's active power; energy = power x latency.

Constants live in each device's constants file (``targets/devices/<device>.json``) with a citation
each. The free ones (efficiency, overheads, streaming rate) are fitted per device to the ``fit`` rows
of its published latencies; the ``holdout`` rows never enter a fit and are reported separately by :func:`validation_report`.
"""

from __future__ import annotations

import csv
import json
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import numpy as np

from edgefer.errors import EdgeferError

FITTABLE = ("compute_efficiency", "per_layer_s", "per_invoke_s", "weight_stream_bytes_per_s")
# Coarse log-spaced search ranges for the fitted constants (wide on purpose: the data decides).
# per_invoke_s reaches 100 ms because the published NCS2 times include a Raspberry Pi 3 B+ host's image
# handling and USB 2 transfers (tens of ms); 8 points a decade, so the grid below 10 ms is unchanged.
FIT_GRID = {
    "compute_efficiency": np.geomspace(0.02, 1.0, 40),
    "per_layer_s": np.concatenate([[0.0], np.geomspace(1e-7, 1e-3, 33)]),
    "per_invoke_s": np.concatenate([[0.0], np.geomspace(1e-5, 1e-1, 33)]),
    "weight_stream_bytes_per_s": np.geomspace(5e7, 2e9, 25),
}


def _data_text(name: str) -> str:
    return resources.files("edgefer.targets").joinpath("data").joinpath(name).read_text()


def _modeled_targets() -> list[type]:
    """Registered edge targets with a constants file: the devices this cost model prices."""
    from edgefer.targets.registry import target_classes

    return [c for c in target_classes(role="edge") if c.constants and "constants" in c.constants_data()]


def device_table() -> dict:
    return {c.name: c.constants_data()["constants"] for c in _modeled_targets()}


@lru_cache(maxsize=None)
def shared_citations() -> dict:
    return json.loads(_data_text("citations.json"))


def citations() -> dict:
    """Every citation key: the shared ones and those each target's constants file brings."""
    from edgefer.targets.registry import target_names

    return _citations(target_names())


@lru_cache(maxsize=None)
def _citations(names: tuple[str, ...]) -> dict:
    """Merged once per set of registered targets (a plugin registering later gets its own entry)."""
    from edgefer.targets.registry import target_class

    out = dict(shared_citations())
    for name in names:
        out.update(target_class(name).constants_data().get("citations", {}))
    return out


@lru_cache(maxsize=None)
def public_models() -> dict:
    rows = csv.DictReader(_data_text("public_models.csv").splitlines())
    return {(r["model"], int(r["input_size"])): {"macs": float(r["macs"]), "params": float(r["params"]),
                                                  "weight_layers": int(r["weight_layers"]), "citation": r["citation"]}
            for r in rows}


def published_points() -> tuple[dict, ...]:
    """Every modeled device's published latencies (``published_latency`` of its constants file)."""
    rows = []
    for cls in _modeled_targets():
        for r in cls.constants_data().get("published_latency", []):
            key = (r["model"], int(r["input_size"]))
            if key not in public_models():
                raise EdgeferError(f"{cls.constants} names {key}, missing from public_models.csv")
            rows.append({**r, "device": cls.name, "input_size": int(r["input_size"]), "latency_s": float(r["latency_ms"]) / 1e3})
    return tuple(rows)


def raw_constants(device: str) -> dict:
    table = device_table()
    if device not in table:
        raise EdgeferError(f"no cost model for device {device!r}; modeled devices: {', '.join(table)}")
    return table[device]


def _value(entry, default=None):
    return entry["value"] if isinstance(entry, dict) else (entry if entry is not None else default)


@dataclass(frozen=True)
class DeviceModel:
    """The numbers one device's latency model needs (fitted ones already substituted)."""

    name: str
    peak_macs_per_s: float
    compute_efficiency: float
    per_layer_s: float
    per_invoke_s: float
    bytes_per_value: float
    active_power_w: float | None
    memory_bytes_per_s: float | None = None  # off-chip memory traffic (CPU, GPU); None: on-chip
    link_bytes_per_s: float | None = None  # host<->device link (USB); None: no link
    onchip_weight_bytes: float | None = None  # parameters beyond this stream over the link
    weight_stream_bytes_per_s: float | None = None
    fallback_device: str | None = None
    fitted: tuple[str, ...] = ()
    citation_keys: tuple[str, ...] = ()

    def with_values(self, **values) -> "DeviceModel":
        return DeviceModel(**{**self.__dict__, **values})


def base_model(device: str) -> DeviceModel:
    raw = raw_constants(device)
    keys = tuple(sorted({v["citation"] for v in raw.values() if isinstance(v, dict) and "citation" in v}))
    return DeviceModel(
        name=device,
        peak_macs_per_s=_value(raw["peak_macs_per_s"]),
        compute_efficiency=_value(raw["compute_efficiency"]),
        per_layer_s=_value(raw["per_layer_s"]),
        per_invoke_s=_value(raw["per_invoke_s"]),
        bytes_per_value=_value(raw["bytes_per_value"]),
        active_power_w=_value(raw.get("active_power_w")),
        memory_bytes_per_s=_value(raw.get("memory_bytes_per_s")),
        link_bytes_per_s=_value(raw.get("link_bytes_per_s")),
        onchip_weight_bytes=_value(raw.get("onchip_weight_bytes")),
        weight_stream_bytes_per_s=_value(raw.get("weight_stream_bytes_per_s")),
        fallback_device=raw.get("fallback_device"),
        citation_keys=keys,
    )


def _free_constants(device: str) -> list[str]:
    raw = raw_constants(device)
    return [k for k in FITTABLE if isinstance(raw.get(k), dict) and raw[k].get("kind") == "fitted-default"]


# --- the latency model -----------------------------------------------------------------------------
def aggregate_latency(m: DeviceModel, macs, params, weight_layers, in_values, out_values, **override):
    """Latency of a network known only by totals (published public models), spread evenly over its
    weight layers; numpy-broadcastable over ``override`` arrays so a fit can scan a grid at once.
    Same terms as :func:`layer_latency` (activations traffic omitted: unknown for public models)."""
    c = {**m.__dict__, **override}
    compute = macs / (c["peak_macs_per_s"] * c["compute_efficiency"])
    memory = 0.0 if c["memory_bytes_per_s"] is None else params * c["bytes_per_value"] / c["memory_bytes_per_s"]
    total = c["per_invoke_s"] + np.maximum(compute, memory) + weight_layers * c["per_layer_s"]
    return total + _link_s(c, in_values + out_values) + _stream_s(c, params)


def _link_s(c: dict, values) -> float:
    return 0.0 if c["link_bytes_per_s"] is None else values * c["bytes_per_value"] / c["link_bytes_per_s"]


def _stream_s(c: dict, params):
    if c["onchip_weight_bytes"] is None:
        return 0.0
    spill = np.maximum(0.0, params * c["bytes_per_value"] - c["onchip_weight_bytes"])
    return spill / c["weight_stream_bytes_per_s"]


def layer_latency(m: DeviceModel, layers: list[dict], in_values: int, out_values: int,
                  unsupported: set[str] = frozenset()) -> dict:
    """Per-layer latency of a real network (rows of :func:`edgefer.targets.layers.op_table`).

    ``unsupported`` layer names run on ``m.fallback_device``'s CPU model, their input crossing the link.
    Returns the total and its terms, and a per-layer list.
    """
    c = m.__dict__
    mem_bw = m.memory_bytes_per_s
    fallback = fitted_model(m.fallback_device) if (unsupported and m.fallback_device) else None
    per_layer, terms = [], {"compute_s": 0.0, "memory_s": 0.0, "overhead_s": m.per_invoke_s, "link_s": 0.0,
                            "weight_stream_s": 0.0, "fallback_s": 0.0}
    for row in layers:
        if row["kind"] not in ("conv", "dense", "pool"):
            continue  # batch-norm, ReLU, dropout, flatten: folded or free on every target's compiler
        device, dm = ("fallback", fallback) if (row["name"] in unsupported and fallback) else ("device", m)
        traffic = (row["in_values"] + row["out_values"]) * dm.bytes_per_value
        if row["kind"] != "pool":
            traffic += row["params"] * dm.bytes_per_value
        compute = row["macs"] / (dm.peak_macs_per_s * dm.compute_efficiency)
        memory = 0.0 if dm.memory_bytes_per_s is None else traffic / dm.memory_bytes_per_s
        overhead = 0.0 if row["kind"] == "pool" else dm.per_layer_s  # per weight layer, as in aggregate_latency
        seconds = max(compute, memory) + overhead
        if device == "fallback":
            seconds += _link_s(c, row["in_values"])  # the activation goes back to the host
            terms["fallback_s"] += seconds
        else:
            terms["compute_s" if compute >= memory else "memory_s"] += max(compute, memory)
            terms["overhead_s"] += overhead
        per_layer.append({"name": row["name"], "kind": row["kind"], "on": device, "seconds": seconds})
    terms["link_s"] = float(_link_s(c, in_values + out_values))
    params = sum(r["params"] for r in layers if r["name"] not in unsupported)
    terms["weight_stream_s"] = float(_stream_s(c, params))
    total = sum(terms.values())
    return {"latency_s": total, "terms": terms, "layers": per_layer, "memory_bandwidth_used": mem_bw is not None}


# --- fitting and validation ------------------------------------------------------------------------
def _points(device: str, split: str | None = None) -> list[dict]:
    return [p for p in published_points() if p["device"] == device and (split is None or p["split"] == split)]


def _predict_points(m: DeviceModel, points: list[dict], **override):
    out = []
    for p in points:
        pm = public_models()[(p["model"], p["input_size"])]
        in_values = 3 * p["input_size"] ** 2
        out.append(aggregate_latency(m, pm["macs"], pm["params"], pm["weight_layers"], in_values, 1000, **override))
    return out


# Constants refitted on a user's own measurements (``edgefer targets calibrate``), loaded with
# ``use_constants``: they replace the published-point fit of their devices.
USER_CONSTANTS_FORMAT = "edgefer-constants/1"
_user_constants: dict[str, dict] = {}


@lru_cache(maxsize=None)
def fitted_model(device: str) -> DeviceModel:
    """The device model with its free constants fitted to the published ``fit`` points (log-error
    least squares over a grid), or the values of a user constants file loaded for it. Devices without
    published points keep their cited/assumed values."""
    m = base_model(device)
    if device in _user_constants:
        values = _user_constants[device]
        return m.with_values(**values, fitted=tuple(values))
    return _fit(m, _free_constants(device), _points(device, "fit"), [])


def _grid(names: list[str]) -> dict:
    grids = np.meshgrid(*[FIT_GRID[n] for n in names], indexing="ij")
    return {n: g.ravel() for n, g in zip(names, grids)}


def _fit(m: DeviceModel, free: list[str], points: list[dict], networks: list[dict]) -> DeviceModel:
    """Grid search of the free constants on published points (public models known by totals) and, from
    ``calibrate``, measured networks known layer by layer; the measurements together weigh ten times the
    published points, which stay as priors for what few measurements cannot pin."""
    if not free or not (points or networks):
        return m
    names = list(free)
    override = _grid(names)
    shape = override[names[0]].shape
    loss = np.zeros(shape)
    if points:
        measured = np.array([p["latency_s"] for p in points])
        predicted = np.stack([np.broadcast_to(x, shape) for x in _predict_points(m, points, **override)])
        loss += np.sum(np.log(predicted / measured[:, None]) ** 2, axis=0)
    if networks:
        weight = 10.0 * max(1, len(points)) / len(networks)
        for net in networks:
            predicted = np.broadcast_to(network_latency(m, net["layers"], net["in_values"], net["out_values"], **override), shape)
            loss += weight * np.log(predicted / net["latency_s"]) ** 2
    best = int(np.argmin(loss))
    return m.with_values(**{n: float(override[n][best]) for n in names}, fitted=tuple(names))


def network_latency(m: DeviceModel, layers: list[dict], in_values: int, out_values: int, **override):
    """The per-layer latency of a whole network (no fallback layers), broadcastable over ``override``
    arrays like :func:`aggregate_latency`: what a grid fit on measured networks needs."""
    c = {**m.__dict__, **override}
    total = c["per_invoke_s"] + _link_s(c, in_values + out_values) + _stream_s(c, sum(r["params"] for r in layers))
    for row in layers:
        if row["kind"] not in ("conv", "dense", "pool"):
            continue
        traffic = (row["in_values"] + row["out_values"] + (0 if row["kind"] == "pool" else row["params"])) * c["bytes_per_value"]
        compute = row["macs"] / (c["peak_macs_per_s"] * c["compute_efficiency"])
        memory = 0.0 if c["memory_bytes_per_s"] is None else traffic / c["memory_bytes_per_s"]
        total = total + np.maximum(compute, memory) + (0.0 if row["kind"] == "pool" else c["per_layer_s"])
    return total


def calibrate(device: str, networks: list[dict]) -> DeviceModel:
    """The device model refitted on measured networks (rows of ``layers``, ``in_values``, ``out_values``,
    ``latency_s``) with its published fit points as priors."""
    return _fit(base_model(device), _free_constants(device), _points(device, "fit"), networks)


@contextmanager
def user_constants(path):
    """Within the block, the devices of a user constants file (written by ``edgefer targets calibrate``) use
    its values; ``None`` changes nothing. Yields the devices it holds."""
    if path is None:
        yield []
        return
    saved = dict(_user_constants)
    _user_constants.update(read_user_constants(path))
    fitted_model.cache_clear()
    try:
        yield list(read_user_constants(path))
    finally:
        _user_constants.clear()
        _user_constants.update(saved)
        fitted_model.cache_clear()


def read_user_constants(path) -> dict[str, dict]:
    """device -> {constant: value} of a user constants file, checked."""
    from pathlib import Path

    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        devices = data["devices"]
        if data.get("format") != USER_CONSTANTS_FORMAT or not isinstance(devices, dict):
            raise ValueError(f"expected format {USER_CONSTANTS_FORMAT!r}")
        loaded = {}
        for device, entry in devices.items():
            raw_constants(device)  # a device edgefer models
            values = {k: float(v) for k, v in entry["constants"].items()}
            if set(values) - set(FITTABLE) or not all(v > 0 for v in values.values() if v):
                raise ValueError(f"{device}: only positive {', '.join(FITTABLE)} may be set")
            loaded[device] = values
    except FileNotFoundError:
        raise EdgeferError("no such constants file", path) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise EdgeferError(f"not a usable constants file ({exc})", path) from None
    return loaded


def ape(predicted, measured) -> float:
    """Absolute percentage error of a prediction (as a fraction): the error figure of every validation."""
    return abs(predicted - measured) / measured


def mdape(errors) -> float | None:
    """Median of absolute percentage errors; None without any."""
    errors = list(errors)
    return float(np.median(errors)) if errors else None


def validation_report(device: str) -> dict:
    """Per published point: measured vs predicted; median absolute percentage error on fit and held-out."""
    m = fitted_model(device)
    rows = []
    for p, pred in zip(_points(device), _predict_points(m, _points(device))):
        rows.append({"model": p["model"], "input_size": p["input_size"], "split": p["split"],
                     "published_s": p["latency_s"], "predicted_s": float(pred),
                     "ape": ape(float(pred), p["latency_s"]), "citation": p["citation"], "setting": p["setting"]})

    def split_mdape(split):
        return mdape(r["ape"] for r in rows if split in (None, r["split"]))

    return {"device": device, "n_points": len(rows), "n_fit": sum(r["split"] == "fit" for r in rows),
            "n_holdout": sum(r["split"] == "holdout" for r in rows),
            "mdape_all": split_mdape(None), "mdape_fit": split_mdape("fit"), "mdape_holdout": split_mdape("holdout"),
            "fitted": {n: getattr(m, n) for n in m.fitted}, "points": rows,
            "status": "validated" if rows else "unvalidated: no published points stored"}


def model_constants_report(device: str) -> dict:
    """Every constant of a device model with its kind and citation (fitted ones with their value)."""
    raw, m = raw_constants(device), fitted_model(device)
    out = {}
    for key, entry in raw.items():
        if isinstance(entry, dict):
            out[key] = {**entry, "value": getattr(m, key, entry["value"]),
                        "kind": "fitted" if key in m.fitted else entry["kind"]}
    return out

