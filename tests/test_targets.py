"""Edge targets: exports through each real runtime, the Edge TPU / int8 checks, bad artifacts,
measured host timing, and the analytical cost models against published measurements."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from edgefer.errors import EdgeferError
from edgefer.nn.model import FerModel
from edgefer.nn.spec import ArchSpec
from edgefer.targets import Artifact, Target, all_targets, get_target, target_names
from edgefer.targets import costmodel
from edgefer.targets.base import errors_of
from edgefer.targets.devices.coral import edgetpu_mapping
from edgefer.targets.layers import op_table

CLASSES = ("anger", "contempt", "disgust", "fear", "happy", "sadness", "surprise")
MODELED = tuple(costmodel.device_table())  # every registered edge device with a cost model


@pytest.fixture(scope="module")
def tiny_model() -> FerModel:
    torch.manual_seed(0)
    spec = ArchSpec(filters=(4, 8), convs_per_block=1, dense=(16,), dropout=0.1)
    model = FerModel(spec, spec.build(), CLASSES)
    with torch.no_grad():  # non-trivial batch-norm statistics, so that folding them is exercised
        for module in model.module.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.1, 0.1)
                module.running_var.uniform_(0.5, 1.5)
    return model


@pytest.fixture(scope="module")
def inputs() -> np.ndarray:
    return np.random.default_rng(1).random((24, 1, 48, 48), dtype=np.float32)


def _export(target_name, model, folder, calibration):
    target = get_target(target_name)
    if not target.available()[0]:
        pytest.skip(target.available()[1])
    return target, target.export(model, folder / target_name, calibration=calibration)


# TFLite conversions take seconds each: one FP32 (Pi) and one int8 (Coral) export serve the module's tests.
@pytest.fixture(scope="module")
def rpi4_artifact(tiny_model, tmp_path_factory) -> Artifact:
    return _export("rpi4", tiny_model, tmp_path_factory.mktemp("tflite"), None)[1]


@pytest.fixture(scope="module")
def coral_artifact(tiny_model, inputs, tmp_path_factory) -> Artifact:
    return _export("coral", tiny_model, tmp_path_factory.mktemp("tflite"), inputs)[1]


def _tensor_types(artifact: Artifact):
    from edgefer.targets.runtimes import tflite_interpreter

    interpreter = tflite_interpreter(artifact, default_delegates=False)
    return interpreter.get_input_details()[0], interpreter.get_output_details()[0], interpreter.get_tensor_details()


# --- registry and protocol -------------------------------------------------------------------------
def test_unknown_target_is_a_clear_error():
    with pytest.raises(EdgeferError, match="unknown target 'tpu-v9'"):
        get_target("tpu-v9")


def test_every_target_describes_what_is_measured():
    assert all(isinstance(t, Target) for t in all_targets())  # the protocol every caller relies on
    rows = [t.describe() for t in all_targets()]
    assert [r["target"] for r in rows] == list(target_names())
    latency = {r["target"]: r["latency"] for r in rows}
    assert {name for name, source in latency.items() if source == "measured"} == {"host", "gpu"}
    assert set(MODELED) | {"loihi"} <= {name for name, source in latency.items() if source == "modeled"}


# --- real exports and runtimes ---------------------------------------------------------------------
@pytest.mark.parametrize("name,tolerance", [("host", 1e-4), ("rpi4", 1e-4), ("jetson-nano", 1e-4), ("ncs2", 2e-2)])
def test_float_exports_match_torch(tiny_model, inputs, tmp_path, request, name, tolerance):
    if name == "rpi4":
        target, artifact = get_target("rpi4"), request.getfixturevalue("rpi4_artifact")
    else:
        target, artifact = _export(name, tiny_model, tmp_path, None)
    assert artifact.path.is_file() and (artifact.path.parent / "artifact.json").is_file()
    logits = target.run(Artifact.load(artifact.path.parent), inputs)
    expected = tiny_model.logits(inputs)
    scale = np.abs(expected).max()
    assert np.abs(logits - expected).max() <= tolerance * max(scale, 1.0)
    assert target.check(artifact) == []


def test_onnx_export_is_static_batch_one_and_checked(tiny_model, tmp_path):
    onnx = pytest.importorskip("onnx")
    _, artifact = _export("host", tiny_model, tmp_path, None)
    model = onnx.load(str(artifact.path))
    onnx.checker.check_model(model, full_check=True)
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == [1, 1, 48, 48]
    assert "BatchNormalization" not in {n.op_type for n in model.graph.node}  # folded into the convs


def test_ncs2_ir_has_fp16_weights(tiny_model, tmp_path):
    pytest.importorskip("openvino")
    _, artifact = _export("ncs2", tiny_model, tmp_path, None)
    xml = artifact.path.read_text()
    assert artifact.precision == "fp16" and 'element_type="f16"' in xml and artifact.path.with_suffix(".bin").is_file()


def test_rpi4_tflite_is_fp32_with_static_batch_one(rpi4_artifact):
    given, returned, tensors = _tensor_types(rpi4_artifact)
    assert rpi4_artifact.format == "tflite" and rpi4_artifact.precision == "fp32"
    assert given["dtype"] == np.float32 and returned["dtype"] == np.float32
    assert list(given["shape_signature"]) == [1, 1, 48, 48]


def test_coral_int8_tflite_is_full_integer_and_agrees_with_torch(tiny_model, inputs, coral_artifact):
    given, returned, tensors = _tensor_types(coral_artifact)
    assert given["dtype"] == np.int8 and returned["dtype"] == np.int8
    assert given["quantization"][0] > 0 and returned["quantization"][0] > 0
    assert {np.dtype(t["dtype"]).name for t in tensors} <= {"int8", "int32"}  # int32: biases and shape operands
    coral = get_target("coral")
    assert coral.check(coral_artifact) == []  # every op maps to the Edge TPU, nothing falls back
    logits = coral.run(Artifact.load(coral_artifact.path.parent), inputs)
    expected = tiny_model.logits(inputs)
    assert np.abs(logits - expected).max() < 0.1 * np.abs(expected).max()
    assert np.mean(logits.argmax(1) == expected.argmax(1)) >= 0.9


def test_coral_rejects_a_float_artifact(tiny_model, inputs, tmp_path, rpi4_artifact):
    coral = get_target("coral")
    _, onnx_artifact = _export("host", tiny_model, tmp_path, None)
    assert "artifact-format" in {v.rule for v in errors_of(coral.check(onnx_artifact))}
    problems = errors_of(coral.check(rpi4_artifact))  # a TFLite, but FP32: caught on its tensors
    assert {v.rule for v in problems} == {"all-int8"}
    assert any("model input" in v.message and "float32" in v.message for v in problems)
    assert any(v.layer and "CONV_2D" in v.layer for v in problems)
    with pytest.raises(EdgeferError, match="violates coral constraints"):
        coral.run(rpi4_artifact, inputs)


def test_corrupt_and_missing_artifacts_are_clear_errors(tiny_model, inputs, tmp_path, coral_artifact):
    pytest.importorskip("onnxruntime")
    target, artifact = _export("host", tiny_model, tmp_path, None)
    artifact.path.write_bytes(b"not an onnx file")
    with pytest.raises(EdgeferError, match="corrupt or unreadable ONNX"):
        target.run(artifact, inputs)
    broken = Artifact.load(shutil.copytree(coral_artifact.path.parent, tmp_path / "broken-tflite"))
    broken.path.write_bytes(b"not a tflite file" * 8)
    for call in (lambda: get_target("coral").run(broken, inputs), lambda: get_target("coral").check(broken)):
        with pytest.raises(EdgeferError, match="corrupt or unreadable TFLite") as caught:
            call()
        assert caught.value.path == broken.path
    with pytest.raises(EdgeferError, match="not an exported edgefer artifact"):
        Artifact.load(tmp_path / "nowhere")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "artifact.json").write_text("{broken")
    with pytest.raises(EdgeferError, match="corrupt artifact manifest"):
        Artifact.load(tmp_path / "bad")


def test_wrong_input_shape_is_a_clear_error(tiny_model, tmp_path):
    pytest.importorskip("onnxruntime")
    target, artifact = _export("host", tiny_model, tmp_path, None)
    with pytest.raises(EdgeferError, match="the artifact takes N x 1 x 48 x 48"):
        target.run(artifact, np.zeros((2, 48, 48), np.float32))


def test_gpu_target_refuses_without_cuda(tiny_model, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("CUDA present: the refusal path is not reachable")
    gpu = get_target("gpu")
    assert [v.rule for v in gpu.check(tiny_model.spec)] == ["cuda"]
    with pytest.raises(EdgeferError, match="no CUDA device"):
        gpu.export(tiny_model, tmp_path)


def test_host_latency_is_measured_with_pinned_threads(tiny_model, tmp_path):
    pytest.importorskip("onnxruntime")
    host = get_target("host", threads=1, runs=200, warmup=5)
    _, artifact = _export("host", tiny_model, tmp_path, None)
    cost = host.cost(artifact)
    b = cost.breakdown
    assert cost.source == "measured" and b["runs"] == 200 and b["threads"] == 1 and len(b["pinned_cpus"]) == 1
    assert 0 < b["min_s"] <= b["median_s"] <= b["p90_s"] <= b["p99_s"]
    assert cost.latency_s == b["median_s"] and cost.power_w is None and cost.energy_j is None


# --- checks ---------------------------------------------------------------------------------------
def test_edgetpu_mapping_falls_back_after_the_first_unsupported_op():
    problems = edgetpu_mapping([("c1", "CONV_2D"), ("g", "GELU"), ("c2", "CONV_2D"), ("bn", None), ("fc", "FULLY_CONNECTED")])
    assert [(v.rule, v.layer) for v in problems] == [("edgetpu-op", "g"), ("cpu-fallback", "c2"), ("cpu-fallback", "fc")]
    assert all(v.severity == "warning" for v in problems)


def test_every_arch_layer_maps_to_an_edgetpu_op(tiny_model):
    assert get_target("coral").check(tiny_model.spec) == []
    avg = ArchSpec(filters=(4,), convs_per_block=1, downsample="avgpool", head="avg", dense=())
    assert get_target("coral").check(avg) == []


def test_coral_flags_weights_beyond_the_onchip_sram():
    big = ArchSpec(filters=(8,), convs_per_block=1, dense=(2000,))  # 8*24*24*2000 = 9.2 M int8 weights
    warnings = get_target("coral").check(big)
    assert [v.rule for v in warnings] == ["sram"] and warnings[0].severity == "warning"
    cost = get_target("coral").cost(big)
    assert cost.breakdown["weight_stream_s"] > 0


# --- cost models ------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", MODELED)
def test_modeled_costs_are_labelled_and_consistent(tiny_model, name):
    cost = get_target(name).cost(tiny_model.spec)
    assert cost.source == "modeled" and cost.latency_s > 0 and cost.citations
    assert cost.energy_j == pytest.approx(cost.power_w * cost.latency_s)
    terms = {k: v for k, v in cost.breakdown.items() if k.endswith("_s")}
    assert sum(terms.values()) == pytest.approx(cost.latency_s)
    if name in ("ncs2", "coral"):
        assert terms["link_s"] > 0  # the input and output cross USB
    bigger = ArchSpec(filters=(16, 32), convs_per_block=2, dense=(64,))
    assert get_target(name).cost(bigger).latency_s > cost.latency_s


def test_per_layer_model_equals_the_aggregate_model_on_uniform_layers():
    model = costmodel.fitted_model("rpi4")
    layers = [{"name": f"l{i}", "kind": "conv", "macs": 1e7, "params": 1e4, "in_values": 0, "out_values": 0} for i in range(5)]
    per_layer = costmodel.layer_latency(model, layers, 0, 0)["latency_s"]
    assert per_layer == pytest.approx(float(costmodel.aggregate_latency(model, 5e7, 5e4, 5, 0, 0)))


def test_fallback_layers_cost_extra():
    model = costmodel.fitted_model("coral")
    layers = op_table(ArchSpec(filters=(8, 16), convs_per_block=1, dense=(32,)).build())
    names = {r["name"] for r in layers if r["kind"] == "dense"}
    on_tpu = costmodel.layer_latency(model, layers, 48 * 48, 7)
    fallen = costmodel.layer_latency(model, layers, 48 * 48, 7, unsupported=names)
    assert fallen["terms"]["fallback_s"] > 0 and fallen["latency_s"] > on_tpu["latency_s"]


def test_every_constant_and_point_is_cited():
    cites = costmodel.citations()
    for device, table in costmodel.device_table().items():
        for key, entry in table.items():
            if isinstance(entry, dict):
                assert entry["citation"] in cites, (device, key)
                assert entry["kind"] in ("datasheet", "published", "assumed", "fitted-default"), (device, key)
    for point in costmodel.published_points():
        assert point["citation"] in cites and point["split"] in ("fit", "holdout")


@pytest.mark.parametrize("device", MODELED)
def test_cost_model_predicts_published_points(device):
    report = costmodel.validation_report(device)
    assert report["n_fit"] >= 2 and report["n_holdout"] >= 1
    assert report["mdape_fit"] <= 0.30 and report["mdape_all"] <= 0.30, report
    assert report["mdape_holdout"] is not None  # held-out error is reported (edgefer targets), not bounded here


def test_held_out_points_never_enter_the_fit(monkeypatch):
    before = {d: costmodel.fitted_model(d) for d in MODELED}
    fit_only = tuple(p for p in costmodel.published_points() if p["split"] == "fit")
    altered = fit_only + tuple({**p, "latency_s": p["latency_s"] * 10} for p in costmodel.published_points()
                               if p["split"] == "holdout")
    monkeypatch.setattr(costmodel, "published_points", lambda: altered)
    costmodel.fitted_model.cache_clear()
    try:
        for device, model in before.items():
            assert costmodel.fitted_model(device) == model
        assert costmodel.validation_report("coral")["mdape_holdout"] > 0.8  # the altered (x10) points do count there
    finally:
        costmodel.fitted_model.cache_clear()


def test_device_without_points_reports_unvalidated(monkeypatch):
    # every modeled device has published points now, so take the NCS2's away
    others = tuple(p for p in costmodel.published_points() if p["device"] != "ncs2")
    monkeypatch.setattr(costmodel, "published_points", lambda: others)
    costmodel.fitted_model.cache_clear()
    try:
        report = costmodel.validation_report("ncs2")
        assert report["status"].startswith("unvalidated") and report["mdape_all"] is None
        assert costmodel.fitted_model("ncs2") == costmodel.base_model("ncs2")  # cited/assumed values, nothing fitted
    finally:
        costmodel.fitted_model.cache_clear()


def test_an_artifact_folder_can_be_moved(tiny_model, inputs, tmp_path, rpi4_artifact):
    copied = shutil.copytree(rpi4_artifact.path.parent, tmp_path / "copied-to-the-pi")
    logits = get_target("rpi4").run(Artifact.load(copied), inputs[:2])
    assert np.allclose(logits, tiny_model.logits(inputs[:2]), atol=1e-4)
