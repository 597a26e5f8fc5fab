"""Read a Core ML package without Core ML: its I/O description, metadata and ML program.

This works on every OS (``coremltools`` only parses the files), so it backs the structural
check of Core ML artifacts off macOS, and :func:`load_mil_program` is the entry point a
reference executor of ML programs can build on.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .optional import require


@dataclass(frozen=True)
class FeatureInfo:
    """One input or output of a Core ML model, as its spec declares it."""

    name: str
    kind: str  # "multiArrayType" or "imageType"
    dtype: str | None = None  # multi-arrays: "FLOAT32", "FLOAT16"...
    color: str | None = None  # images: "RGB", "BGR", "GRAYSCALE"...
    shape: tuple[int, ...] = ()  # default shape (images: (height, width))
    ranges: tuple[tuple[int, int], ...] = ()  # flexible bounds per axis, upper -1 = unbounded
    enumerated: tuple[tuple[int, ...], ...] = ()  # enumerated shapes (images: (height, width))


@dataclass(frozen=True)
class MLPackageInfo:
    """What a Core ML package declares and what its ML program contains."""

    model_type: str
    spec_version: int
    inputs: tuple[FeatureInfo, ...]
    outputs: tuple[FeatureInfo, ...]
    metadata: dict[str, Any]
    op_counts: dict[str, int] = field(default_factory=dict)
    #: Elements of the non-scalar floating-point constants (the weights), by dtype.
    weight_elements: dict[str, int] = field(default_factory=dict)


def _coremltools():
    return require("coremltools", "export", "reading Core ML packages")


def load_spec_model(path: str | Path):
    """The package as a ``coremltools`` ``MLModel`` that is parsed but not compiled."""
    ct = _coremltools()
    if not Path(path).is_dir():
        raise FileNotFoundError(f"{path} is not a Core ML package folder")
    return ct.models.MLModel(str(path), skip_model_load=True)


def load_mil_program(path: str | Path):
    """The package's ML program as a MIL ``Program`` (ops with their constant values)."""
    _coremltools()
    from coremltools.converters.mil.frontend.milproto.load import load as load_milproto

    model = load_spec_model(path)
    spec = model.get_spec()
    if spec.WhichOneof("Type") != "mlProgram":
        raise ValueError(f"{path} holds a {spec.WhichOneof('Type')} model, not an ML program")
    return load_milproto(spec, specification_version=spec.specificationVersion, file_weights_dir=model.weights_dir)


def _feature(desc) -> FeatureInfo:
    kind = desc.type.WhichOneof("Type")
    if kind == "multiArrayType":
        t = desc.type.multiArrayType
        from coremltools.proto import FeatureTypes_pb2

        dtype = FeatureTypes_pb2.ArrayFeatureType.ArrayDataType.Name(t.dataType)
        flex = t.WhichOneof("ShapeFlexibility")
        ranges = tuple((r.lowerBound, r.upperBound) for r in t.shapeRange.sizeRanges) if flex == "shapeRange" else ()
        enumerated = (
            tuple(tuple(s.shape) for s in t.enumeratedShapes.shapes) if flex == "enumeratedShapes" else ()
        )
        return FeatureInfo(desc.name, kind, dtype=dtype, shape=tuple(t.shape), ranges=ranges, enumerated=enumerated)
    if kind == "imageType":
        t = desc.type.imageType
        from coremltools.proto import FeatureTypes_pb2

        color = FeatureTypes_pb2.ImageFeatureType.ColorSpace.Name(t.colorSpace)
        flex = t.WhichOneof("SizeFlexibility")
        ranges: tuple[tuple[int, int], ...] = ()
        enumerated: tuple[tuple[int, ...], ...] = ()
        if flex == "imageSizeRange":
            r = t.imageSizeRange
            ranges = ((r.heightRange.lowerBound, r.heightRange.upperBound),
                      (r.widthRange.lowerBound, r.widthRange.upperBound))
        elif flex == "enumeratedSizes":
            enumerated = tuple((s.height, s.width) for s in t.enumeratedSizes.sizes)
        return FeatureInfo(desc.name, kind, color=color, shape=(t.height, t.width), ranges=ranges,
                           enumerated=enumerated)
    return FeatureInfo(desc.name, str(kind))


def inspect_mlpackage(path: str | Path) -> MLPackageInfo:
    """Parse a ``.mlpackage`` and summarise it; raises if it cannot be read."""
    model = load_spec_model(path)
    spec = model.get_spec()
    desc = spec.description
    meta = desc.metadata
    metadata = {
        "short_description": meta.shortDescription,
        "author": meta.author,
        "license": meta.license,
        "version": meta.versionString,
        "user_defined": dict(meta.userDefined),
        "input_descriptions": {f.name: f.shortDescription for f in desc.input},
        "output_descriptions": {f.name: f.shortDescription for f in desc.output},
    }
    ops: Counter[str] = Counter()
    weights: Counter[str] = Counter()
    if spec.WhichOneof("Type") == "mlProgram":
        program = load_mil_program(path)
        for function in program.functions.values():
            for op in function.operations:
                ops[op.op_type] += 1
                if op.op_type == "const":
                    val = op.outputs[0].val
                    if isinstance(val, np.ndarray) and val.size > 1 and np.issubdtype(val.dtype, np.floating):
                        weights[str(val.dtype)] += int(val.size)
    return MLPackageInfo(
        model_type=str(spec.WhichOneof("Type")),
        spec_version=int(spec.specificationVersion),
        inputs=tuple(_feature(f) for f in desc.input),
        outputs=tuple(_feature(f) for f in desc.output),
        metadata=metadata,
        op_counts=dict(ops),
        weight_elements=dict(weights),
    )
