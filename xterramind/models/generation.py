"""Any-to-any generation for a batch of tiles, each with its own random stream.

The algorithm is the reference's (terratorch 1.2.x ``TerraMindGeneration``): targets are generated one
after the other, each conditioned on the inputs and on the targets already generated (chaining); a
target's cells are all decoded in one pass of the decoder, in a random order, and every cell's token is
drawn with top-k, then top-p on the raw logits, then temperature. Generated tokens are turned into
pixels by the target's tokenizer: class logits for LULC, a DDIM diffusion decode for images.

Randomness: tile ``b`` owns a generator. Before target ``i`` it is reseeded with ``seeds[b] + i``, then
draws the decoding order (``rand``) and the tokens (``multinomial``), and after the last target it draws
the diffusion noise of each image target in order. For one tile that is exactly the reference's stream
(which reseeds the global RNG with ``seed + step``), so a tile generated here with seed ``s`` equals the
reference's output for seed ``s``; and a tile's result does not depend on the other tiles of its batch.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from ..errors import InputError
from .registry import resolve_modality
from .sampling import Sampling, sample
from .terramind import TerraMind
from .tokenizers import Tokenizer


def sample_targets(
    module: TerraMind,
    inputs: Mapping[str, torch.Tensor],
    targets: Sequence[str],
    seeds: Sequence[int],
    grid: tuple[int, int],
    sampling: Sampling = Sampling(),
) -> tuple[dict[str, torch.Tensor], list[torch.Generator]]:
    """Generate the token grids ``(B, rows, cols)`` of ``targets`` (token modalities, in order) for a
    batch of tiles; returns them by modality name with the tiles' generators, ready for decoding."""
    if len(seeds) != next(iter(inputs.values())).shape[0]:
        raise InputError(f"one seed per tile: {len(seeds)} seeds for a batch of {next(iter(inputs.values())).shape[0]}")
    generators = [torch.Generator() for _ in seeds]
    cells = grid[0] * grid[1]
    current, generated = dict(inputs), {}
    for step, target in enumerate(targets):
        spec = resolve_modality(target)
        for generator, seed in zip(generators, seeds, strict=True):
            generator.manual_seed(seed + step)
        # the reference's ordering: argsort of (target mask + rand * 1e-6), the mask being all False
        orders = [torch.argsort(torch.zeros(1, cells) + torch.rand(cells, generator=g)[None] * 1e-6, dim=1)[0]
                  for g in generators]
        device = next(module.parameters()).device
        positions = torch.stack(orders).to(device)
        logits = module.decode_grid(module.encode_context(current), spec.key, grid, positions)
        tokens = torch.empty(len(seeds), cells, dtype=torch.long, device=device)
        for b, generator in enumerate(generators):
            tokens[b, positions[b]] = sample(logits[b].float(), generator, temperature=sampling.temperature,
                                            top_k=sampling.top_k, top_p=sampling.top_p)
        generated[spec.name] = current[spec.name] = tokens.view(len(seeds), *grid)
    return generated, generators


def diffusion_noise(generators: Sequence[torch.Generator], shape: tuple[int, ...], device) -> torch.Tensor:
    """Each tile's next ``shape`` standard normal draws, stacked: ``(B, *shape)``."""
    return torch.stack([torch.randn(shape, generator=g) for g in generators]).to(device)


def decode_targets(
    tokenizers: Mapping[str, Tokenizer], tokens: Mapping[str, torch.Tensor], generators: Sequence[torch.Generator],
    timesteps: int,
) -> dict[str, torch.Tensor]:
    """Generated tokens -> pixels, target by target in order: LULC class logits ``(B, 10, H, W)``, images
    standardized ``(B, C, H, W)`` from a DDIM decode whose noise each tile draws from its generator."""
    out = {}
    for name, grid in tokens.items():
        tokenizer = tokenizers[name]
        if not tokenizer.config.diffusion:
            out[name] = tokenizer.decode_logits(grid)
            continue
        shape = (tokenizer.config.channels, grid.shape[1] * tokenizer.config.patch, grid.shape[2] * tokenizer.config.patch)
        out[name] = tokenizer.decode_diffusion(grid, diffusion_noise(generators, shape, grid.device), timesteps)
    return out
