"""NumPy implementations of the MIL ops found in carn-mobile's Core ML exports.

An op receives its resolved inputs as :class:`OpArgs` and returns its result(s). Floating
point work is done in float32 (fp16 inputs are widened first, which is exact); the executor
then stores each result in the op's *declared* output type, so an op whose output is fp16 is
rounded to float16 exactly once, when it finishes. Semantics follow the MIL op definitions
(iOS15+ opsets): NumPy-style broadcasting for binary ops, NCHW layout, ``depth_to_space`` in
DCR order and ``pixel_shuffle`` in PyTorch's (CRD) order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from .dtypes import numpy_dtype
from .errors import UnsupportedOpError

_MISSING = object()


class OpArgs:
    """An op's inputs by parameter name; each holds a tuple of values (several for variadic inputs)."""

    def __init__(self, values: Mapping[str, tuple[Any, ...]]) -> None:
        self._values = values

    def __contains__(self, name: str) -> bool:
        return name in self._values

    def get(self, name: str, default: Any = _MISSING) -> Any:
        """The single value of input ``name`` (``default`` when absent; error when required)."""
        if name not in self._values:
            if default is _MISSING:
                raise ValueError(f"required input {name!r} is missing")
            return default
        vals = self._values[name]
        if len(vals) != 1:
            raise ValueError(f"input {name!r} takes one value, got {len(vals)}")
        return vals[0]

    def tuple(self, name: str) -> tuple[Any, ...]:
        """All values of a variadic input (e.g. ``concat``'s ``values``)."""
        if name not in self._values:
            raise ValueError(f"required input {name!r} is missing")
        return tuple(self._values[name])

    def array(self, name: str) -> np.ndarray:
        return np.asarray(self.get(name))

    def int(self, name: str, default: Any = _MISSING) -> int:
        v = self.get(name, default)
        return int(np.asarray(v).item())

    def ints(self, name: str, default: Any = _MISSING) -> tuple[int, ...]:
        v = self.get(name, default)
        return tuple(int(i) for i in np.asarray(v).reshape(-1))

    def flag(self, name: str, default: bool) -> bool:
        return bool(np.asarray(self.get(name, default)).item())

    def string(self, name: str, default: Any = _MISSING) -> str:
        v = self.get(name, default)
        if isinstance(v, np.ndarray):
            v = v.item()
        if not isinstance(v, str):
            raise ValueError(f"input {name!r} must be a string, got {type(v).__name__}")
        return v


OpFn = Callable[[OpArgs], Any]
_OPS: dict[str, OpFn] = {}


def _op(*names: str) -> Callable[[OpFn], OpFn]:
    def register(fn: OpFn) -> OpFn:
        for name in names:
            _OPS[name] = fn
        return fn

    return register


def supported_ops() -> frozenset[str]:
    """Op types the reference executor implements (``const`` is handled by the loader)."""
    return frozenset(_OPS) | {"const"}


def get_op(op_type: str, output: str = "<unnamed>") -> OpFn:
    """The implementation of ``op_type``; :class:`UnsupportedOpError` when there is none."""
    try:
        return _OPS[op_type]
    except KeyError:
        raise UnsupportedOpError(op_type, output, "the NumPy reference executor does not implement it") from None


def apply_op(op_type: str, **inputs: Any) -> Any:
    """Run one op on plain values, e.g. ``apply_op("conv", x=x, weight=w, pad_type="same")``.

    A ``list`` is taken as a variadic input (``concat(values=[a, b], axis=1)``); anything
    else is one value. The result is in the op's compute type (float32 for float inputs),
    before the executor's cast to the declared output type. Meant for tests and debugging.
    """
    fn = get_op(op_type)
    values = {k: tuple(v) if isinstance(v, list) else (v,) for k, v in inputs.items()}
    return fn(OpArgs(values))


def _float(x: Any) -> np.ndarray:
    """float32 copy of an fp16 tensor (exact), other tensors as they are."""
    arr = np.asarray(x)
    return arr.astype(np.float32) if arr.dtype == np.float16 else arr


# --- element-wise ---------------------------------------------------------------------------


@_op("identity")
def _identity(a: OpArgs) -> np.ndarray:
    return a.array("x")


@_op("cast")
def _cast(a: OpArgs) -> np.ndarray:
    # Float -> int truncates toward zero (NumPy astype), as coremltools' own value inference does.
    return a.array("x").astype(numpy_dtype(a.string("dtype")))


@_op("relu")
def _relu(a: OpArgs) -> np.ndarray:
    x = _float(a.get("x"))
    return np.maximum(x, np.zeros((), dtype=x.dtype))


@_op("clip")
def _clip(a: OpArgs) -> np.ndarray:
    x = _float(a.get("x"))
    return np.minimum(np.maximum(x, _float(a.get("alpha"))), _float(a.get("beta")))


def _binary(fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> OpFn:
    def run(a: OpArgs) -> np.ndarray:
        x, y = _float(a.get("x")), _float(a.get("y"))
        if x.shape != y.shape:
            np.broadcast_shapes(x.shape, y.shape)  # clear error for incompatible shapes
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # IEEE results, as on device
            return fn(x, y)

    return run


_op("add")(_binary(np.add))
_op("sub")(_binary(np.subtract))
_op("mul")(_binary(np.multiply))
_op("real_div")(_binary(np.true_divide))
_op("maximum")(_binary(np.maximum))
_op("minimum")(_binary(np.minimum))


# --- convolution ----------------------------------------------------------------------------


def conv_padding(
    pad_type: str,
    in_sizes: tuple[int, ...],
    kernel: tuple[int, ...],
    strides: tuple[int, ...],
    dilations: tuple[int, ...],
    custom: tuple[int, ...] = (),
) -> tuple[int, ...]:
    """Before/after padding per spatial dim (``[b0, a0, b1, a1, ...]``) for a MIL ``pad_type``.

    ``same`` pads so that ``out = ceil(in / stride)``, the odd extra pixel after;
    ``same_lower`` puts it before; ``custom`` takes ``pad`` as given; ``valid`` pads nothing.
    """
    n = len(kernel)
    if pad_type == "valid":
        return (0,) * (2 * n)
    if pad_type == "custom":
        if len(custom) != 2 * n or min(custom, default=0) < 0:
            raise ValueError(f"custom pad needs {2 * n} non-negative values, got {list(custom)}")
        return tuple(custom)
    if pad_type not in ("same", "same_lower"):
        raise ValueError(f"unknown pad_type {pad_type!r}")
    pads: list[int] = []
    for size, k, s, d in zip(in_sizes, kernel, strides, dilations, strict=True):
        span = (k - 1) * d + 1
        total = max(0, (-(-size // s) - 1) * s + span - size)
        small, big = total // 2, total - total // 2
        pads += [big, small] if pad_type == "same_lower" else [small, big]
    return tuple(pads)


# Upper bound on the im2col buffer of one conv chunk; larger outputs are done in row bands.
IM2COL_BYTES = 32 * 2**20


def conv2d(
    x: np.ndarray,
    weight: np.ndarray,
    strides: tuple[int, int] = (1, 1),
    pads: tuple[int, int, int, int] = (0, 0, 0, 0),
    dilations: tuple[int, int] = (1, 1),
    groups: int = 1,
) -> np.ndarray:
    """Grouped 2-D convolution (cross-correlation) of NCHW ``x`` with OIHW ``weight``.

    im2col through a strided window view, then one batched matmul over the groups per band
    of output rows: few large BLAS calls (robust to busy cores), no per-pixel Python loops,
    and memory bounded by ``IM2COL_BYTES``. ``pads`` is ``(top, bottom, left, right)``.
    """
    n, c, _, _ = x.shape
    o, cg, kh, kw = weight.shape
    if groups < 1 or c != cg * groups or o % groups:
        raise ValueError(f"x has {c} channels and weight {list(weight.shape)}: incompatible with groups={groups}")
    if any(pads):
        x = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[1]), (pads[2], pads[3])))
    sh, sw = strides
    dh, dw = dilations
    hp, wp = x.shape[2:]
    span_h, span_w = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    ho, wo = (hp - span_h) // sh + 1, (wp - span_w) // sw + 1
    if ho < 1 or wo < 1:
        raise ValueError(f"kernel {kh}x{kw} (dilation {dh},{dw}) is larger than the padded input {hp}x{wp}")
    dtype = np.result_type(x, weight)
    # (n, c, ho, wo, kh, kw) view: window origins every stride, taps every dilation.
    win = np.lib.stride_tricks.sliding_window_view(x, (span_h, span_w), axis=(2, 3))
    win = win[:, :, ::sh, ::sw, ::dh, ::dw][:, :, :ho, :wo]
    k = cg * kh * kw
    wmat = np.ascontiguousarray(weight, dtype=dtype).reshape(groups, o // groups, k)
    out = np.empty((n, o, ho, wo), dtype=dtype)
    band = max(1, IM2COL_BYTES // max(1, c * kh * kw * wo * dtype.itemsize))
    for b in range(n):
        for r0 in range(0, ho, band):
            rows = min(band, ho - r0)
            cols = win[b, :, r0 : r0 + rows].reshape(groups, cg, rows, wo, kh, kw)
            cols = cols.transpose(0, 1, 4, 5, 2, 3).reshape(groups, k, rows * wo)
            out[b, :, r0 : r0 + rows] = np.matmul(wmat, cols).reshape(o, rows, wo)
    return out


@_op("conv")
def _conv(a: OpArgs) -> np.ndarray:
    x, w = _float(a.get("x")), _float(a.get("weight"))
    if x.ndim not in (3, 4) or w.ndim != x.ndim:
        raise ValueError(f"only 1-D and 2-D convolution are supported (x rank {x.ndim}, weight rank {w.ndim})")
    nsp = x.ndim - 2
    strides = a.ints("strides", (1,) * nsp)
    dilations = a.ints("dilations", (1,) * nsp)
    if len(strides) != nsp or len(dilations) != nsp or min(strides + dilations) < 1:
        raise ValueError(f"bad strides {list(strides)} or dilations {list(dilations)} for {nsp}-D convolution")
    pads = conv_padding(a.string("pad_type", "valid"), x.shape[2:], w.shape[2:], strides, dilations, a.ints("pad", ()))
    if nsp == 1:  # a 1-D conv is a 2-D conv over a height-1 image
        x, w = x[:, :, None, :], w[:, :, None, :]
        strides, dilations, pads = (1, *strides), (1, *dilations), (0, 0, *pads)
    out = conv2d(x, w, strides, pads, dilations, a.int("groups", 1))  # type: ignore[arg-type]
    bias = a.get("bias", None)
    if bias is not None:
        out += _float(bias).reshape(1, -1, 1, 1)
    return out[:, :, 0, :] if nsp == 1 else out


# --- layout ---------------------------------------------------------------------------------


@_op("concat")
def _concat(a: OpArgs) -> np.ndarray:
    values = [np.asarray(v) for v in a.tuple("values")]
    axis = a.int("axis")
    if not a.flag("interleave", False):
        return np.concatenate(values, axis=axis)
    # Interleave: output slices along axis alternate between the (equal-shaped) inputs.
    stacked = np.stack(values, axis=axis % values[0].ndim + 1)
    shape = list(values[0].shape)
    shape[axis] *= len(values)
    return stacked.reshape(shape)


def _rank4(x: np.ndarray, op: str) -> tuple[int, int, int, int]:
    if x.ndim != 4:
        raise ValueError(f"{op} needs a rank-4 NCHW tensor, got shape {list(x.shape)}")
    return x.shape  # type: ignore[return-value]


@_op("pixel_shuffle")
def _pixel_shuffle(a: OpArgs) -> np.ndarray:
    # PyTorch order: output channel c, sub-pixel (i, j) comes from input channel c*f*f + i*f + j.
    x, f = a.array("x"), a.int("upscale_factor")
    n, c, h, w = _rank4(x, "pixel_shuffle")
    if f < 1 or c % (f * f):
        raise ValueError(f"{c} channels are not divisible by upscale_factor^2 = {f * f}")
    y = x.reshape(n, c // (f * f), f, f, h, w).transpose(0, 1, 4, 2, 5, 3)
    return y.reshape(n, c // (f * f), h * f, w * f)


@_op("depth_to_space")
def _depth_to_space(a: OpArgs) -> np.ndarray:
    # DCR order (TensorFlow / ONNX default): sub-pixel (i, j) of channel c is input channel (i*b + j)*C + c.
    x, b = a.array("x"), a.int("block_size")
    n, c, h, w = _rank4(x, "depth_to_space")
    if b < 1 or c % (b * b):
        raise ValueError(f"{c} channels are not divisible by block_size^2 = {b * b}")
    y = x.reshape(n, b, b, c // (b * b), h, w).transpose(0, 3, 4, 1, 5, 2)
    return y.reshape(n, c // (b * b), h * b, w * b)


@_op("space_to_depth")
def _space_to_depth(a: OpArgs) -> np.ndarray:
    # Inverse of depth_to_space (DCR).
    x, b = a.array("x"), a.int("block_size")
    n, c, h, w = _rank4(x, "space_to_depth")
    if b < 1 or h % b or w % b:
        raise ValueError(f"spatial size {h}x{w} is not divisible by block_size {b}")
    y = x.reshape(n, c, h // b, b, w // b, b).transpose(0, 3, 5, 1, 2, 4)
    return y.reshape(n, c * b * b, h // b, w // b)


@_op("reshape")
def _reshape(a: OpArgs) -> np.ndarray:
    x = a.array("x")
    shape = list(a.ints("shape"))
    if 0 in shape:  # MIL: 0 copies the input's dimension (only when the ranks agree)
        if len(shape) != x.ndim:
            raise ValueError(f"shape {shape} uses 0 but its rank differs from the input's {x.ndim}")
        shape = [x.shape[i] if d == 0 else d for i, d in enumerate(shape)]
    return x.reshape(shape)


@_op("transpose")
def _transpose(a: OpArgs) -> np.ndarray:
    return np.transpose(a.array("x"), a.ints("perm"))
