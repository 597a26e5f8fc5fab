"""carn-mobile: CARN and CARN-M super-resolution, from PyTorch to phones."""

__version__ = "0.1.0"
