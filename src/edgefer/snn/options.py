"""How a converted network is built and simulated: the options of ``edgefer snn eval`` and of the
``loihi`` target, kept free of torch so that listing targets stays quick."""

from __future__ import annotations

from dataclasses import dataclass

from edgefer.errors import EdgeferError
from edgefer.snn import STUDY_TIMESTEPS

ENCODINGS = ("rate", "poisson")
READOUTS = ("spikes", "membrane")
# The activation percentile that sets each layer's scale (edgefer.snn.convert.convert). 99.99 was chosen on
# the validation splits of ckplus-loihi and ckplus-loihi-edges (99.0 / 99.9 / 99.99, Loihi mode, T=50): it
# matched both CNNs there; the test sets were not used for the choice.
DEFAULT_PERCENTILE = 99.99
PRECISIONS = ("loihi", "float")


@dataclass(frozen=True)
class SnnOptions:
    """How a converted network is built and simulated (the knobs of ``edgefer snn eval``)."""

    timesteps: int = STUDY_TIMESTEPS
    encoding: str = "rate"
    precision: str = "loihi"
    readout: str = "spikes"
    percentile: float = DEFAULT_PERCENTILE
    leak: float = 0.0
    v_init: float | None = None  # None: 1/2 for a QCFS-trained net (its trained shift), else 0
    calibration_images: int = 256
    batch_size: int = 64
    static_power_w: float | None = None  # None: the chip's constant
    host_io_s_per_timestep: float | None = None
    seed: int = 0

    def __post_init__(self):
        if self.timesteps < 1 or self.batch_size < 1:
            raise EdgeferError(f"--timesteps and --batch-size must be at least 1, got {self.timesteps} and {self.batch_size}")
        if self.precision not in PRECISIONS:
            raise EdgeferError(f"unknown precision {self.precision!r}; choose one of {', '.join(PRECISIONS)}")
        if self.readout not in READOUTS:
            raise EdgeferError(f"unknown readout {self.readout!r}; choose one of {', '.join(READOUTS)}")
        if self.encoding not in ENCODINGS:
            raise EdgeferError(f"unknown encoding {self.encoding!r}; choose one of {', '.join(ENCODINGS)}")
