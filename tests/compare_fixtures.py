"""Tiny untrained models for `edgefer compare` tests, and the row fields that do not depend on timing."""

from __future__ import annotations

from pathlib import Path

from edgefer.nn.recipes import SplitPlan
from edgefer.nn.spec import ArchSpec

CLASSES = {"ckplus": ("happy", "contempt", "fear", "surprise", "sadness", "anger", "disgust"),
           "fer2013": ("anger", "disgust", "fear", "happy", "sadness", "surprise", "neutral")}
# Fields of a measured row that depend on the machine's speed and load.
TIMED = ("latency_s", "fps", "pdp_j", "realtime", "cost_breakdown", "notes")
LOIHI_NET = dict(downsample="stride2", bias=False, batchnorm=False, stem=3)


def tiny_model(path: Path, dataset: str = "ckplus", input_mode: str = "gray", **spec) -> Path:
    """An untrained tiny model whose card names the dataset's study split: the rows need a model, not a good one."""
    from edgefer.nn.model import FerModel

    arch = ArchSpec(**{"filters": (4, 8), "convs_per_block": 1, "dense": (16,), "num_classes": 7, **spec})
    model = FerModel(arch, arch.build(), CLASSES[dataset], input_mode,
                     {"name": path.stem, "data": {"dataset": dataset}, "split": SplitPlan().to_dict()})
    return model.save(path)


def tiny_model_set(folder: Path, dataset: str = "ckplus") -> dict[str, str]:
    """The CNN and the two Loihi nets (gray, edges) of one comparison, with fixed untrained weights."""
    import torch

    torch.manual_seed(0)  # fixed weights: every run simulates the same spikes
    cnn = tiny_model(folder / "cnn.safetensors", dataset, downsample="maxpool", batchnorm=True)
    gray = tiny_model(folder / "gray.safetensors", dataset, **LOIHI_NET)
    edges = tiny_model(folder / "edges.safetensors", dataset, input_mode="edges", **LOIHI_NET)
    return {"cnn": str(cnn), "gray": str(gray), "edges": str(edges)}


def stable_rows(rows: list[dict]) -> list[dict]:
    """The rows without the fields a measured target's timing decides."""
    return [{k: v for k, v in r.items() if not (r.get("source") == "measured" and k in TIMED)} for r in rows]
