"""The integrate-and-fire scan of one layer over a chunk of timesteps, compiled (numba), and the
one-pass check-and-convert of input spikes to the uint8 that int8 synapses read.

Given a layer's synaptic current for every step of the chunk, each neuron integrates it, is
clamped to the state bounds, fires when it reaches the threshold and is reset by subtraction, step
by step. Torch runs that as ~5 tensor operations per step, each a pass over the whole layer plus a
dispatch; here one pass per block of neurons keeps the membranes in cache across the steps, writes
the spikes in the dtype the next layer reads (uint8 for int8 synapses) and counts spikes and
active updates on the way (the accounting). The arithmetic is float32 in the same order as the
torch loop: the same spikes, bit for bit (tests compare the two).
"""

from __future__ import annotations

import math

import numba
import numpy as np
import torch

# Neurons per parallel job: a block's membranes, spike counts and one step of its current stay in
# L1/L2 across the steps; blocks of every image are spread over the threads.
_BLOCK = 2048
_NO_COUNTS = np.zeros((1, 1), dtype=np.int32)


def _use_torch_threads() -> None:
    """Run the compiled kernels on as many threads as torch uses (``torch.set_num_threads``)."""
    numba.set_num_threads(min(torch.get_num_threads(), numba.config.NUMBA_NUM_THREADS))


@numba.njit(parallel=True, cache=True, nogil=True)
def _scan(current, membrane, spikes, spike_counts, active_per_job, threshold, low, high, clamp, clamp_current, count):
    steps, batch, neurons = current.shape
    blocks = (neurons + _BLOCK - 1) // _BLOCK
    zero = np.float32(0.0)
    for job in numba.prange(batch * blocks):
        image = job // blocks
        start = (job % blocks) * _BLOCK
        stop = min(neurons, start + _BLOCK)
        v = membrane[image, start:stop]
        counts = spike_counts[image, start:stop] if count else spike_counts[0, :0]
        active = 0
        # Branch-free inner loops over slices, the flags hoisted out: LLVM vectorises them (SIMD).
        for t in range(steps):
            step_current = current[t, image, start:stop]
            fired = spikes[t, image, start:stop]
            if clamp_current:
                for i in range(stop - start):
                    integrated = min(max(v[i] + min(max(step_current[i], low), high), low), high)
                    spike = integrated >= threshold
                    v[i] = integrated - (threshold if spike else zero)
                    fired[i] = spike
            elif clamp:
                for i in range(stop - start):
                    integrated = min(max(v[i] + step_current[i], low), high)
                    spike = integrated >= threshold
                    v[i] = integrated - (threshold if spike else zero)
                    fired[i] = spike
            else:
                for i in range(stop - start):
                    integrated = v[i] + step_current[i]
                    spike = integrated >= threshold
                    v[i] = integrated - (threshold if spike else zero)
                    fired[i] = spike
            if count:
                for i in range(stop - start):
                    counts[i] += fired[i]
                    active += step_current[i] != zero
        active_per_job[job] = active


def integrate_and_fire(current: torch.Tensor, membrane: torch.Tensor, spikes: torch.Tensor, threshold: float,
                       bounds: tuple[float, float] | None, spike_counts: torch.Tensor | None = None,
                       clamp_current: bool = False) -> torch.Tensor | None:
    """Scan ``current`` (steps x batch x neurons, float32, contiguous) into ``membrane`` (batch x
    neurons, float32, updated in place) and ``spikes`` (steps x batch x neurons, 0/1, uint8 or
    float32); the membrane saturates at ``bounds``, and so does the current with ``clamp_current``
    (as the reference clamps both). With ``spike_counts`` (batch x neurons, int32) each neuron's spikes are added there
    and the number of updates with non-zero input per image is returned."""
    arrays = (current, membrane, spikes) + ((spike_counts,) if spike_counts is not None else ())
    if not all(a.is_contiguous() for a in arrays):
        raise ValueError("integrate_and_fire updates its tensors in place: they must be contiguous views")
    steps, batch, neurons = current.shape
    _use_torch_threads()
    count = spike_counts is not None
    jobs = batch * ((neurons + _BLOCK - 1) // _BLOCK)
    active = np.zeros(jobs, dtype=np.int64)
    counts = spike_counts.numpy() if count else _NO_COUNTS
    low, high = bounds if bounds is not None else (0.0, 0.0)
    _scan(current.numpy(), membrane.numpy(), spikes.numpy(), counts, active, np.float32(threshold),
          np.float32(low), np.float32(high), bounds is not None, clamp_current and bounds is not None, count)
    return torch.from_numpy(active.reshape(batch, -1).sum(1)) if count else None


@numba.njit(parallel=True, cache=True, nogil=True)
def _to_uint8(values, spikes, binary_per_frame):
    # values: steps x batch x channels x pixels (any strides); spikes: the same, channels last
    steps, batch, channels, pixels = values.shape
    for frame in numba.prange(steps * batch):
        t, image = frame // batch, frame % batch
        binary = True
        for c in range(channels):
            for i in range(pixels):
                value = values[t, image, c, i]
                binary &= (value == 0) | (value == 1)
                spikes[t, image, i, c] = value != 0
        binary_per_frame[frame] = binary


def binary_spikes(values: torch.Tensor) -> torch.Tensor | None:
    """0/1 float spikes (steps x batch x input_shape) as uint8, in one pass, frames of channels x
    height x width laid out channels last (what the int8 convolutions read); None if any value is
    not 0 or 1."""
    steps, batch, *shape = values.shape
    channels, pixels = (shape[0], math.prod(shape[1:])) if len(shape) == 3 else (1, math.prod(shape))
    # A batch sliced out of longer spike trains is read in place: no copy of the float spikes.
    frames = values.detach().float().reshape(steps, batch, channels, pixels)
    spikes = torch.empty((steps, batch, *shape[1:], channels) if len(shape) == 3 else values.shape, dtype=torch.uint8)
    binary = np.zeros(steps * batch, dtype=np.bool_)
    _use_torch_threads()
    _to_uint8(frames.numpy(), spikes.view(steps, batch, pixels, channels).numpy(), binary)
    if not binary.all():
        return None
    return spikes.movedim(-1, 2) if len(shape) == 3 else spikes
