"""Reads the ML program of a saved ``.mlpackage``: spec, main function, constants and weights.

The program proto is read directly (coremltools' generated protobuf classes, imported here and
only here) rather than through coremltools' milproto -> pymil loader: that loader rebuilds the
program with the MIL builder, re-running type inference and requiring defined inputs, so it
could neither show nor execute exactly what was serialised (a mis-ordered program fails inside
it with a bare ``KeyError``). Reading the proto keeps every op, in stored order, with its
declared output types; weights come from the package's weight file (see :mod:`.blob`).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from .blob import BlobFile
from .dtypes import dtype_name, numpy_dtype
from .errors import PackageError
from .program import Binding, FeatureSpec, Operation, Program, TensorType


def _protos() -> tuple[Any, Any]:
    """coremltools' ``Model_pb2`` and ``FeatureTypes_pb2`` modules (coremltools is an optional extra)."""
    try:
        from coremltools.proto import FeatureTypes_pb2, Model_pb2
    except ImportError as exc:
        from ..runtimes.optional import install_hint

        raise ImportError(f"reading Core ML packages needs coremltools: {install_hint('export')}") from exc
    return Model_pb2, FeatureTypes_pb2


def locate_spec(path: str | os.PathLike) -> Path:
    """The ``model.mlmodel`` spec file inside a package, found through its ``Manifest.json``."""
    pkg = Path(path)
    if not pkg.exists():
        raise PackageError(f"{pkg}: no such Core ML package")
    if pkg.is_file():
        raise PackageError(f"{pkg} is a file; an ML program with weights is saved as a .mlpackage directory")
    manifest = pkg / "Manifest.json"
    if not manifest.is_file():
        raise PackageError(f"{pkg} is not a Core ML package: Manifest.json is missing")
    try:
        info = json.loads(manifest.read_text(encoding="utf-8"))
        entry = info["itemInfoEntries"][info["rootModelIdentifier"]]
        rel = entry["path"]
    except (ValueError, KeyError, TypeError) as exc:
        raise PackageError(f"{manifest} is corrupt: no root model entry ({exc!r})") from exc
    spec_file = (pkg / "Data" / rel).resolve()
    if not spec_file.is_relative_to(pkg.resolve()) or not spec_file.is_file():
        raise PackageError(f"{pkg}: the manifest's root model Data/{rel} is missing")
    return spec_file


def read_spec(path: str | os.PathLike) -> Any:
    """The ``CoreML.Specification.Model`` message of a package (for inspection or editing)."""
    model_pb2, _ = _protos()
    spec_file = locate_spec(path)
    spec = model_pb2.Model()
    try:
        spec.ParseFromString(spec_file.read_bytes())
    except Exception as exc:  # protobuf raises its own DecodeError type
        raise PackageError(f"{spec_file} is not a readable Core ML model spec: {exc}") from exc
    return spec


class _Reader:
    """Turns proto values into NumPy values; owns the weight files of one package."""

    def __init__(self, package: Path, spec_dir: Path) -> None:
        self.package = package.resolve()
        self.spec_dir = spec_dir
        self.blobs: dict[Path, BlobFile] = {}

    def tensor_type(self, vtype: Any) -> TensorType | None:
        if vtype.WhichOneof("type") != "tensorType":
            return None  # list/tuple/dict/state types: only used by ops we do not run
        tt = vtype.tensorType
        try:
            dtype = dtype_name(tt.dataType)
        except KeyError as exc:
            raise PackageError(str(exc.args[0])) from None
        dims: list[int | None] = []
        for d in tt.dimensions:
            if d.WhichOneof("dimension") == "constant":
                dims.append(int(d.constant.size))
            elif d.unknown.variadic:
                return TensorType(dtype, None)
            else:
                dims.append(None)
        return TensorType(dtype, tuple(dims))

    def value(self, val: Any, where: str) -> Any:
        ttype = self.tensor_type(val.type)
        if ttype is None or ttype.shape is None or None in ttype.shape:
            raise PackageError(f"{where}: constant of unsupported type (only fixed-shape tensors are read)")
        shape: tuple[int, ...] = ttype.shape  # type: ignore[assignment]
        kind = val.WhichOneof("value")
        if kind == "blobFileValue":
            return self._blob(val.blobFileValue, ttype.dtype, shape, where)
        if kind != "immediateValue" or val.immediateValue.WhichOneof("value") != "tensor":
            raise PackageError(f"{where}: constant has no tensor value")
        tv = val.immediateValue.tensor
        field = tv.WhichOneof("value")
        if ttype.dtype == "string":
            strings = [str(s) for s in tv.strings.values]
            return strings[0] if shape == () and len(strings) == 1 else np.array(strings, dtype=object).reshape(shape)
        np_dtype = numpy_dtype(ttype.dtype)
        if field == "bytes":  # fp16 and small int types are stored as raw little-endian bytes
            arr = np.frombuffer(tv.bytes.values, dtype=np_dtype.newbyteorder("<")).astype(np_dtype)
        elif field in ("floats", "ints", "bools", "longInts", "doubles"):
            arr = np.array(list(getattr(tv, field).values)).astype(np_dtype)
        else:
            raise PackageError(f"{where}: constant has no values")
        if arr.size != int(np.prod(shape, dtype=np.int64)):
            raise PackageError(f"{where}: {arr.size} values for declared type {ttype}")
        return arr.reshape(shape)

    def _blob(self, ref: Any, dtype: str, shape: tuple[int, ...], where: str) -> np.ndarray:
        name = ref.fileName
        if not name.startswith("@model_path/"):
            raise PackageError(f"{where}: weight file reference {name!r} is not inside the package")
        path = (self.spec_dir / name[len("@model_path/") :]).resolve()
        if not path.is_relative_to(self.package):
            raise PackageError(f"{where}: weight file reference {name!r} points outside the package")
        if path not in self.blobs:
            if not path.is_file():
                raise PackageError(f"{where}: weight file {path} is missing")
            self.blobs[path] = BlobFile(path)
        try:
            return self.blobs[path].read(int(ref.offset), dtype, shape)
        except PackageError as exc:
            raise PackageError(f"{where}: {exc}") from None


def _feature(desc: Any, ttype: TensorType | None, feature_pb2: Any) -> FeatureSpec:
    """A model description feature joined with the program's type for the same name."""
    if ttype is None:
        raise PackageError(f"feature {desc.name!r} is not a tensor in the program")
    kind = desc.type.WhichOneof("Type")
    if kind == "imageType":
        it = desc.type.imageType
        layout = feature_pb2.ImageFeatureType.ColorSpace.Name(it.colorSpace)
        c = 1 if layout.startswith("GRAYSCALE") else 3
        choices = bounds = None
        flex = it.WhichOneof("SizeFlexibility")
        if flex == "enumeratedSizes":
            choices = tuple((1, c, int(s.height), int(s.width)) for s in it.enumeratedSizes.sizes)
        elif flex == "imageSizeRange":
            h, w = it.imageSizeRange.heightRange, it.imageSizeRange.widthRange
            bounds = ((1, 1), (c, c), _range(h), _range(w))
        elif it.width and it.height:
            choices = ((1, c, int(it.height), int(it.width)),)
        return FeatureSpec(desc.name, "image", ttype, color_layout=layout, shape_choices=choices, shape_bounds=bounds)
    if kind == "multiArrayType":
        ma = desc.type.multiArrayType
        dt = feature_pb2.ArrayFeatureType.ArrayDataType.Name(ma.dataType)
        choices = bounds = None
        flex = ma.WhichOneof("ShapeFlexibility")
        if flex == "enumeratedShapes":
            choices = tuple(tuple(int(d) for d in s.shape) for s in ma.enumeratedShapes.shapes)
        elif flex == "shapeRange":
            bounds = tuple(_range(r) for r in ma.shapeRange.sizeRanges)
        elif len(ma.shape):
            choices = (tuple(int(d) for d in ma.shape),)
        return FeatureSpec(desc.name, "tensor", ttype, description_dtype=dt, shape_choices=choices, shape_bounds=bounds)
    return FeatureSpec(desc.name, kind or "unknown", ttype)


def _description(desc: Any) -> dict[str, Any]:
    meta = desc.metadata
    return {
        "short_description": meta.shortDescription,
        "author": meta.author,
        "license": meta.license,
        "version": meta.versionString,
        "input_descriptions": {f.name: f.shortDescription for f in desc.input},
        "output_descriptions": {f.name: f.shortDescription for f in desc.output},
    }


def _range(r: Any) -> tuple[int, int | None]:
    return int(r.lowerBound), (None if r.upperBound < 0 else int(r.upperBound))


def program_from_spec(spec: Any, package: str | os.PathLike, function: str = "main", validate: bool = True) -> Program:
    """Build a :class:`Program` from a parsed spec whose weights live in ``package``."""
    _, feature_pb2 = _protos()
    pkg = Path(package)
    kind = spec.WhichOneof("Type")
    if kind != "mlProgram":
        raise PackageError(f"{pkg} holds a {kind or 'empty'} model, not an ML program")
    functions = spec.mlProgram.functions
    if function not in functions:
        raise PackageError(f"{pkg}: the ML program has no function {function!r} (has {sorted(functions)})")
    fn = functions[function]
    if fn.opset not in fn.block_specializations:
        raise PackageError(f"{pkg}: function {function!r} has no block for its opset {fn.opset!r}")
    block = fn.block_specializations[fn.opset]
    reader = _Reader(pkg, locate_spec(pkg).parent)

    var_types: dict[str, TensorType | None] = {v.name: reader.tensor_type(v.type) for v in fn.inputs}
    operations: list[Operation] = []
    constants: dict[str, Any] = {}
    for i, op in enumerate(block.operations):
        outputs = tuple((o.name, reader.tensor_type(o.type)) for o in op.outputs)
        label = outputs[0][0] if outputs else f"#{i}"
        inputs: dict[str, tuple[Binding, ...]] = {}
        for param, arg in op.inputs.items():
            bindings = []
            for b in arg.arguments:
                if b.WhichOneof("binding") == "name":
                    bindings.append(Binding(name=b.name))
                else:
                    bindings.append(Binding(value=reader.value(b.value, f"op {op.type!r} ({label}) input {param!r}")))
            inputs[param] = tuple(bindings)
        if op.type == "const":
            if len(outputs) != 1 or "val" not in op.attributes:
                raise PackageError(f"const op {label!r} has no value")
            value = reader.value(op.attributes["val"], f"const {label!r}")
            if isinstance(value, np.ndarray):
                value.flags.writeable = False  # shared by every run: no op may change it in place
            constants[label] = value
        operations.append(Operation(op.type, inputs, outputs, has_blocks=len(op.blocks) > 0))
        var_types.update(outputs)

    def features(descs: Any, names: list[str], what: str) -> tuple[FeatureSpec, ...]:
        by_name = {d.name: d for d in descs}
        if set(by_name) != set(names):
            raise PackageError(f"{pkg}: model description {what}s {sorted(by_name)} != program {what}s {sorted(names)}")
        return tuple(_feature(by_name[n], var_types.get(n), feature_pb2) for n in names)

    program = Program(
        path=pkg,
        function=function,
        opset=fn.opset,
        inputs=features(spec.description.input, [v.name for v in fn.inputs], "input"),
        outputs=features(spec.description.output, list(block.outputs), "output"),
        operations=tuple(operations),
        constants=constants,
        metadata=dict(spec.description.metadata.userDefined),
        description=_description(spec.description),
        spec_version=int(spec.specificationVersion),
    )
    if validate:
        program.validate()
    return program


def load_program(path: str | os.PathLike, *, function: str = "main", validate: bool = True) -> Program:
    """Load the ML program of a saved ``.mlpackage`` for inspection and NumPy execution.

    Reads the package manifest, the model spec and the ``function`` (default ``main``): its
    inputs/outputs (program types joined with the model description: tensor vs image, flexible
    shape limits), every op in stored order with its declared output types, and the value of
    every ``const`` (inline or from the weight file). With ``validate`` (default) the program
    is checked to be in SSA order, so a mis-ordered program fails here with
    :class:`UndefinedVariableError`. A missing or corrupt package raises :class:`PackageError`.
    """
    return program_from_spec(read_spec(path), path, function=function, validate=validate)
