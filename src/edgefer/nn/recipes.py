"""How each shipped model is trained: data, split, architecture, input and training config.

``edgefer train --recipe NAME`` reproduces a shipped model; its model card records the command.
Splits are reproducible from (protocol, seed, fractions), so later stages (targets, SNN, compare)
rebuild the exact held-out test set of a model from its card.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edgefer.data.dataset import Calibration, FaceDataset, Validation
from edgefer.data.loaders import load_dataset
from edgefer.data.splits import evenly_spaced, holdout_split, near_duplicate_groups
from edgefer.errors import EdgeferError, UnrecordedDataError
from edgefer.nn.evaluate import evaluate, model_labels
from edgefer.nn.model import FerModel
from edgefer.nn.spec import resolve_arch
from edgefer.nn.train import TrainConfig, train


@dataclass(frozen=True)
class SplitPlan:
    """How a dataset without an official test split is cut: ``study`` (image-level, stratified) or
    ``leakage-free`` (near-duplicate groups kept whole). Datasets with an official test split
    (FER2013) use it and carve only the validation part from their training split."""

    protocol: str = "study"
    seed: int = 123
    test_fraction: float = 0.15
    val_fraction: float = 0.10

    def to_dict(self) -> dict:
        return {"protocol": self.protocol, "seed": self.seed, "test_fraction": self.test_fraction,
                "val_fraction": self.val_fraction}


@dataclass(frozen=True)
class Recipe:
    dataset: str
    arch: str
    input_mode: str
    config: TrainConfig
    split: SplitPlan = field(default_factory=SplitPlan)
    description: str = ""
    init_recipe: str | None = None  # fine-tunes the weights of this recipe's model (``--init``)
    # How the distillation teachers (``--teacher``, config.distill_weight > 0) were trained.
    teacher_commands: tuple[str, ...] = ()


# The study's 75/10/15 random split (seed 123) and the Loihi net's training, shared by recipes.
_STUDY_SPLIT = SplitPlan("study", seed=123, test_fraction=0.15, val_fraction=0.10)
_LOIHI_TRAINING = TrainConfig(epochs=150, batch_size=32, lr=1e-3, weight_decay=1e-4, label_smoothing=0.05,
                              clip_grad_norm=5.0, seed=0)
# Conversion-aware fine-tuning of a trained Loihi net (edgefer.nn.qcfs): QCFS activations with 8 levels, one
# level of noise on 35 % of the activations (what uneven spike arrival does to a converted net at small T).
_LOIHI_QCFS_TUNING = replace(_LOIHI_TRAINING, epochs=60, qcfs_level_noise=0.35)


def _spiking_tuning(base: TrainConfig, epochs: int, timesteps: tuple[int, ...] = (6, 8, 12, 16)) -> TrainConfig:
    """Spiking fine-tuning of a QCFS net (edgefer.snn.tandem): the converted SNN trained at a few timesteps
    (6-16 for 8 levels), a small learning rate (it starts from a converted net that already works at T >= 16),
    no level noise (the real spikes' unevenness replaces it), no weight average (over so few steps it would
    mostly keep the start)."""
    return replace(base, epochs=epochs, lr=1e-4, schedule="cosine", qcfs_level_noise=0.0, ema_decay=0.0,
                   spiking_timesteps=timesteps)


_LOIHI_SPIKING_TUNING = _spiking_tuning(_LOIHI_TRAINING, epochs=10)
# FER2013's official Training / PublicTest usages, 10 % of Training held for model selection.
_FER2013_SPLIT = SplitPlan("official", seed=123, test_fraction=0.0, val_fraction=0.10)
# The Loihi net is small (5.9 M MACs): 40 bf16 epochs on 2 CPU cores; milder augmentation than the
# large CNN, which a net this size would underfit.
_FER2013_LOIHI_TRAINING = TrainConfig(epochs=40, batch_size=128, lr=2e-3, weight_decay=1e-4, label_smoothing=0.05,
                                      rotate_deg=8.0, shift=0.06, scale=0.06, clip_grad_norm=5.0,
                                      precision="bf16", seed=0)

# Conversion-aware fine-tuning of fer2013-loihi (see _LOIHI_QCFS_TUNING); fp32: on a CPU without AVX512-BF16,
# bf16 autocast is twice as slow.
_FER2013_LOIHI_QCFS_TUNING = replace(_FER2013_LOIHI_TRAINING, epochs=20, lr=1e-3, precision="fp32", qcfs_level_noise=0.35)
# The larger Loihi net (loihi-fer2013), distilled from the shipped fer2013-cnn: its mirror-averaged soft labels
# on each clean training image (computed once) are 70 % of the loss.
_FER2013_LOIHI_DISTILLATION = TrainConfig(epochs=30, batch_size=128, lr=2e-3, weight_decay=1e-4, schedule="cosine",
                                          label_smoothing=0.05, rotate_deg=10.0, shift=0.08, scale=0.08,
                                          erase_prob=0.25, clip_grad_norm=5.0, ema_decay=0.999, distill_weight=0.7,
                                          distill_temperature=4.0, distill_flip=True, distill_view="clean", seed=0)
# The same through scaled weight standardisation (the nets without batch-norm).
_FER2013_LOIHI_WS_DISTILLATION = replace(_FER2013_LOIHI_DISTILLATION, weight_standardization=True)
# The teacher sees the student's own augmented batch (Beyer et al., CVPR 2022).
_FER2013_LOIHI_WS_CONSISTENT = replace(_FER2013_LOIHI_WS_DISTILLATION, epochs=40, lr=1e-3, distill_view="augmented",
                                       seed=1)
# How their teacher, the shipped fer2013-cnn, was trained.
_FER2013_CNN_COMMAND = ("edgefer train --recipe fer2013-cnn --init fer2013-cnn-distilled-3.safetensors "
                        "--teacher fer2013-cnn-distilled-3.safetensors")
_FER2013_LOIHI_LARGE_QCFS_TUNING = replace(_FER2013_LOIHI_DISTILLATION, epochs=8, lr=1e-3, qcfs_level_noise=0.35, seed=1)
_FER2013_LOIHI_WS_QCFS_TUNING = replace(_FER2013_LOIHI_LARGE_QCFS_TUNING, weight_standardization=True)
# FER2013's whole Training usage, no validation: the later stages keep their final weight average.
_FER2013_ALL = SplitPlan("official", seed=123, test_fraction=0.0, val_fraction=0.0)
# Distillation stages: the soft labels of an ensemble of the project's FER2013 VGG checkpoints.
_FER2013_DISTILLATION = TrainConfig(epochs=20, batch_size=128, lr=5e-4, weight_decay=5e-4, schedule="cosine",
                                    erase_prob=0.5, ema_decay=0.999, precision="bf16", distill_weight=0.9,
                                    distill_temperature=4.0, seed=2)
_FER2013_MIRROR_DISTILLATION = replace(_FER2013_DISTILLATION, epochs=12, distill_flip=True, seed=3)
# Stage 6: what the live pipeline really feeds the model (see edgefer.nn.train.degrade), with the
# soft labels of the stage-5 model on the clean image (mirror-averaged) as the teacher. fp32: on a
# CPU without AVX512-BF16, bf16 autocast is twice as slow.
_FER2013_ROBUST = replace(_FER2013_MIRROR_DISTILLATION, epochs=20, rotate_deg=15.0, shift=0.08, crop_scale=(0.8, 1.3),
                          erase_prob=0.3, degrade_prob=0.2, distill_weight=0.7, distill_view="clean",
                          precision="fp32", seed=5)
_FER2013_TEACHERS = ("edgefer train --recipe fer2013-cnn-base --epochs 80 --device cuda",
                     "edgefer train --recipe fer2013-cnn-base --device cuda",
                     "edgefer train --recipe fer2013-cnn-finetuned --init fer2013-cnn-base.safetensors")

RECIPES = {
    "ckplus-cnn": Recipe(
        "ckplus", "vgg-ckplus", "gray",
        # Mild jitter and dropout: under the study's image-level protocol, fitting the frames of
        # a sequence that sit in the training set is what scores (see README, "leakage").
        TrainConfig(epochs=60, batch_size=32, lr=3e-3, weight_decay=5e-4, rotate_deg=5.0, shift=0.05, scale=0.05,
                    seed=0),
        _STUDY_SPLIT,
        "VGG-like CNN for CK+48, the study's random 75/10/15 split",
    ),
    "ckplus-loihi": Recipe(
        "ckplus", "loihi-study", "gray",
        _LOIHI_TRAINING,
        _STUDY_SPLIT,
        "the study's Loihi-compatible net (no bias, no pooling, ReLU) for CK+48",
    ),
    "ckplus-loihi-edges": Recipe(
        "ckplus", "loihi-study", "edges",
        _LOIHI_TRAINING,
        _STUDY_SPLIT,
        "the study's Loihi-compatible net trained on Canny edge maps of CK+48 (the study's sparse SNN input)",
    ),
    "ckplus-loihi-qcfs": Recipe(
        "ckplus", "loihi-study-qcfs", "gray",
        _LOIHI_QCFS_TUNING,
        _STUDY_SPLIT,
        "the study's Loihi net for CK+48 fine-tuned for conversion at few timesteps (QCFS, 8 levels, level noise)",
        init_recipe="ckplus-loihi",
    ),
    "ckplus-loihi-spiking": Recipe(
        "ckplus", "loihi-study-qcfs", "gray",
        _LOIHI_SPIKING_TUNING,
        _STUDY_SPLIT,
        "ckplus-loihi-qcfs fine-tuned as the spiking net it converts to, at 6-16 timesteps",
        init_recipe="ckplus-loihi-qcfs",
    ),
    "ckplus-loihi-edges-qcfs": Recipe(
        "ckplus", "loihi-study-qcfs", "edges",
        _LOIHI_QCFS_TUNING,
        _STUDY_SPLIT,
        "the study's Loihi net on CK+48 edge maps fine-tuned for conversion at few timesteps (QCFS, 8 levels, level "
        "noise)",
        init_recipe="ckplus-loihi-edges",
    ),
    "fer2013-loihi": Recipe(
        "fer2013", "loihi-study", "gray",
        _FER2013_LOIHI_TRAINING,
        _FER2013_SPLIT,
        "the study's Loihi-compatible net trained on FER2013 Training (90 % train / 10 % validation), "
        "tested on PublicTest: the spiking rows of the FER2013 comparison",
    ),
    "ckplus-loihi-edges-spiking": Recipe(
        "ckplus", "loihi-study-qcfs", "edges",
        _LOIHI_SPIKING_TUNING,
        _STUDY_SPLIT,
        "ckplus-loihi-edges-qcfs fine-tuned as the spiking net it converts to, at 6-16 timesteps",
        init_recipe="ckplus-loihi-edges-qcfs",
    ),
    "fer2013-loihi-qcfs": Recipe(
        "fer2013", "loihi-study-qcfs", "gray",
        _FER2013_LOIHI_QCFS_TUNING,
        _FER2013_SPLIT,
        "fer2013-loihi fine-tuned for conversion at few timesteps (QCFS, 8 levels, level noise); tested on PublicTest",
        init_recipe="fer2013-loihi",
    ),
    "fer2013-loihi-spiking": Recipe(
        "fer2013", "loihi-study-qcfs", "gray",
        _spiking_tuning(_FER2013_LOIHI_QCFS_TUNING, epochs=4),
        _FER2013_SPLIT,
        "fer2013-loihi-qcfs fine-tuned as the spiking net it converts to, at 6-16 timesteps; tested on PublicTest",
        init_recipe="fer2013-loihi-qcfs",
    ),
    "fer2013-loihi-large": Recipe(
        "fer2013", "loihi-fer2013", "gray",
        _FER2013_LOIHI_DISTILLATION,
        _FER2013_SPLIT,
        "a larger Loihi-compatible net for FER2013 (no bias terms, batch-norm folded into bias currents, stride 2; "
        "four chips) distilled from "
        "fer2013-cnn on FER2013 Training (90 % train / 10 % validation), tested on PublicTest",
        teacher_commands=(_FER2013_CNN_COMMAND,),
    ),
    "fer2013-loihi-large-qcfs": Recipe(
        "fer2013", "loihi-fer2013-qcfs", "gray",
        _FER2013_LOIHI_LARGE_QCFS_TUNING,
        _FER2013_SPLIT,
        "fer2013-loihi-large fine-tuned for conversion at few timesteps (QCFS, 8 levels, level noise), still "
        "distilled from fer2013-cnn; tested on PublicTest",
        init_recipe="fer2013-loihi-large",
        teacher_commands=(_FER2013_CNN_COMMAND,),
    ),
    "fer2013-loihi-large-ws": Recipe(
        "fer2013", "loihi-fer2013-nobn", "gray",
        _FER2013_LOIHI_WS_DISTILLATION,
        _FER2013_SPLIT,
        "the larger Loihi-compatible net for FER2013 without batch-norm (no bias currents), trained through scaled "
        "weight standardisation and distilled from fer2013-cnn; tested on PublicTest",
        teacher_commands=(_FER2013_CNN_COMMAND,),
    ),
    "fer2013-loihi-large-ws-qcfs": Recipe(
        "fer2013", "loihi-fer2013-nobn-qcfs", "gray",
        _FER2013_LOIHI_WS_QCFS_TUNING,
        _FER2013_SPLIT,
        "fer2013-loihi-large-ws fine-tuned for conversion at few timesteps (QCFS, 8 levels, level noise), still "
        "distilled from fer2013-cnn; tested on PublicTest",
        init_recipe="fer2013-loihi-large-ws",
        teacher_commands=(_FER2013_CNN_COMMAND,),
    ),
    "fer2013-loihi-vgg-ws": Recipe(
        "fer2013", "loihi-vgg-fer2013", "gray",
        _FER2013_LOIHI_WS_DISTILLATION,
        _FER2013_SPLIT,
        "fer2013-cnn's layers in a bias-free form for Loihi (no batch-norm, stride-2 instead of max-pooling; eight "
        "chips), started from its filters with the batch-norm scales folded in and distilled from it through scaled "
        "weight standardisation; tested on PublicTest",
        init_recipe="fer2013-cnn",
        teacher_commands=(_FER2013_CNN_COMMAND,),
    ),
    "fer2013-loihi-vgg-ws-long": Recipe(
        "fer2013", "loihi-vgg-fer2013", "gray",
        replace(_FER2013_LOIHI_WS_DISTILLATION, epochs=60),
        _FER2013_SPLIT,
        "fer2013-loihi-vgg-ws distilled for 60 epochs instead of 30 (its validation accuracy was still rising at 30); "
        "percentile conversion; tested on PublicTest",
        init_recipe="fer2013-cnn",
        teacher_commands=(_FER2013_CNN_COMMAND,),
    ),
    "fer2013-loihi-vgg-ws-consistent": Recipe(
        "fer2013", "loihi-vgg-fer2013", "gray",
        _FER2013_LOIHI_WS_CONSISTENT,
        _FER2013_SPLIT,
        "fer2013-loihi-vgg-ws-long distilled for 40 more epochs with a consistent teacher (fer2013-cnn sees the "
        "student's augmented batch, Beyer et al. CVPR 2022) instead of fixed clean-image soft labels; percentile "
        "conversion; tested on PublicTest",
        init_recipe="fer2013-loihi-vgg-ws-long",
        teacher_commands=(_FER2013_CNN_COMMAND,),
    ),
    "fer2013-loihi-vgg-ws-patient": Recipe(
        "fer2013", "loihi-vgg-fer2013", "gray",
        replace(_FER2013_LOIHI_WS_CONSISTENT, lr=7e-4, distill_weight=0.9, seed=2),
        _FER2013_SPLIT,
        "fer2013-loihi-vgg-ws-consistent distilled for 40 more epochs from the same consistent teacher, with the "
        "teacher's soft labels 90 % of the loss (long, teacher-matching schedules keep paying, Beyer et al. "
        "CVPR 2022); percentile conversion; tested on PublicTest",
        init_recipe="fer2013-loihi-vgg-ws-consistent",
        teacher_commands=(_FER2013_CNN_COMMAND,),
    ),
    "fer2013-loihi-vgg-ws-qcfs": Recipe(
        "fer2013", "loihi-vgg-fer2013-qcfs", "gray",
        _FER2013_LOIHI_WS_QCFS_TUNING,
        _FER2013_SPLIT,
        "fer2013-loihi-vgg-ws fine-tuned for conversion at few timesteps (QCFS, 8 levels, level noise), still "
        "distilled from fer2013-cnn; tested on PublicTest",
        init_recipe="fer2013-loihi-vgg-ws",
        teacher_commands=(_FER2013_CNN_COMMAND,),
    ),
    "fer2013-loihi-vgg-ws-spiking": Recipe(
        "fer2013", "loihi-vgg-fer2013-qcfs", "gray",
        _spiking_tuning(_FER2013_LOIHI_WS_QCFS_TUNING, epochs=4),
        _FER2013_SPLIT,
        "fer2013-loihi-vgg-ws-qcfs fine-tuned as the spiking net it converts to, at 6-16 timesteps (its first "
        "convolution reads the pixels as spikes), still distilled from fer2013-cnn; tested on PublicTest",
        init_recipe="fer2013-loihi-vgg-ws-qcfs",
        teacher_commands=(_FER2013_CNN_COMMAND,),
    ),
    "fer2013-loihi-vgg-ws-qcfs16": Recipe(
        "fer2013", "loihi-vgg-fer2013-qcfs16", "gray",
        replace(_FER2013_LOIHI_WS_QCFS_TUNING, epochs=12),
        _FER2013_SPLIT,
        "fer2013-loihi-vgg-ws fine-tuned for conversion with QCFS at 16 levels (a closer fit to its ReLU net than 8 "
        "levels, for more timesteps), still distilled from fer2013-cnn; tested on PublicTest",
        init_recipe="fer2013-loihi-vgg-ws",
        teacher_commands=(_FER2013_CNN_COMMAND,),
    ),
    "fer2013-loihi-vgg-ws-patient-qcfs16": Recipe(
        "fer2013", "loihi-vgg-fer2013-qcfs16", "gray",
        replace(_FER2013_LOIHI_WS_QCFS_TUNING, epochs=10, lr=3e-4),
        _FER2013_SPLIT,
        "fer2013-loihi-vgg-ws-patient fine-tuned for conversion with QCFS at 16 levels (a smaller learning rate than "
        "fer2013-loihi-vgg-ws-qcfs16's, to keep what the long distillation gained), still distilled from fer2013-cnn; "
        "tested on PublicTest",
        init_recipe="fer2013-loihi-vgg-ws-patient",
        teacher_commands=(_FER2013_CNN_COMMAND,),
    ),
    "fer2013-loihi-vgg-ws-patient-spiking": Recipe(
        "fer2013", "loihi-vgg-fer2013-qcfs16", "gray",
        _spiking_tuning(_FER2013_LOIHI_WS_QCFS_TUNING, epochs=3, timesteps=(16, 24, 32)),
        _FER2013_SPLIT,
        "fer2013-loihi-vgg-ws-patient-qcfs16 fine-tuned as the spiking net it converts to, at 16-32 timesteps (its 16 "
        "levels need more steps than 8), still distilled from fer2013-cnn; tested on PublicTest",
        init_recipe="fer2013-loihi-vgg-ws-patient-qcfs16",
        teacher_commands=(_FER2013_CNN_COMMAND,),
    ),
    "fer2013-loihi-edges": Recipe(
        "fer2013", "loihi-study", "edges",
        _FER2013_LOIHI_TRAINING,
        _FER2013_SPLIT,
        "the study's Loihi-compatible net trained on Canny edge maps of FER2013 Training, tested on PublicTest",
    ),
    "fer2013-loihi-edges-qcfs": Recipe(
        "fer2013", "loihi-study-qcfs", "edges",
        _FER2013_LOIHI_QCFS_TUNING,
        _FER2013_SPLIT,
        "fer2013-loihi-edges fine-tuned for conversion at few timesteps (QCFS, 8 levels, level noise); tested on "
        "PublicTest",
        init_recipe="fer2013-loihi-edges",
    ),
    "fer2013-cnn-base": Recipe(
        "fer2013", "vgg-fer2013", "gray",
        TrainConfig(epochs=150, batch_size=128, lr=4e-3, weight_decay=5e-4, erase_prob=0.5, seed=0),
        _FER2013_SPLIT,
        "VGG-like CNN for FER2013, stage 1: Training usage (90 % train / 10 % validation for model "
        "selection), tested on PublicTest; trained on a GPU",
    ),
    "fer2013-cnn-finetuned": Recipe(
        "fer2013", "vgg-fer2013", "gray",
        TrainConfig(epochs=16, batch_size=128, lr=5e-4, weight_decay=5e-4, schedule="cosine", erase_prob=0.5,
                    ema_decay=0.999, precision="bf16", seed=1),
        _FER2013_ALL,
        "VGG-like CNN for FER2013, stage 2: fer2013-cnn-base fine-tuned on the whole Training usage "
        "(no validation; the final weight average is kept), tested on PublicTest",
        init_recipe="fer2013-cnn-base",
    ),
    "fer2013-cnn-distilled": Recipe(
        "fer2013", "vgg-fer2013", "gray",
        _FER2013_DISTILLATION,
        _FER2013_ALL,
        "VGG-like CNN for FER2013, stage 3: fer2013-cnn-finetuned distilled from the ensemble of the three "
        "FER2013 VGG checkpoints this project trained (whole Training usage, no validation; the final "
        "weight average is kept), tested on PublicTest",
        init_recipe="fer2013-cnn-finetuned",
        teacher_commands=_FER2013_TEACHERS,
    ),
    "fer2013-cnn-distilled-2": Recipe(
        "fer2013", "vgg-fer2013", "gray",
        _FER2013_MIRROR_DISTILLATION,
        _FER2013_ALL,
        "VGG-like CNN for FER2013, stage 4: fer2013-cnn-distilled distilled again from the same three "
        "teachers, each now averaging its predictions on the image and its mirror (teachers only: the "
        "shipped model is one CNN run once per face); whole Training usage, final weight average kept, "
        "tested on PublicTest",
        init_recipe="fer2013-cnn-distilled",
        teacher_commands=_FER2013_TEACHERS,
    ),
    "fer2013-cnn-distilled-3": Recipe(
        "fer2013", "vgg-fer2013", "gray",
        replace(_FER2013_MIRROR_DISTILLATION, seed=4),
        _FER2013_ALL,
        "VGG-like CNN for FER2013, stage 5: a second round of stage 4 (same teachers and settings, another "
        "seed) from fer2013-cnn-distilled-2, tested on PublicTest",
        init_recipe="fer2013-cnn-distilled-2",
        teacher_commands=_FER2013_TEACHERS,
    ),
    "fer2013-cnn": Recipe(
        "fer2013", "vgg-fer2013", "gray",
        _FER2013_ROBUST,
        _FER2013_ALL,
        "VGG-like CNN for FER2013, stage 6: fer2013-cnn-distilled-3 fine-tuned for the live pipeline's crops "
        "(crop scale 0.8-1.3, offsets, rotations, occlusion, blur, low resolution, lighting, noise, JPEG) while "
        "matching its own clean-image soft labels; whole Training usage, final weight average kept, tested on "
        "PublicTest",
        init_recipe="fer2013-cnn-distilled-3",
        teacher_commands=("edgefer train --recipe fer2013-cnn-distilled-3 --init fer2013-cnn-distilled-2.safetensors "
                          "--teacher <stage 1 at 80 epochs> --teacher <stage 1> --teacher <stage 2>",),
    ),
}


def split_dataset(data: FaceDataset, plan: SplitPlan, test: FaceDataset | None = None):
    """(train, validation, test) datasets for a plan; ``test`` given means an official test split."""
    groups = near_duplicate_groups(data.images) if plan.protocol == "leakage-free" else None
    index = np.arange(len(data))
    if test is None:
        keep, held = holdout_split(data.labels, plan.test_fraction, plan.seed, groups)
        test = data.subset(held)
        index = keep
    keep_labels = data.labels[index]
    keep_groups = None if groups is None else groups[index]
    if plan.val_fraction == 0:
        return data.subset(index), None, test
    fraction = plan.val_fraction / (1 - (plan.test_fraction if plan.protocol != "official" else 0.0))
    train_pos, val_pos = holdout_split(keep_labels, fraction, plan.seed + 1, keep_groups)
    return data.subset(index[train_pos]), data.subset(index[val_pos]), test


def load_recipe_data(recipe: Recipe, data_root=None):
    """(train, val, test) for a recipe: official splits where the dataset has them."""
    if recipe.split.protocol == "official":
        return split_dataset(load_dataset(recipe.dataset, "train", data_root), recipe.split,
                             load_dataset(recipe.dataset, "test", data_root))
    return split_dataset(load_dataset(recipe.dataset, None, data_root), recipe.split)


def _hardware(device: str) -> dict:
    """Where a model was trained: enough to judge its train_seconds and reproduce it."""
    import platform

    import torch

    from edgefer.nn.train import resolve_device

    resolved = resolve_device(device)
    if resolved.type == "cuda":
        name = torch.cuda.get_device_name(resolved)
    else:
        cpuinfo = Path("/proc/cpuinfo")
        models = [line.split(":", 1)[1].strip() for line in (cpuinfo.read_text().splitlines() if cpuinfo.exists() else [])
                  if line.startswith("model name")]
        name = f"{models[0]} ({len(models)} cores)" if models else platform.machine()
    return {"device": resolved.type, "name": name, "torch": torch.__version__, "threads": torch.get_num_threads()}


def _recorded_plan(model: FerModel) -> tuple[str, SplitPlan]:
    dataset = model.info.get("data", {}).get("dataset")
    plan = model.info.get("split")
    if not dataset or not plan:
        raise UnrecordedDataError("the model's card does not record its dataset and split; pass the data explicitly")
    return dataset, SplitPlan(**plan)


def heldout_test_set(model: FerModel, data_root=None) -> FaceDataset:
    """The test images a model never saw, rebuilt from its card (dataset and split plan)."""
    dataset, plan = _recorded_plan(model)
    if plan.protocol == "official":
        return load_dataset(dataset, "test", data_root)
    return split_dataset(load_dataset(dataset, None, data_root), plan)[2]


def recorded_splits(model: FerModel, data_root=None) -> tuple[FaceDataset, FaceDataset | None, FaceDataset]:
    """(train, validation, test) of a model, rebuilt from its card; validation is None when the split keeps
    none."""
    dataset, plan = _recorded_plan(model)
    if plan.protocol == "official":
        return split_dataset(load_dataset(dataset, "train", data_root), plan, load_dataset(dataset, "test", data_root))
    return split_dataset(load_dataset(dataset, None, data_root), plan)


def training_set(model: FerModel, data_root=None) -> FaceDataset:
    """The images a model was trained on, rebuilt from its card: what calibration may look at."""
    return recorded_splits(model, data_root)[0]


# Validation images an export may choose with (the SNN's T): at most this many, evenly spaced.
VALIDATION_IMAGES = 1000


def calibration_inputs(model: FerModel, limit: int, input_mode: str | None = None, data_root=None,
                       splits: tuple[FaceDataset, FaceDataset | None] | None = None) -> Calibration:
    """The one calibration rule (int8 quantisation, spiking thresholds): ``limit`` evenly spaced images
    of the model's own training split (never its test set), prepared in its input mode; deterministic
    and spread over the file order. With them, up to ``VALIDATION_IMAGES`` evenly spaced images of its
    validation split. ``splits``: the (train, validation) sets when already loaded."""
    from edgefer.data.preprocess import prepare_input

    train, validation = recorded_splits(model, data_root)[:2] if splits is None else splits
    mode = input_mode or model.input_mode
    index = evenly_spaced(len(train), limit)
    dataset = model.info["data"]["dataset"]
    held = None
    if validation is not None and len(validation):
        chosen = validation.subset(evenly_spaced(len(validation), VALIDATION_IMAGES))
        held = Validation(prepare_input(chosen.images, mode), model_labels(model, chosen),
                          f"{dataset} validation split ({len(chosen)} images)")
    return Calibration(prepare_input(train.images[index], mode), f"{dataset} training split ({len(index)} images)", held)


def run_recipe(name: str, out: str | Path, data_root=None, device: str = "auto", progress: bool = True,
               epochs: int | None = None, init: str | Path | None = None, teachers: Sequence[str | Path] = ()) -> dict:
    """Train a recipe, test it, save checkpoint + model card; returns the card."""
    if name not in RECIPES:
        raise EdgeferError(f"unknown recipe {name!r}; choose one of {', '.join(RECIPES)}")
    recipe = RECIPES[name]
    if (init is None) != (recipe.init_recipe is None):
        raise EdgeferError(f"recipe {name!r} " + (f"fine-tunes {recipe.init_recipe!r}: pass its checkpoint with --init"
                                                   if recipe.init_recipe else "trains from scratch: drop --init"))
    if len(teachers) != len(recipe.teacher_commands):
        raise EdgeferError(f"recipe {name!r} " + (f"distils {len(recipe.teacher_commands)} teachers, trained by: "
                                                   + "; ".join(recipe.teacher_commands) + "; pass each with --teacher"
                                                   if recipe.teacher_commands else "distils no teachers: drop --teacher")
                           + f" (got {len(teachers)})")
    initial = FerModel.load(init) if init is not None else None
    teacher_models = [FerModel.load(path) for path in teachers]
    config = replace(recipe.config, device=device, epochs=epochs or recipe.config.epochs)
    train_set, val_set, test_set = load_recipe_data(recipe, data_root)
    spec = resolve_arch(recipe.arch)
    started = time.time()
    result = train(spec, train_set, val_set, config, recipe.input_mode, progress, description=name, init=initial,
                   teachers=teacher_models)
    seconds = time.time() - started
    test_scores = evaluate(result.model, test_set)
    # what validation_accuracy (which picked the epoch) scores: the CNN, or the spiking net it converts to
    validated = ("the converted SNN (float), mean over T = " + ", ".join(map(str, config.spiking_timesteps))
                 if config.spiking_timesteps else "the CNN")
    summary = spec.summary()
    card = {
        "name": name,
        "description": recipe.description,
        "data": {"dataset": recipe.dataset, "train": len(train_set), "validation": len(val_set) if val_set else 0,
                 "test": len(test_set), "classes": list(train_set.classes)},
        "split": recipe.split.to_dict(),
        "input": recipe.input_mode,
        "arch": spec.to_dict(),
        "params": summary["params"],
        "macs": summary["macs"],
        "train_config": config.to_dict(),
        "best_epoch": result.best_epoch,
        "scores": {"validation_accuracy": result.best_val_accuracy, "validated": validated,
                   "test_accuracy": test_scores["accuracy"], "test_balanced_accuracy": test_scores["balanced_accuracy"],
                   "test_n": test_scores["n"]},
        "train_seconds": round(seconds, 1),
        "hardware": _hardware(config.device),
        "command": "edgefer train --recipe " + name + (f" --epochs {epochs}" if epochs else "")
        + (f" --init {recipe.init_recipe}.safetensors" if init is not None else "")
        + "".join(f" --teacher {Path(path).name}" for path in teachers),
        "init": None if initial is None else {"recipe": recipe.init_recipe, "scores": initial.info.get("scores")},
        "teachers": [{"trained_by": command, "file": Path(path).name, "digest": teacher.digest(),
                      "scores": teacher.info.get("scores")}
                     for command, path, teacher in zip(recipe.teacher_commands, teachers, teacher_models)],
        "invoked_as": " ".join(shlex.quote(a) for a in sys.argv),
    }
    result.model.info = card
    out = Path(out)
    result.model.save(out)
    out.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    return card
