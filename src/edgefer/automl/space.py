"""The search space: an ArchSpec and its training budget, suggested by an Optuna trial.

The target shapes the space before anything is sampled (Loihi never sees max-pool or bias); what
can only be judged on a whole spec (cores, Edge TPU ops, memory) is checked by the target right
after sampling, and an infeasible spec is pruned before any training.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from edgefer.nn.spec import ArchSpec
from edgefer.nn.train import TrainConfig

BLOCKS = (2, 4)
CONVS_PER_BLOCK = (1, 2)
BASE_FILTERS = (8, 12, 16, 24, 32)
WIDTH_GROWTH = (1, 2)  # filters multiply by this from one block to the next
MAX_FILTERS = 64
KERNELS = (3, 5)
HEADS = ("flatten", "avg")
DENSE_LAYERS = (0, 2)
DENSE_UNITS = (32, 64, 128)
DROPOUT = (0.0, 0.4, 0.1)  # low, high, step
LEARNING_RATE = (1e-3, 1e-2)
BATCH_SIZES = (16, 32, 64)
EPOCH_STEP = 4


@dataclass(frozen=True)
class Budget:
    """Epochs a trial may train: a searched value in [min_epochs, max_epochs], step EPOCH_STEP."""

    min_epochs: int = 8
    max_epochs: int = 20


def suggest(trial, hints, budget: Budget, num_classes: int, base: TrainConfig) -> tuple[ArchSpec, TrainConfig]:
    """One spec + training config. ``hints`` (the target's ``SearchHints``) give ``downsampling`` and ``bias_allowed``;
    ``base`` holds the fixed training settings (augmentation, seed, device)."""
    blocks = trial.suggest_int("blocks", *BLOCKS)
    convs = trial.suggest_int("convs_per_block", *CONVS_PER_BLOCK)
    width = trial.suggest_categorical("base_filters", BASE_FILTERS)
    growth = trial.suggest_categorical("width_growth", WIDTH_GROWTH)
    kernel = trial.suggest_categorical("kernel_size", KERNELS)
    downsample = trial.suggest_categorical("downsample", hints.downsampling)
    batchnorm = trial.suggest_categorical("batchnorm", (True, False))
    head = trial.suggest_categorical("head", HEADS)
    dense_layers = trial.suggest_int("dense_layers", *DENSE_LAYERS)
    units = trial.suggest_categorical("dense_units", DENSE_UNITS) if dense_layers else 0
    dropout = trial.suggest_float("dropout", DROPOUT[0], DROPOUT[1], step=DROPOUT[2])
    spec = ArchSpec(
        filters=tuple(min(width * growth ** b, MAX_FILTERS) for b in range(blocks)),
        convs_per_block=convs,
        kernel_size=kernel,
        downsample=downsample,
        batchnorm=batchnorm,
        # A bias before batch-norm is cancelled by its mean; without batch-norm it is kept where allowed.
        bias=hints.bias_allowed and not batchnorm,
        dense=(units,) * dense_layers,
        dropout=dropout,
        head=head,
        num_classes=num_classes,
    )
    config = replace(
        base,
        lr=trial.suggest_float("lr", *LEARNING_RATE, log=True),
        batch_size=trial.suggest_categorical("batch_size", BATCH_SIZES),
        epochs=trial.suggest_int("epochs", budget.min_epochs, budget.max_epochs, step=EPOCH_STEP)
        if budget.max_epochs > budget.min_epochs else budget.min_epochs,
    )
    return spec, config
