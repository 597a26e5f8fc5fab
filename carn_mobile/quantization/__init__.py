"""Quantized precisions for every target: one recipe (:mod:`.recipe`), calibration data
(:mod:`.calibration`), the quality gate (:mod:`.quality`) and one quantizer per format
(:mod:`.onnx_qdq`, :mod:`.pt2e`), each declaring what of the recipe it applies (``QuantizerSpec``).

An export at a quantized precision carries a :class:`Quantization` in its request: the recipe as
its target's quantizer resolved it (every field set: what is applied and recorded) and the
calibration source; the target reads the patches for its scale from it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .calibration import BUILT_IN, CalibrationError, CalibrationSet, CalibrationSource
from .recipe import CALIBRATION_METHODS, DEFAULT_RECIPE, QuantizerSpec, Recipe, RecipeRefused


@dataclass(frozen=True)
class Quantization:
    """What a quantized export needs besides the model: the applied recipe, the quantizer that
    applies it and where calibration comes from."""

    recipe: Recipe
    quantizer: str
    calibration: CalibrationSource = field(default_factory=CalibrationSource)

    @classmethod
    def for_quantizer(cls, spec: QuantizerSpec, precision: str, recipe: Recipe = DEFAULT_RECIPE,
                      calibration: CalibrationSource | None = None) -> Quantization:
        """``recipe`` resolved by ``spec`` for ``precision`` (:class:`RecipeRefused` naming a field
        it cannot apply)."""
        return cls(spec.resolve(recipe, precision), spec.name, calibration or CalibrationSource())

    def to_json(self, scale: int) -> dict[str, Any]:
        """The manifest's record: the applied recipe, its quantizer and the calibration set at ``scale``."""
        return {"quantizer": self.quantizer, "recipe": self.recipe.to_json(),
                "calibration": self.calibration.for_scale(scale).to_json()}

    @classmethod
    def from_json(cls, record: dict[str, Any] | None, spec: QuantizerSpec, precision: str, with_calibration: bool,
                  artifact: str = "the artifact") -> Quantization:
        """The quantization a manifest recorded for ``precision``, checked against ``spec`` (its
        target's quantizer).

        ``with_calibration``: rebuild the calibration source (and check its patches' sha256), for a
        target whose quantized reference is computed again; else the recorded source is not needed.
        ``artifact`` names the file in messages.
        """
        if not isinstance(record, dict) or "recipe" not in record:
            raise ValueError(f"{artifact}'s manifest has no quantization recipe; export it again")
        recipe = Recipe.from_json(record["recipe"])
        quantizer = record.get("quantizer")
        if quantizer is not None and quantizer != spec.name:
            raise ValueError(f"{artifact}'s manifest records quantizer {quantizer!r}, not {spec.name!r}; "
                             "export it again")
        try:
            applied = spec.resolve(recipe, precision) == recipe
        except RecipeRefused:
            applied = False
        if not applied:
            # Manifests without a quantizer predate the applied-recipe record: theirs may say what
            # was asked rather than done. Those whose recipe is what the quantizer applies stay valid.
            why = "was written before carn-mobile recorded the applied recipe, and its" if quantizer is None else "'s"
            raise ValueError(f"{artifact}'s manifest {why} recorded recipe is not what {spec.name} applies; "
                             "export it again")
        calibration = CalibrationSource()
        if with_calibration:
            calibration = CalibrationSource.from_record(record.get("calibration", {}))
            scale = int(record.get("calibration", {}).get("scale", 0))
            if calibration.for_scale(scale).sha256 != record["calibration"].get("sha256"):
                raise ValueError(f"the calibration patches for {artifact} differ from the export's (sha256); "
                                 "re-check with the same calibration images")
        return cls(recipe, spec.name, calibration)


__all__ = [
    "BUILT_IN",
    "CALIBRATION_METHODS",
    "DEFAULT_RECIPE",
    "CalibrationError",
    "CalibrationSet",
    "CalibrationSource",
    "Quantization",
    "QuantizerSpec",
    "Recipe",
    "RecipeRefused",
]
