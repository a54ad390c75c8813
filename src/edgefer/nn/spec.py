"""ArchSpec: a plain, JSON-serialisable description of a VGG-like CNN, and what it costs.

A spec is blocks of 3x3 (or k x k) convolutions; each block ends by downsampling x2 with a max-pool,
an avg-pool, or by giving its last convolution stride 2 (what the study's Loihi net does). An
optional 1x1 ``stem`` convolution comes first (the study's off-chip "to-spikes" layer). The head
flattens (or global-average-pools) into dense layers, then the class layer.
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING


from edgefer.errors import EdgeferError

if TYPE_CHECKING:  # torch loads only when a network is built or walked
    from torch import nn

DOWNSAMPLING = ("maxpool", "avgpool", "stride2")
# relu, or qcfs: a ReLU quantised to ``levels`` steps and clipped at a trained threshold, trained for
# conversion to spikes at few timesteps (edgefer.nn.qcfs).
ACTIVATIONS = ("relu", "qcfs")
HEAD_POOLING = ("flatten", "avg")


@dataclass(frozen=True)
class ArchSpec:
    filters: tuple[int, ...] = (16, 32, 64)
    convs_per_block: tuple[int, ...] | int = 2
    kernel_size: int = 3
    downsample: str = "maxpool"
    batchnorm: bool = True
    bias: bool = True
    dense: tuple[int, ...] = (128,)
    dropout: float = 0.0
    activation: str = "relu"
    levels: int = 0  # quantisation levels L of the qcfs activation (0 with relu)
    stem: int = 0  # channels of a leading 1x1 convolution; 0: none
    head: str = "flatten"
    in_channels: int = 1
    input_size: int = 48
    num_classes: int = 7

    def __post_init__(self):
        object.__setattr__(self, "filters", tuple(int(f) for f in self.filters))
        object.__setattr__(self, "dense", tuple(int(d) for d in self.dense))
        convs = self.convs_per_block
        convs = (convs,) * len(self.filters) if isinstance(convs, int) else tuple(int(c) for c in convs)
        object.__setattr__(self, "convs_per_block", convs)
        problems = []
        if not self.filters:
            problems.append("at least one block is needed")
        if len(convs) != len(self.filters) or any(c < 1 for c in convs):
            problems.append(f"convs_per_block {convs} must give >= 1 conv for each of {len(self.filters)} blocks")
        if any(f < 1 for f in self.filters + self.dense) or self.stem < 0:
            problems.append("filters, dense units and stem must be positive")
        if self.num_classes < 1 or self.in_channels < 1 or self.input_size < 1:
            problems.append("num_classes, in_channels and input_size must be positive")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            problems.append(f"kernel_size must be odd, got {self.kernel_size}")
        if self.downsample not in DOWNSAMPLING:
            problems.append(f"downsample {self.downsample!r} is not one of {DOWNSAMPLING}")
        if self.head not in HEAD_POOLING:
            problems.append(f"head {self.head!r} is not one of {HEAD_POOLING}")
        if self.activation not in ACTIVATIONS:
            problems.append(f"activation {self.activation!r} is not one of {ACTIVATIONS}")
        elif (self.activation == "qcfs") != (self.levels > 0) or not 0 <= self.levels <= 256:
            problems.append(f"levels must be 1-256 with the qcfs activation and 0 with relu, got {self.levels} with "
                            f"{self.activation}")
        if not 0 <= self.dropout < 1:
            problems.append(f"dropout must be in [0, 1), got {self.dropout}")
        if self.input_size >> len(self.filters) < 1:
            problems.append(f"{len(self.filters)} downsamplings shrink a {self.input_size}px input to nothing")
        if problems:
            raise EdgeferError("invalid ArchSpec: " + "; ".join(problems))

    # --- serialisation -------------------------------------------------------------------------
    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict, source: str | None = None) -> "ArchSpec":
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise EdgeferError(f"unknown ArchSpec field(s) {sorted(unknown)}", source)
        try:
            return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
        except EdgeferError as exc:
            raise EdgeferError(str(exc), source) from None
        except (TypeError, ValueError) as exc:
            raise EdgeferError(f"invalid ArchSpec field types ({exc})", source) from None

    @classmethod
    def from_json(cls, text: str, source: str | None = None) -> "ArchSpec":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise EdgeferError(f"not valid JSON ({exc})", source) from None
        if not isinstance(data, dict):
            raise EdgeferError("an ArchSpec JSON must be an object", source)
        return cls.from_dict(data, source)

    @classmethod
    def load(cls, path: str | Path) -> "ArchSpec":
        return cls.from_json(Path(path).read_text(), str(path))

    # --- building ------------------------------------------------------------------------------
    def build(self) -> nn.Sequential:
        """The torch module: named, flat layers so that converters and counters can walk them."""
        from torch import nn

        from edgefer.nn.qcfs import Qcfs

        def activation() -> nn.Module:
            return Qcfs(self.levels) if self.activation == "qcfs" else nn.ReLU()

        layers: list[tuple[str, nn.Module]] = []
        channels = self.in_channels
        pad = self.kernel_size // 2
        if self.stem:
            layers.append(("stem", nn.Conv2d(channels, self.stem, 1, bias=self.bias)))
            layers.append(("stem_act", activation()))
            channels = self.stem
        for b, (width, convs) in enumerate(zip(self.filters, self.convs_per_block), start=1):
            for c in range(1, convs + 1):
                stride = 2 if self.downsample == "stride2" and c == convs else 1
                layers.append((f"conv{b}_{c}", nn.Conv2d(channels, width, self.kernel_size, stride, pad, bias=self.bias)))
                if self.batchnorm:
                    layers.append((f"bn{b}_{c}", nn.BatchNorm2d(width)))
                layers.append((f"act{b}_{c}", activation()))
                channels = width
            if self.downsample == "maxpool":
                layers.append((f"pool{b}", nn.MaxPool2d(2)))
            elif self.downsample == "avgpool":
                layers.append((f"pool{b}", nn.AvgPool2d(2)))
        if self.head == "avg":
            layers.append(("gap", nn.AdaptiveAvgPool2d(1)))
        layers.append(("flatten", nn.Flatten()))
        features = channels * (1 if self.head == "avg" else self.feature_size() ** 2)
        for d, units in enumerate(self.dense, start=1):
            if self.dropout:
                layers.append((f"drop{d}", nn.Dropout(self.dropout)))
            layers.append((f"fc{d}", nn.Linear(features, units, bias=self.bias)))
            layers.append((f"fc{d}_act", activation()))
            features = units
        if self.dropout:
            layers.append(("drop_out", nn.Dropout(self.dropout)))
        layers.append(("logits", nn.Linear(features, self.num_classes, bias=self.bias)))
        model = nn.Sequential(OrderedDict(layers))
        # He init keeps ReLU activations from dying in deep nets without batch-norm (the Loihi net).
        for name, module in model.named_children():
            if isinstance(module, (nn.Conv2d, nn.Linear)) and name != "logits":
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
        return model

    def feature_size(self) -> int:
        """Side of the last feature map: each block halves it (ceil for stride-2 convs with padding)."""
        size = self.input_size
        for _ in self.filters:
            size = (size + 1) // 2 if self.downsample == "stride2" else size // 2
        return size

    # --- costs ---------------------------------------------------------------------------------
    def layer_table(self) -> list[dict]:
        """Per weight layer: name, kind, output shape, parameters, MACs, output activations (neurons); the
        rows ``layer_table`` traces from the built network, worked out from the spec alone (no torch: listing
        an architecture stays quick)."""
        rows: list[dict] = []

        def add(name, kind, output, params, macs):
            rows.append({"name": name, "kind": kind, "output": output, "params": params, "macs": macs,
                         "neurons": math.prod(output)})

        channels, size, k = self.in_channels, self.input_size, self.kernel_size
        if self.stem:
            add("stem", "conv", [self.stem, size, size], channels * self.stem + self.stem * self.bias,
                size * size * self.stem * channels)
            channels = self.stem
        for b, (width, convs) in enumerate(zip(self.filters, self.convs_per_block), start=1):
            for c in range(1, convs + 1):
                if self.downsample == "stride2" and c == convs:
                    size = (size + 1) // 2
                params = k * k * channels * width + width * self.bias + 2 * width * self.batchnorm
                add(f"conv{b}_{c}", "conv", [width, size, size], params, size * size * width * channels * k * k)
                channels = width
            if self.downsample != "stride2":
                size //= 2
        features = channels * (1 if self.head == "avg" else size * size)
        for d, units in enumerate((*self.dense, self.num_classes), start=1):
            add(f"fc{d}" if d <= len(self.dense) else "logits", "dense", [units], features * units + units * self.bias,
                features * units)
            features = units
        return rows

    def summary(self) -> dict:
        table = self.layer_table()
        return {
            "params": sum(r["params"] for r in table),
            "macs": sum(r["macs"] for r in table),
            "neurons": sum(r["neurons"] for r in table),
            "layers": table,
        }


def trace_layers(model: nn.Module, input_shape: tuple[int, int, int]) -> list[tuple[str, nn.Module, list[int], list[int]]]:
    """Run a model once on a zero image (batch 1) and return each leaf layer in call order as
    (name, module, input shape, output shape), shapes without the batch dimension."""
    import torch

    calls = []
    hooks = [module.register_forward_hook(lambda mod, inputs, output, name=name: calls.append(
                 (name, mod, list(inputs[0].shape[1:]), list(output.shape[1:]))))
             for name, module in model.named_modules() if name and not list(module.children())]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape, device=next(model.parameters()).device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    return calls


def layer_macs(module: nn.Module, output_shape: list[int]) -> int:
    """Multiply-accumulates of one convolution or dense layer (0 for any other layer), batch 1."""
    from torch import nn

    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return math.prod(output_shape) * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return module.in_features * module.out_features
    return 0


def layer_table(model: nn.Module, input_shape: tuple[int, int, int]) -> list[dict]:
    """Convolution and dense layers with their parameters, MACs and output neurons (batch 1).

    Batch-norm parameters count as parameters of the layer they follow (they fold into it).
    """
    from torch import nn

    rows: list[dict] = []
    for name, module, _, output in trace_layers(model, input_shape):
        params = sum(p.numel() for p in module.parameters())
        if isinstance(module, nn.BatchNorm2d) and rows:
            rows[-1]["params"] += params
        elif isinstance(module, (nn.Conv2d, nn.Linear)):
            rows.append({"name": name, "kind": "conv" if isinstance(module, nn.Conv2d) else "dense", "output": output,
                         "params": params, "macs": layer_macs(module, output), "neurons": math.prod(output)})
    return rows


# The study's Loihi-compatible net (first author's code): 1x1 conv to 3 channels, conv 12, 12/s2,
# 24, 24/s2, 44, 44/s2, dense 85, 100, 7; no bias, no pooling, no batch-norm, ReLU (~180 k params).
LOIHI_STUDY = ArchSpec(filters=(12, 24, 44), convs_per_block=2, downsample="stride2", batchnorm=False,
                       bias=False, dense=(85, 100), stem=3)
# The same layers trained for conversion at few timesteps: QCFS activations with 8 levels (edgefer.nn.qcfs).
LOIHI_STUDY_QCFS = replace(LOIHI_STUDY, activation="qcfs", levels=8)
# A larger Loihi-compatible net for FER2013 (no bias terms, stride-2 downsampling, the study's 1x1 stem):
# four blocks of 16-48-96-192 filters and one dense layer of 256 (1.1 M params, 25.6 M MACs, 77 k neurons;
# its fan-in needs about 455 cores, four Loihi chips). Batch-norm folds into per-neuron bias currents:
# without it (and without weight standardisation) the same net trained to 59.8 % on PublicTest, barely above
# the study's net.
LOIHI_FER2013 = replace(LOIHI_STUDY, filters=(16, 48, 96, 192), convs_per_block=(1, 2, 2, 2), dense=(256,),
                        batchnorm=True)
LOIHI_FER2013_QCFS = replace(LOIHI_FER2013, activation="qcfs", levels=8)
# The same layers without batch-norm, so without bias currents: trained through weight standardisation
# (edgefer.nn.standardization) they reach 63.1 % on PublicTest, as with batch-norm (63.4 %).
LOIHI_FER2013_NOBN = replace(LOIHI_FER2013, batchnorm=False)
LOIHI_FER2013_NOBN_QCFS = replace(LOIHI_FER2013_NOBN, activation="qcfs", levels=8)
# CK+48 VGG-like net.
CKPLUS_CNN = ArchSpec(filters=(16, 32, 64), convs_per_block=2, downsample="maxpool", batchnorm=True,
                      dense=(128,), dropout=0.1)
# FER2013 VGG-like net within 2 M parameters and 100 M MACs.
FER2013_CNN = ArchSpec(filters=(32, 64, 128, 256), convs_per_block=(1, 2, 2, 2), downsample="maxpool",
                       batchnorm=True, dense=(256,), dropout=0.4, head="flatten")
# Its bias-free form for Loihi: no batch-norm, no bias, the last convolution of each block at stride 2
# instead of max-pooling (1.75 M params, 48.5 M MACs, 99 k neurons; about 970 cores, eight Loihi chips). It
# starts from FER2013_CNN's trained filters with their batch-norm scales folded in (edgefer.nn.transfer).
LOIHI_VGG_FER2013 = replace(FER2013_CNN, downsample="stride2", batchnorm=False, bias=False)
LOIHI_VGG_FER2013_QCFS = replace(LOIHI_VGG_FER2013, activation="qcfs", levels=8)
# 16 levels fit the ReLU net more closely (64.8 % on PublicTest against 62.0 % with 8) but need more timesteps.
LOIHI_VGG_FER2013_QCFS16 = replace(LOIHI_VGG_FER2013, activation="qcfs", levels=16)
PRESETS = {"loihi-study": LOIHI_STUDY, "loihi-study-qcfs": LOIHI_STUDY_QCFS, "loihi-fer2013": LOIHI_FER2013,
           "loihi-fer2013-qcfs": LOIHI_FER2013_QCFS, "loihi-fer2013-nobn": LOIHI_FER2013_NOBN,
           "loihi-fer2013-nobn-qcfs": LOIHI_FER2013_NOBN_QCFS, "vgg-ckplus": CKPLUS_CNN, "vgg-fer2013": FER2013_CNN,
           "loihi-vgg-fer2013": LOIHI_VGG_FER2013, "loihi-vgg-fer2013-qcfs": LOIHI_VGG_FER2013_QCFS,
           "loihi-vgg-fer2013-qcfs16": LOIHI_VGG_FER2013_QCFS16}


def resolve_arch(name_or_path: str) -> ArchSpec:
    if name_or_path in PRESETS:
        return PRESETS[name_or_path]
    path = Path(name_or_path)
    if path.is_file():
        return ArchSpec.load(path)
    raise EdgeferError(f"unknown architecture {name_or_path!r}: a preset ({', '.join(PRESETS)}) or an ArchSpec JSON file")
