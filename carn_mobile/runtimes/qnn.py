"""Qualcomm's NPU through ONNX Runtime's QNN execution provider: SoCs, sessions, compiled contexts.

The one module that talks to ``onnxruntime-qnn`` (a plugin EP: its library is registered with
ONNX Runtime once per process, its devices picked from ``onnxruntime.get_ep_devices()``). On
Linux x86-64 the wheel's HTP backend (``libQnnHtp.so``) runs the NPU's integer arithmetic in
emulation: numerics and partitioning are the phone's, speed is not (its profiler's "cycles" are
emulator counts, never device time, and nothing here reports them).

SoC table: the ``soc_model`` numbers and HTP architectures are those of the QNN SDK's
``QnnTypes.h`` (``QNN_SOC_MODEL_*``), as ExecuTorch's Qualcomm backend lists them.
"""

from __future__ import annotations

import platform
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .optional import require, version_of


@dataclass(frozen=True)
class Soc:
    """One Snapdragon SoC an HTP context binary can be compiled for."""

    name: str  # as Qualcomm numbers it, lower case: "sm8650"
    marketing: str  # as users know it: "Snapdragon 8 Gen 3"
    soc_model: int  # QNN_SOC_MODEL_* in QnnTypes.h
    htp_arch: int  # Hexagon HTP version, e.g. 75 for v75

    def provider_options(self) -> dict[str, str]:
        return {"soc_model": str(self.soc_model), "htp_arch": str(self.htp_arch)}

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "marketing_name": self.marketing, "soc_model": self.soc_model,
                "htp_arch": f"v{self.htp_arch}"}


#: Phone SoCs with an HTP that runs 8- and 16-bit QDQ graphs, oldest first.
SOCS: dict[str, Soc] = {s.name: s for s in (
    Soc("sm8450", "Snapdragon 8 Gen 1", 36, 69),
    Soc("sm8475", "Snapdragon 8+ Gen 1", 42, 69),
    Soc("sm8550", "Snapdragon 8 Gen 2", 43, 73),
    Soc("sm8635", "Snapdragon 8s Gen 3", 68, 73),
    Soc("sm8650", "Snapdragon 8 Gen 3", 57, 75),
    Soc("sm8735", "Snapdragon 8s Gen 4", 85, 79),
    Soc("sm8750", "Snapdragon 8 Elite", 69, 79),
    Soc("sm8850", "Snapdragon 8 Elite Gen 5", 87, 81),
)}

#: Context binaries made unless ``--soc`` names others: the three most recent flagships.
DEFAULT_SOCS = ("sm8650", "sm8750", "sm8850")

#: Platforms whose onnxruntime-qnn wheel runs the HTP backend in emulation.
EMULATOR_PLATFORMS = {("linux", "x86_64")}

EP_NAME = "QNNExecutionProvider"


def get_soc(name: str) -> Soc:
    """The SoC called ``name`` (``sm8650``; case-insensitive); ``ValueError`` listing the known ones."""
    try:
        return SOCS[name.strip().lower()]
    except KeyError:
        known = ", ".join(f"{s.name} ({s.marketing})" for s in SOCS.values())
        raise ValueError(f"unknown SoC {name!r}; use one of {known}") from None


def soc_for(soc_model: int, htp_arch: int) -> Soc | None:
    """The table entry with these numbers, if any."""
    return next((s for s in SOCS.values() if (s.soc_model, s.htp_arch) == (soc_model, htp_arch)), None)


def emulator_unavailable() -> str | None:
    """``None`` where the HTP emulator can run, else why not (one line)."""
    here = (sys.platform, platform.machine().lower())
    if here not in EMULATOR_PLATFORMS:
        return (f"the onnxruntime-qnn wheel for {here[0]} {here[1]} has no HTP emulator (Linux x86-64 has): "
                "export and check qnn artifacts there")
    return None


def qnn_versions() -> dict[str, str | None]:
    """onnxruntime-qnn's version and the QNN SDK version its libraries are."""
    versions = {"onnxruntime-qnn": version_of("onnxruntime-qnn"), "qnn-sdk": None}
    try:
        from onnxruntime_qnn import build_and_package_info

        versions["qnn-sdk"] = getattr(build_and_package_info, "qnn_version", None)
    except ImportError:
        pass
    return versions


def _devices() -> list:
    """The QNN EP's devices, its library registered with ONNX Runtime first (once per process)."""
    ort = require("onnxruntime", "qnn", "the QNN execution provider")
    qnn = require("onnxruntime_qnn", "qnn", "the QNN execution provider")
    devices = [d for d in ort.get_ep_devices() if d.ep_name == EP_NAME]
    if not devices:
        ort.register_execution_provider_library(qnn.get_ep_name(), qnn.get_library_path())
        devices = [d for d in ort.get_ep_devices() if d.ep_name == EP_NAME]
    if not devices:
        raise RuntimeError("onnxruntime-qnn registered no device")
    return devices


def htp_options(soc: Soc | None = None, config: dict[str, str] | None = None):
    """Session options that put a graph on the HTP (``soc``: compile for it; ``None``: the SoC a
    context binary records, or the EP's default); ``config``: session config entries."""
    ort = require("onnxruntime", "qnn", "the QNN execution provider")
    qnn = require("onnxruntime_qnn", "qnn", "the QNN execution provider")
    options = ort.SessionOptions()
    options.log_severity_level = 3  # the EP logs every node it builds at info level
    for key, value in (config or {}).items():
        options.add_session_config_entry(key, value)
    provider = {"backend_path": qnn.get_qnn_htp_path(), **(soc.provider_options() if soc else {})}
    options.add_provider_for_devices(_devices(), provider)
    return options


def htp_session(path: str | Path, soc: Soc | None = None):
    """An ONNX Runtime session running ``path`` (a QDQ or EPContext model) on the HTP."""
    ort = require("onnxruntime", "qnn", "the QNN execution provider")
    from .quiet import captured_output

    with captured_output():  # the HTP library prints its thread configuration on load
        session = ort.InferenceSession(str(path), htp_options(soc))
    # onnxruntime's Python session otherwise answers an EP failure by rebuilding itself on the CPU
    # EP and retrying: every later number would then be the CPU's, not the HTP's.
    session.disable_fallback()
    return session


class NothingOnHtp(RuntimeError):
    """The QNN EP assigned no node of the graph to the HTP."""


def compile_context(qdq_model: str | Path, soc: Soc) -> bytes:
    """The EPContext model of ``qdq_model`` compiled for ``soc``, its context binary embedded (one
    file an app loads without compiling on the phone)."""
    ort = require("onnxruntime", "qnn", "the QNN execution provider")
    from .quiet import captured_output

    with tempfile.TemporaryDirectory(prefix="carn-qnn-ctx-") as tmp:
        out = Path(tmp) / "context.onnx"
        config = {"ep.context_enable": "1", "ep.context_file_path": str(out), "ep.context_embed_mode": "1"}
        with captured_output():
            ort.InferenceSession(str(qdq_model), htp_options(soc, config))
        if not out.is_file():  # onnxruntime writes none when the EP took no node
            raise NothingOnHtp(f"the QNN EP took no node of {Path(qdq_model).name} for {soc.name}")
        return out.read_bytes()


@dataclass(frozen=True)
class Coverage:
    """Where a compiled model's nodes run: HTP partitions, and nodes left to the CPU."""

    partitions: int
    #: Graph-input quantize / graph-output dequantize the EP leaves to the CPU on purpose
    #: (``offload_graph_io_quantization``): the conversion of the app's float tensors.
    io_conversions: tuple[str, ...]
    #: Every other node outside the HTP: ``"OpType node_name"``.
    cpu_nodes: tuple[str, ...]
    soc_model: int | None = None
    htp_arch: int | None = None
    sdk_version: str | None = None

    @property
    def full(self) -> bool:
        return self.partitions == 1 and not self.cpu_nodes

    def summary(self) -> str:
        where = "every compute op on the HTP" if self.full else (
            f"{self.partitions} HTP partition(s), on the CPU: {', '.join(self.cpu_nodes) or 'nothing'}")
        return f"{where} (CPU: {len(self.io_conversions)} graph I/O conversion(s))"

    def to_json(self) -> dict[str, Any]:
        return {"htp_partitions": self.partitions, "cpu_io_conversions": list(self.io_conversions),
                "cpu_nodes": list(self.cpu_nodes), "soc_model": self.soc_model,
                "htp_arch": None if self.htp_arch is None else f"v{self.htp_arch}", "qnn_sdk": self.sdk_version}


def coverage(context_model) -> Coverage:
    """What an EPContext model (``onnx.ModelProto``) left outside the HTP, and what it was built for."""
    graph = context_model.graph
    inputs = {i.name for i in graph.input}
    outputs = {o.name for o in graph.output}
    partitions, io, cpu, sdk = 0, [], [], None
    for node in graph.node:
        if node.op_type == "EPContext":
            partitions += 1
            for attr in node.attribute:
                if attr.name == "ep_sdk_version":
                    sdk = attr.s.decode()
        elif (node.op_type == "QuantizeLinear" and node.input[0] in inputs) or (
                node.op_type == "DequantizeLinear" and node.output[0] in outputs):
            io.append(f"{node.op_type} {node.name}")
        else:
            cpu.append(f"{node.op_type} {node.name}")
    meta = {p.key: p.value for p in context_model.metadata_props}
    soc_model = htp_arch = None
    # "v2:<backend>:<sdk>:<core>:<htp arch>:<soc model>:..." as the EP records it.
    fields = meta.get(f"ep_compatibility_info.{EP_NAME}", "").split(":")
    if len(fields) >= 6 and fields[4].isdigit() and fields[5].isdigit():
        htp_arch, soc_model = int(fields[4]), int(fields[5])
    return Coverage(partitions, tuple(io), tuple(cpu), soc_model, htp_arch, sdk)
