"""Intel Loihi 1 as a target: the CNN converted to a rate-coded spiking network with Loihi's integer
precision (8-bit weight mantissas, 24-bit state), exported as its NIR graph plus the off-chip
encoder, simulated here with spike accounting; energy and latency modeled from the recorded activity
with the chip constants of ``loihi.json`` (Davies et al. 2018 Table 2; static power Blouw et al.
2019). Another chip is a constants file plus a subclass naming it."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from edgefer.errors import EdgeferError
from edgefer.snn import STUDY_TIMESTEPS
from edgefer.targets.base import Artifact, Cost, Violation, require_compliant
from edgefer.targets.common import BaseTarget, spec_of
from edgefer.targets.registry import SearchHints, register_target

ENCODER_FILE = "encoder.safetensors"
# The cost model against measured Loihi runs (edgefer.snn.validation.validate, written by
# benchmarks/loihi_validation.py; a test checks it is current): read, not recomputed, by `edgefer targets`.
VALIDATION_FILE = Path(__file__).with_name("loihi_validation.json")


def _encoder_layers(encoder) -> list[dict]:
    """The off-chip encoder (the study's 1x1 stem and its ReLU or QCFS activation) as plain data, so that
    run() rebuilds it."""
    from torch import nn

    from edgefer.nn.qcfs import Qcfs

    layers = []
    for module in encoder or ():
        if isinstance(module, nn.Conv2d):
            layers.append({"kind": "conv", "in": module.in_channels, "out": module.out_channels,
                           "kernel": module.kernel_size[0], "stride": module.stride[0], "padding": module.padding[0],
                           "bias": module.bias is not None})
        elif isinstance(module, nn.BatchNorm2d):
            layers.append({"kind": "bn", "channels": module.num_features, "eps": module.eps})
        elif isinstance(module, nn.ReLU):
            layers.append({"kind": "relu"})
        elif isinstance(module, Qcfs):
            layers.append({"kind": "qcfs", "levels": module.levels})
        else:
            raise EdgeferError(f"the off-chip encoder has a {type(module).__name__} layer, which the Loihi artifact cannot hold")
    return layers


def _build_encoder(layers: list[dict]):
    from torch import nn

    from edgefer.nn.qcfs import Qcfs

    made = []
    for layer in layers:
        if layer["kind"] == "conv":
            made.append(nn.Conv2d(layer["in"], layer["out"], layer["kernel"], layer["stride"], layer["padding"],
                                  bias=layer["bias"]))
        elif layer["kind"] == "bn":
            made.append(nn.BatchNorm2d(layer["channels"], eps=layer["eps"]))
        elif layer["kind"] == "qcfs":
            made.append(Qcfs(layer["levels"]))
        else:
            made.append(nn.ReLU())
    return nn.Sequential(*made).eval() if made else None


@lru_cache(maxsize=4)
def _load_net(nir_path: str, settings_key: str, modified: float):
    """The SpikingNet of an exported artifact (cached while its files are unchanged)."""
    import json

    from safetensors.torch import load_file

    from edgefer.snn.nir_export import from_nir

    settings = json.loads(settings_key)
    encoder = _build_encoder(settings["encoder"])
    if encoder is not None:
        encoder.load_state_dict(load_file(str(Path(nir_path).with_name(ENCODER_FILE))))
    net = from_nir(nir_path, encoder, settings["input_scale"])
    net.info["calibration"] = settings.get("calibration")
    return net


def _output_scale(artifact: Artifact) -> float:
    """The CNN activation that the output neurons' full rate stands for (their conversion scale); artifacts
    exported before it was recorded score in spike rates."""
    return float(artifact.settings.get("output_scale", 1.0))


def _timesteps_note(requested: int | None, artifact: Artifact) -> str | None:
    """Why the row ran for its T, when the export chose it (a requested T is in the artifact label)."""
    if requested:
        return None
    sweep = artifact.settings.get("timestep_sweep")
    if not sweep:
        return f"T={STUDY_TIMESTEPS}, the study's: the model's split keeps no validation images to choose a shorter T on"
    return (f"T={sweep['timesteps']}: the fewest timesteps whose SNN accuracy is within "
            f"{sweep['tolerance_points']:g} point of its T={sweep['reference_timesteps']} accuracy "
            f"({100 * sweep['accuracy_at_chosen']:.1f} vs {100 * sweep['accuracy_at_reference']:.1f} % on {sweep['images']})")


def _chosen_by(requested: int | None, artifact: Artifact) -> str:
    if requested:
        return "requested"
    return "sweep" if artifact.settings.get("timestep_sweep") else "study"


@register_target
class LoihiTarget(BaseTarget):
    name = "loihi"
    label = "Intel Loihi 1 (128 neuromorphic cores per chip), rate-coded SNN"
    runtime = "edgefer SNN simulator (Loihi integer mode)"
    role = "neuromorphic"
    order = 90
    accuracy_source = "simulated"
    artifact_format = "snn"
    precision = "loihi"
    requires = (("nir", "nir"),)
    constants = "loihi.json"
    needs_calibration = True
    # The study ran Loihi on grayscale and on edge-map input: compare runs a row for each.
    compare_roles = ("gray", "edges")
    # Max-pooling has no rate-coded equivalent; the study's nets have no bias (batch-norm still folds into
    # the convolution before it, as a per-neuron bias current); a searched net must fit one chip, as the
    # study's did (more chips add inter-chip traffic the cost model does not cover).
    search = SearchHints(downsampling=("avgpool", "stride2"), bias_allowed=False, rejected_warnings=("bias", "multi-chip"))
    calibration_images = 256
    search_cost_images = 64  # validation images simulated per search trial

    def __init__(self, timesteps: int | None = None, batch_size: int = 64):
        """``timesteps``: None runs each exported net for the T its export chose (``timestep_sweep``: the
        fewest steps within one point of its T=50 accuracy on validation images); a number runs every net that long.
        A search trial, which exports nothing, runs the given T or the study's 50."""
        from edgefer.snn.options import SnnOptions

        if timesteps is not None and timesteps < 1:
            raise EdgeferError(f"--timesteps must be >= 1, got {timesteps}")
        self.timesteps = timesteps
        self.options = SnnOptions(timesteps=timesteps or STUDY_TIMESTEPS, batch_size=batch_size,
                                  calibration_images=self.calibration_images)

    def options_for(self, artifact: Artifact):
        """The simulation options of an artifact: the requested T, else the T its export chose."""
        from dataclasses import replace

        chosen = (artifact.settings.get("timestep_sweep") or {}).get("timesteps")
        return replace(self.options, timesteps=self.timesteps or chosen or STUDY_TIMESTEPS)

    @property
    def chip(self):
        from edgefer.snn.chip import Chip

        return Chip(self.name, self.constants_data())

    def validation(self) -> dict | None:
        """Latency error of the cost model compare uses (Davies et al. 2018 constants) on measured Loihi runs;
        the full result, power and the calibrated parameters included, under ``detail``."""
        import json

        try:
            stored = json.loads(VALIDATION_FILE.read_text())
        except (OSError, json.JSONDecodeError):
            return {"status": "unvalidated: no stored validation (run benchmarks/loihi_validation.py)", "n_fit": 0,
                    "n_holdout": 0, "mdape_fit": None, "mdape_holdout": None}
        return {"status": "latency vs measured Loihi runs", "n_fit": stored["n_fit"], "n_holdout": stored["n_holdout"],
                "mdape_fit": stored["default_latency_mdape_fit"], "mdape_holdout": stored["default_latency_mdape_holdout"],
                "detail": stored}

    def artifact_label(self, artifact: Artifact) -> str:
        return f"SNN T={self.options_for(artifact).timesteps} {artifact.precision}"

    # --- check ---------------------------------------------------------------------------------------
    def check(self, subject) -> list[Violation]:
        if isinstance(subject, (Artifact, str, Path)):
            return self.check_artifact(subject if isinstance(subject, Artifact) else Artifact.load(subject))
        spec = spec_of(subject)
        if spec.downsample == "maxpool":
            return [Violation("no-maxpool", "max-pooling has no rate-coded spiking equivalent")]
        problems = [Violation("bias", "the study's Loihi nets have no bias terms (Loihi adds them as bias currents)",
                              "warning")] if spec.bias else []
        try:
            cores = self._cores(spec)
        except EdgeferError as exc:
            return problems + [Violation("loihi-mapping", str(exc))]
        per_chip = self.chip.value("limits", "cores_per_chip")
        if cores > per_chip:
            problems.append(Violation("multi-chip", f"{cores} cores exceed one chip ({per_chip} cores): the extra "
                                      "chips' static power is counted, inter-chip traffic is not", "warning"))
        return problems

    def _cores(self, spec) -> int:
        """Cores of a spec's network: the partition depends on layer shapes only, so an untrained copy
        calibrated on random images gives the same cores as the trained net."""
        import torch

        from edgefer.nn.model import FerModel
        from edgefer.snn.convert import convert
        from edgefer.snn.loihi import partition

        untrained = FerModel(spec, spec.build(), tuple(f"class{i}" for i in range(spec.num_classes)))
        calibration = torch.rand((4, spec.in_channels, spec.input_size, spec.input_size),
                                 generator=torch.Generator().manual_seed(0))
        return len(partition(convert(untrained, calibration), self.chip))

    # --- export --------------------------------------------------------------------------------------
    def _export(self, model, out_dir: Path, calibration) -> Artifact:
        from safetensors.torch import save_file

        from edgefer.snn.evaluate import build_snn, timestep_sweep
        from edgefer.snn.nir_export import export_nir

        described = calibration.description
        net = build_snn(model, calibration=calibration.inputs, chip=self.chip)
        # Without validation images the export has nothing to choose T on: the net runs the study's T.
        sweep = (timestep_sweep(net, calibration.validation, self.options, self.chip)
                 if calibration.validation is not None else None)
        nir_path = export_nir(net, out_dir / "model.nir")
        files = [nir_path.name]
        encoder = _encoder_layers(net.encoder)
        if net.encoder is not None:
            save_file({k: v.contiguous() for k, v in net.encoder.state_dict().items()}, str(out_dir / ENCODER_FILE))
            files.append(ENCODER_FILE)
        return Artifact(self.name, nir_path, self.artifact_format, net.precision, files,
                        notes=[f"thresholds calibrated on {described}"],
                        settings={"input_scale": net.input_scale, "encoder": encoder, "calibration": described,
                                  "timestep_sweep": sweep, "output_scale": net.info["scales"][net.layers[-1].name]})

    def net(self, artifact: Artifact):
        import json

        require_compliant(self.name, self.check_artifact(artifact), artifact.path)
        path = Path(artifact.path)
        return _load_net(str(path), json.dumps(artifact.settings, sort_keys=True), path.stat().st_mtime)

    # --- run and cost --------------------------------------------------------------------------------
    def run(self, artifact: Artifact | str | Path, inputs: np.ndarray) -> np.ndarray:
        from edgefer.snn.evaluate import readout_scores, run_snn

        artifact = artifact if isinstance(artifact, Artifact) else Artifact.load(artifact)
        o = self.options_for(artifact)
        net = self.net(artifact)
        sim = run_snn(net, inputs, o.timesteps, o.encoding, o.seed, o.batch_size, record=False)
        return readout_scores(sim, net, o.readout, _output_scale(artifact))

    def evaluate(self, artifact: Artifact | str | Path, inputs: np.ndarray) -> tuple[np.ndarray, Cost]:
        """One simulation with accounting: the readout's scores and the modeled cost of those spikes."""
        from edgefer.data.preprocess import input_sparsity
        from edgefer.snn.evaluate import readout_scores, run_on_chip

        artifact = artifact if isinstance(artifact, Artifact) else Artifact.load(artifact)
        net = self.net(artifact)
        options = self.options_for(artifact)
        run = run_on_chip(net, inputs, options, self.chip)
        c = run.cost
        activity = run.activity()
        figures = {"dynamic_energy_j": c.dynamic_energy_j, "static_energy_j": c.static_energy_j,
                   "static_power_w": c.static_power_w, "spikes_per_image": activity["spikes_per_image"],
                   "synops_per_image": activity["synops_per_image"], "cores": c.cores, "chips": c.chips,
                   "input_sparsity": input_sparsity(inputs), "layers": run.layer_rows,
                   "timesteps": options.timesteps, "timesteps_chosen_by": _chosen_by(self.timesteps, artifact),
                   "timestep_sweep": artifact.settings.get("timestep_sweep")}
        calibrated = self._calibrated_to_measured(net, run)
        if calibrated is not None:
            figures["calibrated_to_measured"] = calibrated
        breakdown = {"energy_breakdown_j": c.energy_breakdown_j, "timestep_s": c.timestep_s, "tiles": c.tiles,
                     "timesteps": options.timesteps, "core_load": run.core_load()}
        cost = Cost(c.latency_s, c.power_w, c.energy_j, "modeled", self.chip.citations, breakdown,
                    [note for note in (f"thresholds calibrated on {net.info.get('calibration')}",
                                       _timesteps_note(self.timesteps, artifact)) if note], figures)
        return readout_scores(run.sim, net, options.readout, _output_scale(artifact)), cost

    def _calibrated_to_measured(self, net, run) -> dict | None:
        """The same spikes priced with host I/O time and static power fitted on measured Loihi runs (see
        ``validation``): what a real board's per-step overhead would add to the per-operation model."""
        from edgefer.snn.loihi import cost

        detail = (self.validation() or {}).get("detail")
        if not detail:
            return None
        fitted = detail["calibrated"]
        system, _ = cost(net, run.sim, None, fitted["static_power_w"], fitted["host_io_s_per_timestep"], self.chip)
        return {"latency_s": system.latency_s, "fps": 1 / system.latency_s, "power_w": system.power_w,
                "energy_j": system.energy_j, **fitted,
                "per_operation_latency_error_holdout": detail["default_latency_mdape_holdout"],
                "citations": detail["citations"],
                "source": "modeled: host I/O and static power fitted on "
                f"{detail['n_fit']} measured Loihi runs ({', '.join(detail['citations'])}); held-out latency error "
                f"{100 * detail['calibrated_latency_mdape_holdout']:.0f} %, power "
                f"{100 * detail['calibrated_power_mdape_holdout']:.0f} %"}

    def cost(self, subject, inputs: np.ndarray | None = None) -> Cost:
        """The modeled cost of an artifact on ``inputs``: Loihi's energy and latency follow the spikes."""
        if inputs is None:
            raise EdgeferError("Loihi's cost depends on the spikes of real inputs: pass inputs (or use evaluate)")
        if not isinstance(subject, (Artifact, str, Path)):
            raise EdgeferError("export the model for loihi first and pass the artifact")
        return self.evaluate(subject, inputs)[1]

    def search_cost(self, model, validation) -> tuple[Cost, dict]:
        """Simulate the trained trial on the first validation images: modeled cost from its recorded spikes."""
        from edgefer.snn.evaluate import evaluate_snn

        subset = validation.subset(np.arange(min(self.search_cost_images, len(validation))))
        result = evaluate_snn(model, subset, self.options, chip=self.chip, with_layers=False)
        cost = Cost(result["latency_s"], result["power_w"], result["energy_j"], "modeled", self.chip.citations,
                    {"dynamic_energy_j": result["dynamic_energy_j"], "static_energy_j": result["static_energy_j"]},
                    [f"simulated SNN on {result['n']} validation images, T={self.options.timesteps}"])
        return cost, {"snn_accuracy": result["accuracy"], "snn_n": result["n"], "cores": result["cores"],
                      "spikes_per_image": result["spikes_per_image"]}
