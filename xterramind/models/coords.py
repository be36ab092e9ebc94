"""The coordinates modality: a tile's location as text tokens, ``"lat=38.25 lon=-75.75 [EOS]"``.

TerraMind rounds longitude and latitude to a 0.25 degree grid and tokenizes that text with a Hugging
Face ``tokenizers`` vocabulary published beside the model (``config.json`` in
``ibm-esa-geospatial/TerraMind-1.0-Tokenizer-Coords``). The vocabulary is data, not weights: even a
model on random weights needs the real file to read coordinates.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..errors import CheckpointError, InputError, MissingDependencyError, WeightsUnavailableError

EOS_TOKEN = "[EOS]"


@dataclass(frozen=True)
class CoordsVocabulary:
    """Where the vocabulary lives (the shape ``locate_official`` reads)."""

    name: str = "coords"
    hub_repo: str = "ibm-esa-geospatial/TerraMind-1.0-Tokenizer-Coords"
    filename: str = "config.json"


def coords_text(lon: float, lat: float) -> str:
    """The text TerraMind reads for a location: both rounded to a 0.25 degree grid."""
    lon, lat = (round(value * 4) / 4 for value in (lon, lat))
    return f"lat={lat:.2f} lon={lon:.2f} {EOS_TOKEN}"


class CoordsTokenizer:
    """Longitude/latitude pairs -> token ids ``(B, L)`` with TerraMind's vocabulary file."""

    def __init__(self, path: str | Path):
        try:
            from tokenizers import Tokenizer
        except ImportError:
            raise MissingDependencyError("coordinates need the tokenizers package: pip install 'xterramind[hub]'") from None
        self.path = Path(path)
        if not self.path.is_file():
            raise WeightsUnavailableError(f"coordinates vocabulary not found: {path} (pass the official config.json "
                                          f"of {CoordsVocabulary.hub_repo} as tokenizers={{'coords': path}})")
        try:
            self.vocabulary = Tokenizer.from_file(str(path))
        except Exception as error:  # tokenizers raises its own, unexported error type
            raise CheckpointError(
                f"{path} is not a coordinates vocabulary ({type(error).__name__}: {str(error)[:160]}); pass the "
                f"official config.json of {CoordsVocabulary.hub_repo} as tokenizers={{'coords': path}}"
            ) from None

    def encode(self, lonlat) -> torch.Tensor:
        lonlat = np.asarray(lonlat, dtype=np.float64)
        if lonlat.ndim != 2 or lonlat.shape[1] != 2 or not np.isfinite(lonlat).all():
            raise InputError(f"coordinates must be finite (lon, lat) pairs of shape (B, 2), got {lonlat.shape}")
        if (np.abs(lonlat[:, 0]) > 180).any() or (np.abs(lonlat[:, 1]) > 90).any():
            raise InputError("coordinates are (longitude, latitude) in degrees: |lon| <= 180, |lat| <= 90")
        encoded = self.vocabulary.encode_batch([coords_text(lon, lat) for lon, lat in lonlat], add_special_tokens=True)
        length = max(len(item.ids) for item in encoded)
        ids = torch.zeros(len(encoded), length, dtype=torch.long)  # 0 is [PAD]
        for row, item in enumerate(encoded):
            ids[row, : len(item.ids)] = torch.tensor(item.ids)
        return ids
