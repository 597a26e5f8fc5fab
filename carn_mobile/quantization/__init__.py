"""int8 for every target: one recipe (:mod:`.recipe`), calibration data (:mod:`.calibration`),
the quality gate (:mod:`.quality`) and the recipe applied per format (:mod:`.onnx_qdq`).

An export at a quantized precision carries a :class:`Quantization` in its request; a target
that offers int8 reads the recipe and the calibration patches for its scale from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .calibration import BUILT_IN, CalibrationError, CalibrationSet, CalibrationSource
from .recipe import CALIBRATION_METHODS, DEFAULT_RECIPE, Recipe


@dataclass(frozen=True)
class Quantization:
    """What a quantized export needs besides the model: the recipe and where calibration comes from."""

    recipe: Recipe = DEFAULT_RECIPE
    calibration: CalibrationSource = field(default_factory=CalibrationSource)

    def to_json(self, scale: int) -> dict[str, Any]:
        """The manifest's record of the recipe and of the calibration set used at ``scale``."""
        return {"recipe": self.recipe.to_json(), "calibration": self.calibration.for_scale(scale).to_json()}


__all__ = [
    "BUILT_IN",
    "CALIBRATION_METHODS",
    "DEFAULT_RECIPE",
    "CalibrationError",
    "CalibrationSet",
    "CalibrationSource",
    "Quantization",
    "Recipe",
]
