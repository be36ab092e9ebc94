"""Sampling: how tokens are drawn from logits the way TerraMind's reference does (top-k, then top-p on the
raw logits, then temperature, then one multinomial draw per row from a caller-supplied generator), and the
seed of each tile's own random stream."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Sampling:
    """How tokens are drawn (the reference's defaults) and how many diffusion steps decode images."""

    top_k: int = 0
    top_p: float = 0.8
    temperature: float = 1.0
    timesteps: int = 50


def tile_seed(seed: int, *position: int) -> int:
    """A 62-bit seed from the user's seed and a tile's global position: independent streams per tile,
    the same stream for the same tile whichever region or worker computes it."""
    digest = hashlib.blake2b(repr((int(seed), *map(int, position))).encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") >> 2


def filter_logits(logits: torch.Tensor, top_k: int = 0, top_p: float = 0.0) -> torch.Tensor:
    """Set to -inf every logit outside the top ``top_k`` and outside the smallest set of most likely
    tokens whose probability reaches ``top_p`` (the first token past the threshold is kept). 0 disables."""
    logits = logits.clone()
    if top_k > 0:
        kth = torch.topk(logits, min(top_k, logits.shape[-1]))[0][..., -1:]
        logits[logits < kth] = float("-inf")
    if top_p > 0.0:
        ordered, order = torch.sort(logits, dim=-1, descending=True)
        beyond = torch.cumsum(torch.softmax(ordered, dim=-1), dim=-1) > top_p
        beyond[..., 1:] = beyond[..., :-1].clone()
        beyond[..., 0] = False
        logits[beyond.gather(-1, torch.argsort(order, dim=-1))] = float("-inf")
    return logits


def sample(logits: torch.Tensor, generator: torch.Generator, *, temperature: float = 1.0, top_k: int = 0,
           top_p: float = 0.0) -> torch.Tensor:
    """One token per row of ``(N, V)`` logits; a temperature of (about) 0 takes the argmax."""
    if abs(temperature) < 1e-10:
        return logits.argmax(dim=-1)
    probs = torch.softmax(filter_logits(logits, top_k, top_p) / temperature, dim=-1)
    return torch.multinomial(probs.float().cpu(), 1, generator=generator)[:, 0].to(logits.device)
