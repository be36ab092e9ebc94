"""TerraMind's tokenizers in plain PyTorch: ViT encoders, FSQ, the LULC ViT decoder, the diffusion UNet and DDIM."""

from .tokenizer import Tokenizer

__all__ = ["Tokenizer"]
