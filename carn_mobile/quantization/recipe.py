"""The int8 quantization recipe: one definition that every int8 target applies.

What is quantized, what stays in float and how activation ranges are calibrated, decided
by measurement on CARN-M x4 (Set5 task-PSNR drop against float32, onnxruntime QDQ, 32 T91
calibration patches, latency at 1280x720 output on one 2-core AVX-512-VNNI machine; this table
was taken with the float32 default rewrites, before ``cascade-as-sum`` was left out and the
output grid added, which lowered every drop further: 0.031 dB with the final recipe):

=====================================  ==========  ==========
variant                                Set5 drop   latency
=====================================  ==========  ==========
every conv int8, MinMax                0.096 dB    344 ms
every conv int8, Percentile 99.999     0.066 dB    354 ms
  + mean shift in float                0.075 dB    353 ms
  + entry conv in float                0.079 dB    357 ms
  + exit conv in float                 0.059 dB    447 ms
  + mean, entry, upsampler, exit float 0.055 dB    402 ms
every conv int8, Entropy               0.096 dB    356 ms
float32 (reference)                    --          520 ms
=====================================  ==========  ==========

So the default quantizes every convolution, the usual suspects included: keeping any of
them in float buys at most 0.01 dB and costs up to a quarter of the int8 speed-up (the float
islands need their own dequantize/quantize and layout reorders). ``float_modules`` remains
for a target whose int8 kernels reject a layer; each entry carries its reason into the
manifest.

The table is onnxruntime's; ExecuTorch's PT2E path measured its quantizer's HistogramObserver
best (Set5 0.024 dB). So a :class:`Recipe` leaves a field unset to take the quantizer's own
measured default, and each quantizer declares its defaults and the values it can apply
(:class:`QuantizerSpec`): an export either applies every field of the recipe it was given or is
refused in one line naming the field, and the manifest records the recipe as applied.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

#: Rewrites that are exact in float but not in int8, measured (CARN-M x4, T91+BSD200 patches).
SKIPPED_REWRITES = {
    "cascade-as-sum": "exact in float, but in int8 every partial sum is rounded again: task PSNR drop Set5 "
                      "0.077 -> 0.036 dB, Set14 0.041 -> 0.026, test image 0.105 -> 0.034 without it",
}

#: Exact rewrites that speed up int8 kernels (measurements in carn_mobile.export.rewrites).
#: ``dense-groups`` is not among them: onnxruntime's int8 CARN-M x4 gained 12 % with it (377 ->
#: 334 ms), but XNNPACK's lost 40 % (150 -> 210 ms) and the files grew by 40 % (zero blocks).
INT8_REWRITES = ("pad-exit",)

#: Calibration methods a recipe may name, over every quantizer (each accepts its own subset):
#: onnxruntime's ``CalibrationMethod`` members and the PT2E observers (``Histogram``).
CALIBRATION_METHODS = ("MinMax", "Percentile", "Entropy", "Histogram")

#: onnxruntime's percentile default, which the Percentile method uses unless the recipe names one.
PERCENTILE = 99.999

#: Recipe fields a quantizer applies itself (the rewrite fields are applied by the export pipeline,
#: before any quantizer runs, so every quantizer honours them alike).
QUANTIZER_FIELDS = ("method", "percentile", "per_channel", "weight_type", "activation_type", "output_grid",
                    "float_modules")

#: How a field is named to a user where its name is not enough (its CLI option).
FIELD_NAMES = {"method": "calibration method (--calibration-method)"}


class RecipeRefused(ValueError):
    """A quantizer cannot apply a field of the recipe it was given (the message names the field)."""


@dataclass(frozen=True)
class Recipe:
    """How a float32 CARN becomes int8, independent of the target's file format.

    A field left ``None`` takes the quantizer's own measured default (:class:`QuantizerSpec`);
    :meth:`QuantizerSpec.resolve` turns a recipe into the one a quantizer applies, every field
    set, or refuses it naming the field. Manifests record that resolved recipe: what was applied.
    """

    #: Activation range estimator; see the module docstring for the measurement.
    method: str | None = None
    #: Percentile kept by the ``Percentile`` method (onnxruntime's default 99.999).
    percentile: float | None = None
    #: Weights: one scale per output channel (groups and all), symmetric.
    per_channel: bool | None = None
    weight_type: str | None = None
    #: Activations: asymmetric uint8 in onnxruntime, so post-ReLU tensors use the whole range
    #: (int8 activations ran 1.8x slower there on a VNNI Xeon); XNNPACK's kernels take int8.
    activation_type: str | None = None
    #: The exit conv's output (the picture, clamped to [0, 1] by the graph) on the 8-bit image
    #: grid (scale 1/255) instead of a calibrated range; see ``onnx_qdq.output_grid_tensors``.
    output_grid: bool | None = None
    #: Module names (as in the PyTorch model, e.g. ``net.exit``) kept in float, with the reason.
    float_modules: dict[str, str] = field(default_factory=dict)
    #: Default graph rewrites (``carn_mobile.export.rewrites``) an int8 export leaves out, with the reason.
    skip_rewrites: dict[str, str] = field(default_factory=lambda: dict(SKIPPED_REWRITES))
    #: Rewrites an int8 export adds to the defaults (exact; they pay in int8 kernels only).
    add_rewrites: tuple[str, ...] = INT8_REWRITES

    def __post_init__(self) -> None:
        if self.method is not None and self.method not in CALIBRATION_METHODS:
            raise ValueError(f"unknown calibration method {self.method!r}; use one of {', '.join(CALIBRATION_METHODS)}")
        if self.percentile is not None and not 50.0 < self.percentile <= 100.0:
            raise ValueError(f"percentile must be in (50, 100], got {self.percentile}")

    @property
    def complete(self) -> bool:
        """Whether every quantizer field is set (a resolved recipe, as manifests record it)."""
        return all(getattr(self, f) is not None for f in QUANTIZER_FIELDS if f != "percentile") and (
            (self.percentile is not None) == (self.method == "Percentile"))

    def rewrites(self, defaults: tuple[str, ...]) -> tuple[str, ...]:
        """The rewrite names an int8 export applies, given the float defaults."""
        return tuple(r for r in defaults if r not in self.skip_rewrites) + tuple(
            r for r in self.add_rewrites if r not in defaults)

    def keeps_float(self, module_name: str) -> str | None:
        """The reason ``module_name`` (or a module containing it) stays in float, else ``None``."""
        for prefix, reason in self.float_modules.items():
            if module_name == prefix or module_name.startswith(prefix + "."):
                return reason
        return None

    def to_json(self) -> dict[str, Any]:
        return {"method": self.method, "percentile": self.percentile,
                "per_channel": self.per_channel, "weight_type": self.weight_type, "output_grid": self.output_grid,
                "activation_type": self.activation_type, "float_modules": dict(self.float_modules),
                "skip_rewrites": dict(self.skip_rewrites), "add_rewrites": list(self.add_rewrites)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Recipe:
        """The recipe a manifest recorded (``ValueError`` when it is not a complete one)."""
        try:
            recipe = cls(method=data["method"], percentile=data.get("percentile"),
                         per_channel=bool(data["per_channel"]), weight_type=data["weight_type"],
                         output_grid=bool(data["output_grid"]), activation_type=data["activation_type"],
                         float_modules=dict(data.get("float_modules", {})),
                         skip_rewrites=dict(data.get("skip_rewrites", {})),
                         add_rewrites=tuple(data.get("add_rewrites", ())))
        except (KeyError, TypeError) as exc:
            raise ValueError(f"the manifest's quantization recipe is incomplete ({exc})") from None
        if not recipe.complete:
            raise ValueError("the manifest's quantization recipe is incomplete (a field is unset)")
        return recipe


#: Every field unset: each quantizer's measured defaults.
DEFAULT_RECIPE = Recipe()


#: Integer types a recipe may name for weights and activations, by their width in bits.
TYPE_BITS = {"int4": 4, "uint4": 4, "int8": 8, "uint8": 8, "int16": 16, "uint16": 16}

#: The type fields, whose values a quantizer offers per bit width (the precision's).
_TYPE_FIELDS = ("weight_type", "activation_type")


@dataclass(frozen=True)
class QuantizerSpec:
    """What one quantizer applies: its default for every recipe field and the values it accepts.

    ``accepts`` maps a field to the values the quantizer can apply (``None``: any value of the
    field's type; for ``float_modules`` ``()`` means none can stay float). Types depend on the
    precision: ``weight_types`` / ``activation_types`` map a bit width (``Precision.weight_bits`` /
    ``activation_bits``) to the types offered, the default first; a width missing there is a
    precision this quantizer cannot make. A quantizer module declares one spec and applies every
    field of the resolved recipe it is handed; the tests check each field changes its output or
    is refused.
    """

    name: str
    #: In messages: what the quantizer is, e.g. "onnxruntime's quantize_static (QDQ)".
    label: str
    #: Every field but the types set (the percentile only with the Percentile method).
    defaults: Recipe
    accepts: dict[str, tuple[Any, ...] | None]
    weight_types: dict[int, tuple[str, ...]]
    activation_types: dict[int, tuple[str, ...]]

    def __post_init__(self) -> None:
        fields = [f for f in QUANTIZER_FIELDS if f not in _TYPE_FIELDS]
        missing = [f for f in fields if f not in self.accepts]
        unset = [f for f in fields if f != "percentile" and getattr(self.defaults, f) is None]
        if missing or unset:
            raise ValueError(f"quantizer {self.name} must declare every recipe field (missing {missing + unset})")

    def resolve(self, recipe: Recipe, precision: str = "int8") -> Recipe:
        """``recipe`` with every unset field at this quantizer's default for ``precision``;
        :class:`RecipeRefused` naming the first field it cannot apply."""
        from ..precision import get_precision

        row = get_precision(precision)
        if not row.quantized:
            raise ValueError(f"{precision} is not a quantized precision")
        values = {f: getattr(recipe, f) for f in QUANTIZER_FIELDS}
        for name, value in values.items():
            if name not in _TYPE_FIELDS and (value is None or (name == "float_modules" and not value)):
                values[name] = getattr(self.defaults, name)
        if values["method"] != "Percentile":
            if recipe.percentile is not None:
                raise RecipeRefused(f"the recipe's percentile applies to calibration method Percentile only, "
                                    f"not {values['method']}")
            values["percentile"] = None
        elif values["percentile"] is None:
            values["percentile"] = PERCENTILE
        for name, bits, table in (("weight_type", row.weight_bits, self.weight_types),
                                  ("activation_type", row.activation_bits, self.activation_types)):
            offered = table.get(bits, ())
            if not offered:
                raise RecipeRefused(f"{self.label} has no {bits}-bit {name.removesuffix('_type')}s, which "
                                    f"{row.name} needs")
            values[name] = values[name] or offered[0]
            self._check(name, values[name], offered, row.name)
        for name in QUANTIZER_FIELDS:
            if name not in _TYPE_FIELDS and self.accepts[name] is not None and values[name] is not None:
                self._check(name, values[name], self.accepts[name], row.name)
        return replace(recipe, **values)

    def _check(self, name: str, value: Any, allowed: tuple[Any, ...], precision: str) -> None:
        # float_modules: ``()`` says the quantizer keeps no module in float.
        ok = not value if name == "float_modules" else value in allowed
        if not ok:
            offer = "none" if name == "float_modules" else ", ".join(str(a) for a in allowed)
            shown = sorted(value) if name == "float_modules" else value
            raise RecipeRefused(f"{self.label} cannot apply the recipe's {FIELD_NAMES.get(name, name)} {shown!r}; "
                                f"it applies: {offer} (for {precision})")

    def applies(self, recipe: Recipe) -> bool:
        """Whether ``recipe`` is one this quantizer resolved (every field set to a value it applies)."""
        if not recipe.complete:
            return False
        precision = _precision_of(recipe)
        try:
            return precision is not None and self.resolve(recipe, precision) == recipe
        except RecipeRefused:
            return False


def _precision_of(recipe: Recipe) -> str | None:
    """The quantized precision whose bit widths the recipe's types have, if any."""
    from ..precision import PRECISIONS

    bits = (TYPE_BITS.get(recipe.weight_type or ""), TYPE_BITS.get(recipe.activation_type or ""))
    for row in PRECISIONS.values():
        if row.quantized and (row.weight_bits, row.activation_bits) == bits:
            return row.name
    return None
