"""Seeded training: AdamW, cosine or one-cycle schedule, label smoothing, flips and affine jitter
done on the batch tensor (so they run on the GPU when there is one), optional degradations that
mimic what a live pipeline feeds the model (crop scale and offset, blur, low resolution, lighting,
noise, JPEG), optional class-balanced loss, optional distillation from an ensemble of teachers,
optional spiking fine-tuning of a QCFS net (``edgefer.snn.tandem``), optional scaled weight
standardisation (``edgefer.nn.standardization``), early stopping on validation
accuracy with the best weights kept.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from edgefer.data.dataset import FaceDataset
from edgefer.data.preprocess import prepare_input
from edgefer.errors import EdgeferError
from edgefer.nn.model import FerModel
from edgefer.nn.qcfs import init_clips, qcfs_layers
from edgefer.nn.spec import ArchSpec
from edgefer.nn.standardization import materialize_weights, standardize_weights
from edgefer.nn.transfer import starting_state


@dataclass
class TrainConfig:
    epochs: int = 60
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 5e-4
    schedule: str = "onecycle"  # onecycle | cosine
    label_smoothing: float = 0.1
    hflip: bool = True
    rotate_deg: float = 10.0
    shift: float = 0.08  # fraction of the image side
    scale: float = 0.08  # +- relative zoom
    # When set, the zoom is instead a crop scale drawn log-uniformly from this range: the side of the
    # crop relative to the dataset's own framing (> 1: a looser crop, the face smaller).
    crop_scale: tuple[float, float] | None = None
    degrade_prob: float = 0.0  # chance of each degradation (blur, low resolution, lighting, noise, JPEG)
    erase_prob: float = 0.0  # random erasing of one rectangle per image
    class_balanced: bool = False
    clip_grad_norm: float = 0.0  # 0: no clipping
    precision: str = "fp32"  # fp32 | bf16 (autocast; ~2.4x faster on CPUs with AVX512-BF16)
    ema_decay: float = 0.0  # > 0: keep an exponential moving average of the weights and return it
    patience: int = 0  # epochs without validation gain before stopping; 0: never stop early
    distill_weight: float = 0.0  # > 0: share of the loss that matches the teachers' averaged soft labels
    distill_temperature: float = 4.0
    distill_flip: bool = False  # teachers also see the mirrored batch: their soft labels average both views
    # "augmented": teachers see the student's augmented batch; "clean": teachers see the training
    # image as it is (soft labels computed once), so a robust student learns clean-image knowledge.
    distill_view: str = "augmented"
    # QCFS nets: the chance that an activation moves one level during training (see edgefer.nn.qcfs.Qcfs)
    qcfs_level_noise: float = 0.0
    # QCFS nets: train (and select on validation) the converted float SNN itself, each batch at one of
    # these timesteps (edgefer.snn.tandem); empty: train the CNN
    spiking_timesteps: tuple[int, ...] = ()
    # Train each convolution and dense layer through scaled weight standardisation (edgefer.nn.standardization):
    # what lets a net without batch-norm (a bias-free Loihi net) train as well; the saved weights are plain.
    weight_standardization: bool = False
    seed: int = 0
    device: str = "auto"

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class TrainResult:
    model: FerModel
    history: list[dict]
    best_epoch: int
    best_val_accuracy: float | None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise EdgeferError(f"device {device!r} requested but CUDA is not available")
    return torch.device(device)


def augment(x: torch.Tensor, cfg: TrainConfig, generator: torch.Generator) -> torch.Tensor:
    """Random flip, rotation, shift, zoom or crop scale (one affine warp per image), optional
    erasing, then the degradations of ``cfg.degrade_prob``."""
    n = x.shape[0]
    dev = x.device

    def uniform(low, high):
        return torch.rand(n, generator=generator, device=dev) * (high - low) + low

    angle = uniform(-cfg.rotate_deg, cfg.rotate_deg) * math.pi / 180
    if cfg.crop_scale is not None:
        low, high = cfg.crop_scale
        inverse_zoom = torch.exp(uniform(math.log(low), math.log(high)))
    else:
        inverse_zoom = 1 / uniform(1 - cfg.scale, 1 + cfg.scale)
    flip = torch.where(torch.rand(n, generator=generator, device=dev) < 0.5, -1.0, 1.0) if cfg.hflip else torch.ones(n, device=dev)
    cos, sin = torch.cos(angle) * inverse_zoom, torch.sin(angle) * inverse_zoom
    theta = torch.stack([
        torch.stack([cos * flip, -sin, uniform(-2 * cfg.shift, 2 * cfg.shift)], 1),
        torch.stack([sin * flip, cos, uniform(-2 * cfg.shift, 2 * cfg.shift)], 1),
    ], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    if cfg.erase_prob > 0:
        side = x.shape[-1]
        h = (uniform(0.1, 0.4) * side).long()
        w = (uniform(0.1, 0.4) * side).long()
        top = (torch.rand(n, generator=generator, device=dev) * (side - h)).long()
        left = (torch.rand(n, generator=generator, device=dev) * (side - w)).long()
        rows = torch.arange(side, device=dev)
        inside = ((rows[None, :, None] >= top[:, None, None]) & (rows[None, :, None] < (top + h)[:, None, None])
                  & (rows[None, None, :] >= left[:, None, None]) & (rows[None, None, :] < (left + w)[:, None, None]))
        erase = (torch.rand(n, generator=generator, device=dev) < cfg.erase_prob)[:, None, None] & inside
        x = x.masked_fill(erase[:, None], 0.0)
    if cfg.degrade_prob > 0:
        x = degrade(x, cfg.degrade_prob, generator)
    return x


# Ranges of the degradations: faces from webcams and phone videos of people a few metres away
# (a face 16-40 px wide upscaled to 48, defocus, exposure, sensor noise, stream compression).
BLUR_SIGMA = (0.4, 1.5)
LOW_RESOLUTION_PX = (14, 36)
CONTRAST = (0.6, 1.4)
BRIGHTNESS = (-0.2, 0.2)
GAMMA = (0.6, 1.6)
NOISE_SIGMA = (0.01, 0.06)
JPEG_QUALITY = (15, 80)


def degrade(x: torch.Tensor, prob: float, generator: torch.Generator) -> torch.Tensor:
    """Each degradation applies to each image with probability ``prob``: Gaussian blur, low
    resolution (down- and back up-scaled), contrast, brightness and gamma, Gaussian noise, JPEG
    compression. Images stay in [0, 1]."""
    n, dev = x.shape[0], x.device

    def chosen():
        return torch.rand(n, generator=generator, device=dev) < prob

    def uniform(low, high):
        return torch.rand(n, generator=generator, device=dev) * (high - low) + low

    side = x.shape[-1]
    blur, sigma = chosen(), uniform(*BLUR_SIGMA)
    if blur.any():
        taps = torch.arange(-3, 4, device=dev, dtype=x.dtype)
        kernel = torch.exp(-0.5 * (taps[None] / sigma[blur, None]) ** 2)
        kernel = kernel / kernel.sum(1, keepdim=True)  # per image, separable 7 taps
        sub = x[blur].transpose(0, 1)  # 1 x m x H x W: one group per image
        m = sub.shape[1]
        sub = F.conv2d(F.pad(sub, (3, 3, 0, 0), mode="replicate"), kernel[:, None, None, :], groups=m)
        sub = F.conv2d(F.pad(sub, (0, 0, 3, 3), mode="replicate"), kernel[:, None, :, None], groups=m)
        x = x.clone()
        x[blur] = sub.transpose(0, 1)
    low_res, pixels = chosen(), uniform(*LOW_RESOLUTION_PX)
    for i in torch.nonzero(low_res).flatten().tolist():
        size = int(pixels[i])
        small = F.interpolate(x[i : i + 1], size=(size, size), mode="area")
        x[i : i + 1] = F.interpolate(small, size=(side, side), mode="bilinear", align_corners=False)
    lighting = chosen()
    contrast = torch.where(lighting, uniform(*CONTRAST), torch.ones(n, device=dev))
    brightness = torch.where(lighting, uniform(*BRIGHTNESS), torch.zeros(n, device=dev))
    gamma = torch.where(lighting, torch.exp(uniform(math.log(GAMMA[0]), math.log(GAMMA[1]))), torch.ones(n, device=dev))
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * contrast[:, None, None, None] + mean + brightness[:, None, None, None]).clamp(0, 1)
    x = x.clamp_min(1e-6) ** gamma[:, None, None, None]
    noisy, noise_sigma = chosen(), uniform(*NOISE_SIGMA)
    noise = torch.randn(x.shape, generator=generator, device=dev) * (noise_sigma * noisy)[:, None, None, None]
    x = (x + noise).clamp(0, 1)
    compressed, quality = chosen(), uniform(*JPEG_QUALITY)
    if compressed.any():
        x = x.clone()
        for i in torch.nonzero(compressed).flatten().tolist():
            x[i, 0] = _jpeg_roundtrip(x[i, 0], int(quality[i]))
    return x


def _jpeg_roundtrip(image: torch.Tensor, quality: int) -> torch.Tensor:
    import cv2

    pixels = (image.detach().float().cpu().numpy() * 255).round().astype(np.uint8)
    ok, encoded = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, quality])
    decoded = cv2.imdecode(encoded, cv2.IMREAD_GRAYSCALE)
    return torch.from_numpy(decoded.astype(np.float32) / 255.0).to(image.device, image.dtype)


@torch.no_grad()
def _teacher_probabilities(xb: torch.Tensor, teachers: list[torch.nn.Module], cfg: TrainConfig, device: torch.device) -> torch.Tensor:
    views = [xb, xb.flip(-1)] if cfg.distill_flip else [xb]
    views = [view.contiguous(memory_format=torch.channels_last) for view in views]
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
        return torch.stack([F.softmax(t(view).float() / cfg.distill_temperature, 1)
                            for t in teachers for view in views]).mean(0)


def _clean_teacher_probabilities(x: torch.Tensor, teachers: list[torch.nn.Module], cfg: TrainConfig,
                                 device: torch.device, batch_size: int = 512) -> torch.Tensor:
    """The teachers' soft labels of every un-augmented training image, computed once."""
    return torch.cat([_teacher_probabilities(x[i : i + batch_size], teachers, cfg, device)
                      for i in range(0, len(x), batch_size)])


def _distillation_loss(logits: torch.Tensor, target: torch.Tensor, cfg: TrainConfig) -> torch.Tensor:
    """KL(teachers || student) at the distillation temperature, scaled by T^2 so its gradients keep
    the size of the cross-entropy's (Hinton et al. 2015)."""
    log_student = F.log_softmax(logits / cfg.distill_temperature, 1)
    return F.kl_div(log_student, target, reduction="batchmean") * cfg.distill_temperature ** 2


@torch.no_grad()
def validate(module: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024,
             forward: Callable[[torch.Tensor], torch.Tensor] | None = None) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of a module (or of ``forward``, which runs it) on prepared inputs."""
    module.eval()
    correct, loss = 0, 0.0
    for i in range(0, len(x), batch_size):
        logits = (forward or module)(x[i : i + batch_size]).float()
        correct += int((logits.argmax(1) == y[i : i + batch_size]).sum())
        loss += float(F.cross_entropy(logits, y[i : i + batch_size], reduction="sum"))
    return correct / max(len(x), 1), loss / max(len(x), 1)


def _pixel_rate_scale(train_inputs: torch.Tensor) -> float:
    """The scale of the pixel rates of a net without the off-chip stem, as the SNN calibration rule
    (``calibration_inputs``: evenly spaced training images) will set it when the net is converted."""
    from edgefer.data.splits import evenly_spaced
    from edgefer.snn.convert import calibrated_input_scale
    from edgefer.snn.options import SnnOptions

    pick = torch.from_numpy(evenly_spaced(len(train_inputs), SnnOptions.calibration_images)).to(train_inputs.device)
    return calibrated_input_scale(train_inputs[pick].float().cpu())


def _validate_spiking(module: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, timesteps: Sequence[int],
                      input_scale: float) -> tuple[float, float]:
    """``validate`` of the converted float SNN, averaged over the timesteps it is trained at."""
    from edgefer.snn.tandem import SpikingForward

    spiking = SpikingForward(module, input_scale)
    scores = [validate(module, x, y, 256, lambda batch, steps=steps: spiking(batch, steps)) for steps in timesteps]
    return float(np.mean([s[0] for s in scores])), float(np.mean([s[1] for s in scores]))


def train(
    spec: ArchSpec,
    train_set: FaceDataset,
    val_set: FaceDataset | None,
    cfg: TrainConfig,
    input_mode: str = "gray",
    progress: bool = True,
    description: str = "training",
    init: FerModel | None = None,
    on_epoch: Callable[[dict], None] | None = None,
    teachers: Sequence[FerModel] = (),
) -> TrainResult:
    """Train ``spec`` from scratch, or from ``init``'s weights (fine-tuning), and return the best
    weights by validation accuracy (the last, or their moving average, without validation).
    With ``cfg.distill_weight`` > 0 the loss mixes cross-entropy with the KL divergence to the
    ``teachers``' averaged, temperature-softened predictions on the same augmented batch (Hinton et
    al. 2015): one student learns what the ensemble knows, and no ensemble runs at test time.
    ``on_epoch`` sees each epoch's history row; an exception it raises (a pruned AutoML trial) stops
    training."""
    if spec.num_classes != len(train_set.classes):
        raise EdgeferError(f"the ArchSpec has {spec.num_classes} outputs but the data has {len(train_set.classes)} classes", train_set.source or None)
    if cfg.schedule not in ("onecycle", "cosine"):
        raise EdgeferError(f"unknown schedule {cfg.schedule!r}; choose onecycle or cosine")
    if cfg.precision not in ("fp32", "bf16"):
        raise EdgeferError(f"unknown precision {cfg.precision!r}; choose fp32 or bf16")
    if cfg.distill_view not in ("augmented", "clean"):
        raise EdgeferError(f"unknown distill_view {cfg.distill_view!r}; choose augmented or clean")
    start = starting_state(init, spec) if init is not None else None
    if cfg.spiking_timesteps and (spec.activation != "qcfs" or min(cfg.spiking_timesteps) < 1 or cfg.precision != "fp32"):
        # fp32: in bf16 the neurons would cross their thresholds where the converted float net's do not
        raise EdgeferError("spiking fine-tuning needs a QCFS net, timesteps >= 1 and fp32 precision")
    if (cfg.distill_weight > 0) != bool(teachers):
        raise EdgeferError("distillation needs both teachers and distill_weight > 0" if cfg.distill_weight > 0
                           else "teachers were given but distill_weight is 0")
    for teacher in teachers:
        if tuple(teacher.classes) != tuple(train_set.classes) or teacher.input_mode != input_mode:
            raise EdgeferError(f"teacher {teacher.info.get('name', '?')} predicts {list(teacher.classes)} from "
                               f"{teacher.input_mode} input; the student learns {list(train_set.classes)} from {input_mode}")
    seed_everything(cfg.seed)
    device = resolve_device(cfg.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    module = spec.build()
    if start is not None:
        state, exact = start
        module.load_state_dict(state, strict=exact)
    if cfg.weight_standardization:
        standardize_weights(module, trained=init is not None)
    module = module.to(device, memory_format=torch.channels_last)
    teacher_modules = [t.module.to(device, memory_format=torch.channels_last).eval() for t in teachers]
    ema = None
    if cfg.ema_decay > 0:
        ema = torch.optim.swa_utils.AveragedModel(
            module, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(cfg.ema_decay), use_buffers=True)
    x = torch.from_numpy(prepare_input(train_set.images, input_mode)).to(device)
    y = torch.from_numpy(train_set.labels).to(device)
    if spec.activation == "qcfs" and (init is None or init.spec != spec):
        init_clips(module, x[:: max(1, len(x) // 512)].contiguous(memory_format=torch.channels_last))
    for layer in qcfs_layers(module):
        layer.level_noise = cfg.qcfs_level_noise
    spiking = None
    if cfg.spiking_timesteps:
        from edgefer.snn.tandem import SpikingForward

        input_scale = _pixel_rate_scale(x)  # the data's, not the weights': once for every epoch
        spiking = SpikingForward(module, input_scale)
    if val_set is not None:
        xv = torch.from_numpy(prepare_input(val_set.images, input_mode)).to(device)
        yv = torch.from_numpy(val_set.labels).to(device)
    weight = None
    if cfg.class_balanced:
        counts = torch.bincount(y, minlength=spec.num_classes).float().clamp(min=1)
        weight = counts.sum() / (spec.num_classes * counts)
    clean_targets = None
    if teacher_modules and cfg.distill_view == "clean":
        clean_targets = _clean_teacher_probabilities(x, teacher_modules, cfg, device)
    steps_per_epoch = math.ceil(len(x) / cfg.batch_size)
    optimizer = torch.optim.AdamW(module.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    total = cfg.epochs * steps_per_epoch
    if cfg.schedule == "onecycle":
        scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=total)
    else:
        scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    history: list[dict] = []
    best_state, best_epoch, best_acc, best_loss, stale = None, 0, None, None, 0
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
               TimeElapsedColumn(), TimeRemainingColumn()]
    with Progress(*columns, disable=not progress, transient=False) as bar:
        task = bar.add_task(description, total=cfg.epochs, status="")
        for epoch in range(1, cfg.epochs + 1):
            module.train()
            order = torch.randperm(len(x), generator=generator, device=device)
            running, seen = 0.0, 0
            for i in range(0, len(x), cfg.batch_size):
                idx = order[i : i + cfg.batch_size]
                if len(idx) < 2 and spec.batchnorm:
                    continue  # batch-norm cannot train on a single image
                xb = augment(x[idx], cfg, generator)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.precision == "bf16"):
                    if spiking is not None:
                        pick = torch.randint(len(cfg.spiking_timesteps), (1,), generator=generator, device=device)
                        logits = spiking(xb, cfg.spiking_timesteps[int(pick)])
                    else:
                        logits = module(xb.contiguous(memory_format=torch.channels_last))
                loss = F.cross_entropy(logits.float(), y[idx], weight=weight, label_smoothing=cfg.label_smoothing)
                if teacher_modules:
                    target = (clean_targets[idx] if clean_targets is not None
                              else _teacher_probabilities(xb, teacher_modules, cfg, device))
                    loss = (1 - cfg.distill_weight) * loss + cfg.distill_weight * _distillation_loss(logits.float(), target, cfg)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.clip_grad_norm:
                    torch.nn.utils.clip_grad_norm_(module.parameters(), cfg.clip_grad_norm)
                optimizer.step()
                scheduler.step()
                if ema is not None:
                    ema.update_parameters(module)
                running += loss.item() * len(idx)
                seen += len(idx)
            row = {"epoch": epoch, "loss": running / max(seen, 1), "lr": scheduler.get_last_lr()[0]}
            evaluated = module if ema is None else ema.module
            if val_set is not None:
                row["val_accuracy"], row["val_loss"] = (_validate_spiking(evaluated, xv, yv, cfg.spiking_timesteps, input_scale)
                                                        if spiking is not None else validate(evaluated, xv, yv))
                # Validation accuracy saturates on small sets (CK+ reaches 100 %): break ties by loss.
                if best_acc is None or (row["val_accuracy"], -row["val_loss"]) > (best_acc, -best_loss):
                    best_acc, best_loss, best_epoch, stale = row["val_accuracy"], row["val_loss"], epoch, 0
                    best_state = {k: v.detach().clone() for k, v in evaluated.state_dict().items()}
                else:
                    stale += 1
            history.append(row)
            status = f"loss {row['loss']:.3f}" + (f" val {row['val_accuracy']:.3f} best {best_acc:.3f}" if val_set is not None else "")
            bar.update(task, advance=1, status=status)
            if on_epoch is not None:
                on_epoch(row)
            if cfg.patience and stale >= cfg.patience:
                break
    if best_state is not None:
        module.load_state_dict(best_state)
    else:
        best_epoch = len(history)
        if ema is not None:
            module.load_state_dict(ema.module.state_dict())
    materialize_weights(module)
    module = module.cpu().to(memory_format=torch.contiguous_format).eval()
    for teacher in teachers:  # hand the teachers back as they came
        teacher.module.cpu().to(memory_format=torch.contiguous_format)
    model = FerModel(spec, module, train_set.classes, input_mode)
    return TrainResult(model, history, best_epoch, best_acc)
