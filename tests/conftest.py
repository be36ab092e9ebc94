import numpy as np
import pytest
import torch

import xterramind


@pytest.fixture(scope="session")
def micro():
    """The micro GELU model on seeded random weights: fast, with the official layout."""
    return xterramind.load_model("terramind_micro", weights="random", device="cpu", precision="fp32")


@pytest.fixture(scope="session")
def cube():
    """The bundled real Sentinel-2 scene, lazy."""
    return xterramind.open_sample()


@pytest.fixture(scope="session")
def lulc(cube, micro):
    """Land cover generated from the real scene by the micro model, seed 7, in memory."""
    return cube.terramind.generate("LULC", micro, seed=7).compute()


@pytest.fixture
def s2_tile():
    """A standardized S2L2A batch, (2, 12, 64, 64), from realistic reflectances."""
    generator = torch.Generator().manual_seed(0)
    reflectance = 300.0 + 4000.0 * torch.rand(2, 12, 64, 64, generator=generator)
    return xterramind.load_model("terramind_micro", weights="random", device="cpu").normalize("S2L2A", reflectance)


def real_s2_pixels(size: int = 224) -> np.ndarray:
    """A (12, size, size) float32 crop of the bundled real Sentinel-2 scene, S2L2A band order."""
    import rasterio

    from xterramind.data import SAMPLE_STACK

    with rasterio.open(SAMPLE_STACK) as source:
        return source.read(window=((0, size), (0, size))).astype(np.float32)
