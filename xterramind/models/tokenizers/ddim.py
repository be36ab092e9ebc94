"""DDIM sampling as TerraMind's diffusion tokenizers use it: 1000 training steps, linear betas rescaled to
zero terminal SNR, the network predicting the clean sample, that prediction clipped to [-1, 1], eta 0,
"trailing" timesteps (50 steps: 999, 979, ..., 19)."""

from __future__ import annotations

import numpy as np
import torch

TRAIN_STEPS = 1000


def _zero_terminal_snr(betas: torch.Tensor) -> torch.Tensor:
    """Rescale betas so that the last step's signal-to-noise ratio is exactly zero (pure noise)."""
    root = torch.cumprod(1 - betas, dim=0).sqrt()
    first, last = root[0].clone(), root[-1].clone()
    root = (root - last) * (first / (first - last))
    cumulative = root**2
    alphas = torch.cat([cumulative[:1], cumulative[1:] / cumulative[:-1]])
    return 1 - alphas


ALPHAS_CUMPROD = torch.cumprod(1 - _zero_terminal_snr(torch.linspace(1e-4, 0.02, TRAIN_STEPS, dtype=torch.float32)), dim=0)


def timesteps(steps: int) -> list[int]:
    """The "trailing" schedule: ``steps`` timesteps ending one stride before 0."""
    if not 1 <= steps <= TRAIN_STEPS:
        from ...errors import InputError

        raise InputError(f"timesteps must be between 1 and {TRAIN_STEPS}, got {steps}")
    stride = TRAIN_STEPS // steps
    return (np.arange(TRAIN_STEPS, 0, -stride).round().astype(np.int64) - 1).tolist()


def step(predicted: torch.Tensor, t: int, sample: torch.Tensor, steps: int) -> torch.Tensor:
    """One deterministic DDIM step from ``sample`` at ``t`` given the predicted clean sample."""
    previous = t - TRAIN_STEPS // steps
    alpha = ALPHAS_CUMPROD[t]
    alpha_previous = ALPHAS_CUMPROD[previous] if previous >= 0 else torch.tensor(1.0)
    # The reference's dynamic thresholding with sample_max_value=1 always clamps its threshold to 1,
    # which is plain clipping to [-1, 1].
    clean = predicted.clamp(-1.0, 1.0)
    noise = (sample - alpha**0.5 * clean) / (1 - alpha) ** 0.5
    return alpha_previous**0.5 * clean + (1 - alpha_previous) ** 0.5 * noise


def sample(denoise, noise: torch.Tensor, steps: int) -> torch.Tensor:
    """Run ``steps`` DDIM steps from ``noise``; ``denoise(x, t)`` predicts the clean sample."""
    x = noise
    for t in timesteps(steps):
        x = step(denoise(x, t).float(), t, x, steps)
    return x
