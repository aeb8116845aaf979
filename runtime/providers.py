"""Choosing ONNX Runtime execution providers honestly: what was asked is what runs, or an error."""

from __future__ import annotations

import contextlib
import io
import logging
import os
from dataclasses import dataclass

from .errors import ModelError, ProviderError, first_line

log = logging.getLogger(__name__)

# Short names users type -> ONNX Runtime provider names.
ALIASES = {
    "cpu": "CPUExecutionProvider",
    "cuda": "CUDAExecutionProvider",
    "tensorrt": "TensorrtExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "directml": "DmlExecutionProvider",
    "openvino": "OpenVINOExecutionProvider",
}
# "auto" order. TensorRT is left out on purpose: it builds an engine per input shape
# (minutes on first use), so it runs only when asked for by name.
AUTO_ORDER = ("CUDAExecutionProvider", "CoreMLExecutionProvider", "DmlExecutionProvider",
              "OpenVINOExecutionProvider", "CPUExecutionProvider")

_INSTALL_HINTS = {
    "CUDAExecutionProvider": "install the [gpu] extra (onnxruntime-gpu) and the CUDA/cuDNN it was built for: "
                             "onnxruntime-gpu >= 1.27 needs CUDA 13 + cuDNN 9 (CUDA 12 users: pin onnxruntime-gpu<=1.26)",
    "TensorrtExecutionProvider": "install onnxruntime-gpu and TensorRT's libnvinfer matching it",
    "CoreMLExecutionProvider": "use the onnxruntime wheel for macOS",
    "DmlExecutionProvider": "install onnxruntime-directml on Windows",
    "OpenVINOExecutionProvider": "install onnxruntime-openvino",
}


def _ort():
    try:
        import onnxruntime
    except ImportError:
        raise ImportError("deblur.runtime needs ONNX Runtime: pip install '.[cpu]' in the deblur-edge checkout "
                          "(or '.[gpu]' for CUDA; install exactly one of the two)") from None
    return onnxruntime


def available_providers() -> list[str]:
    return list(_ort().get_available_providers())


def physical_cores() -> int:
    """Physical cores: ORT's default of one thread per logical CPU oversubscribes SMT cores."""
    try:
        pairs = set()
        phys = core = None
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("physical id"):
                    phys = line.split(":")[1].strip()
                elif line.startswith("core id"):
                    core = line.split(":")[1].strip()
                    pairs.add((phys, core))
        if pairs:
            return max(1, min(len(pairs), len(os.sched_getaffinity(0))))
    except OSError:
        pass
    # No topology in /proc/cpuinfo (ARM boards such as Jetson or Raspberry Pi): no SMT there.
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


@dataclass(frozen=True)
class ProviderChoice:
    name: str  # ONNX Runtime provider name
    options: dict  # provider options


def resolve_provider(provider: str = "auto", *, device_id: int = 0, fixed_shapes: bool = True) -> ProviderChoice:
    """Map a user's provider request to one available provider, or raise ProviderError."""
    if not isinstance(provider, str):
        raise ProviderError(f"provider must be a name such as 'auto', 'cpu' or 'cuda', got {provider!r}")
    available = available_providers()
    wanted = provider.strip()
    if wanted.lower() == "auto":
        name = next(p for p in AUTO_ORDER if p in available or p == "CPUExecutionProvider")
        log.info("provider auto -> %s (available: %s)", name, ", ".join(available))
    else:
        name = ALIASES.get(wanted.lower(), wanted)
        if name == "AzureExecutionProvider":  # listed by every wheel: it calls remote endpoints
            raise ProviderError("AzureExecutionProvider calls models served on Azure; it does not run a local "
                                "model (ONNX Runtime would run this one on the CPU): use cpu, cuda or auto")
        if name not in available:
            known = ", ".join(sorted(ALIASES))
            hint = _INSTALL_HINTS.get(name, f"known names: auto, {known}")
            raise ProviderError(f"provider {provider!r} is not available in this onnxruntime "
                                f"(available: {', '.join(available)}); {hint}")
    return ProviderChoice(name, _provider_options(name, device_id, fixed_shapes))


def _provider_options(name: str, device_id: int, fixed_shapes: bool) -> dict:
    if name == "CUDAExecutionProvider":
        # device_id only when not the default: ORT >= 1.26 logs "No registered plugin EP device
        # found for 'CUDAExecutionProvider' with device_id=0" for every session that names it.
        return {
            **({"device_id": device_id} if device_id else {}),
            # EXHAUSTIVE benchmarks every cuDNN algorithm once per new input shape: it pays
            # off with fixed tile shapes, but re-tunes on every frame size in whole-image mode.
            "cudnn_conv_algo_search": "EXHAUSTIVE" if fixed_shapes else "HEURISTIC",
            "cudnn_conv_use_max_workspace": "1",
            "do_copy_in_default_stream": "1",
        }
    if name == "TensorrtExecutionProvider":
        return {"device_id": device_id, "trt_engine_cache_enable": "True", "trt_fp16_enable": "True"}
    return {}


def create_session(model_bytes_or_path, choice: ProviderChoice, *, threads: int | None = None):
    """An InferenceSession on exactly the chosen provider; a silent fallback is an error."""
    ort = _ort()
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # ORT's own warnings (cast insertion, ...) are noise for users
    if choice.name == "CPUExecutionProvider":
        options.intra_op_num_threads = threads or physical_cores()
    providers = [(choice.name, choice.options)]
    if choice.name != "CPUExecutionProvider":
        providers.append(("CPUExecutionProvider", {}))  # for the few ops the EP lacks
        preload_cuda_libraries(choice.name)
    try:
        session = ort.InferenceSession(model_bytes_or_path, options, providers=providers)
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
        first = first_line(exc)
        model_problem = any(s in first for s in ("protobuf", "Load model", "INVALID", "NOT_IMPLEMENTED", "ModelProto"))
        if model_problem or choice.name == "CPUExecutionProvider":
            raise ModelError(f"{model_bytes_or_path}: not a loadable ONNX model ({first}); "
                             "export one with deblur-export") from None
        raise ProviderError(_init_failure(choice.name, first)) from None
    active = session.get_providers()
    if active[0] != choice.name:
        # ORT logs and falls back to CPU when e.g. libcudnn is missing: make that loud.
        raise ProviderError(_init_failure(choice.name, f"ONNX Runtime fell back to {active[0]}"))
    return session


# Providers that run on an NVIDIA GPU: CUDA libraries to load, device memory to bind.
GPU_PROVIDERS = ("CUDAExecutionProvider", "TensorrtExecutionProvider")
_preload_tried = False


def preload_cuda_libraries(name: str) -> None:
    """Map pip-installed CUDA/cuDNN before a CUDA session, once, when the loader cannot find them.

    CUDA and cuDNN from PyPI (``onnxruntime-gpu[cuda,cudnn]``, or the nvidia-* wheels a CUDA
    torch brings) live in site-packages, off the loader's path: without this a user with a
    working GPU stack gets "libcublasLt.so.13: cannot open shared object file". ORT >= 1.21
    ships ``preload_dlls()`` for exactly that; it prints its failures, so they go to the log.
    """
    global _preload_tried
    ort = _ort()
    if _preload_tried or name not in GPU_PROVIDERS or not hasattr(ort, "preload_dlls"):
        return
    _preload_tried = True
    missing = provider_library_error(name)
    if missing is None:
        return
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            ort.preload_dlls()
    except Exception as exc:  # noqa: BLE001 - best effort; the session's own error follows
        log.debug("onnxruntime.preload_dlls() failed: %s", first_line(exc))
    log.debug("%s; onnxruntime.preload_dlls() -> %s", missing, printed.getvalue().strip() or "ok")


# The shared libraries ORT dlopens for a provider, by platform; the first one is loaded
# globally because the provider library resolves its symbols against it.
_PROVIDER_LIBRARIES = {
    "CUDAExecutionProvider": "onnxruntime_providers_cuda",
    "TensorrtExecutionProvider": "onnxruntime_providers_tensorrt",
    "OpenVINOExecutionProvider": "onnxruntime_providers_openvino",
}


def _init_failure(name: str, what: str) -> str:
    missing = provider_library_error(name)
    why = f"{missing}" if missing else f"{what} (a library it needs failed to load?)"
    return (f"{name} failed to initialise: {why}; {_INSTALL_HINTS.get(name, '')}. "
            "Use provider cpu (--provider cpu) to run on the CPU deliberately")


def provider_library_error(name: str, capi_dir: str | None = None) -> str | None:
    """Load a provider's shared library the way ORT does and say what is missing, if anything.

    ORT only logs this (``Failed to load library ... with error: libcudnn.so.9: cannot open
    shared object file``) and carries on with the CPU; loading it ourselves gets the name of
    the missing CUDA/cuDNN/TensorRT library into the error message.
    """
    import ctypes
    import sys

    stem = _PROVIDER_LIBRARIES.get(name)
    if stem is None:
        return None
    if capi_dir is None:
        capi_dir = os.path.join(os.path.dirname(_ort().__file__), "capi")
    prefix, suffix = ("", ".dll") if sys.platform == "win32" else ("lib", ".so")
    shared = os.path.join(capi_dir, f"{prefix}onnxruntime_providers_shared{suffix}")
    library = os.path.join(capi_dir, f"{prefix}{stem}{suffix}")
    if not os.path.exists(library):
        return f"{library} is missing: this onnxruntime build has no {name}"
    try:
        if os.path.exists(shared):
            ctypes.CDLL(shared, mode=getattr(ctypes, "RTLD_GLOBAL", 0))
        # winmode=0: search PATH as ORT's LoadLibrary does (Python's default skips it).
        ctypes.CDLL(library, **({"winmode": 0} if sys.platform == "win32" else {}))
    except OSError as exc:
        return f"loading {os.path.basename(library)} failed: {first_line(exc)}"
    return None
