"""Turning logits into tokens the way TerraMind's reference does: top-k, then top-p on the raw logits,
then temperature, then one multinomial draw per row from a caller-supplied generator."""

from __future__ import annotations

import torch


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
