"""What every benchmark writes: a plain-text table, JSON with the system and the settings, Markdown.

System facts are read, never assumed: the CPU model from ``/proc/cpuinfo``, the ONNX Runtime
version and providers from the module, and for CUDA the CUDA runtime / cuDNN libraries that
this process actually mapped (``/proc/self/maps``) once a CUDA session exists — the wheel's
build target and the libraries found at run time can differ, and only the latter matter.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import platform
import re
import resource
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterable, Sequence

from deblur.runtime.image_io import atomic_path
from deblur.runtime.providers import available_providers, physical_cores
from deblur.runtime.version import __version__

NA = "n/a"


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or NA


def _loaded_library_versions() -> dict[str, str]:
    # A mapped file like .../libcudart.so.13.0.96 or libcudnn.so.9 names the version loaded.
    found: dict[str, str] = {}
    try:
        with open("/proc/self/maps") as f:
            paths = {line.split()[-1] for line in f if ".so" in line}
    except OSError:
        return found
    for path in sorted(paths):
        name = os.path.basename(path)
        for key, prefix in (("cuda_runtime", "libcudart.so"), ("cudnn", "libcudnn.so"),
                            ("cublas", "libcublas.so"), ("tensorrt", "libnvinfer.so")):
            if name.startswith(prefix) and key not in found:
                version = name[len(prefix):].lstrip(".")
                found[key] = f"{version or 'unversioned'} ({path})"
    return found


def gpu_name() -> str:
    if not shutil.which("nvidia-smi"):
        return NA
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return NA
    return out.splitlines()[0] if out else NA


def gpu_memory_mb() -> float | None:
    """GPU memory this process holds (nvidia-smi per-process accounting), None if unknown."""
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-compute-apps=pid,used_memory", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    for line in out.splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 2 and parts[0] == str(os.getpid()) and parts[1].isdigit():
            return float(parts[1])
    return None


def system_info(provider: str | None = None, threads: int | None = None) -> dict[str, Any]:
    """Facts a reader needs to compare our numbers with theirs."""
    import onnxruntime

    info: dict[str, Any] = {
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "deblur_edge": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_model": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "physical_cores": physical_cores(),
        "threads": threads or physical_cores(),
        "onnxruntime": onnxruntime.__version__,
        "onnxruntime_providers": available_providers(),
        "provider": provider,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    cuda = any(p in (provider or "") for p in ("CUDAExecutionProvider", "TensorrtExecutionProvider"))
    libs = _loaded_library_versions() if cuda else {}
    info["gpu"] = gpu_name() if cuda else NA
    info["cuda_runtime_loaded"] = libs.get("cuda_runtime", NA)
    info["cudnn_loaded"] = libs.get("cudnn", NA)
    info["onnxruntime_built_for_cuda"] = _built_for_cuda()
    return info


def _built_for_cuda() -> str:
    # What the wheel was compiled against; *_loaded above is what this machine supplied.
    try:
        from onnxruntime.capi import build_and_package_info
    except ImportError:
        return NA
    return str(getattr(build_and_package_info, "cuda_version", None) or NA)


# -- memory -----------------------------------------------------------------------------
def reset_peak_rss() -> bool:
    """Reset this process's VmHWM (Linux >= 4.0: write 5 to clear_refs); False if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _proc_status_mb(field: str) -> float | None:
    """A memory field of /proc/self/status (kB there) in MiB; None where there is no /proc."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MiB (since the last ``reset_peak_rss``)."""
    peak = _proc_status_mb("VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def current_rss_mb() -> float:
    current = _proc_status_mb("VmRSS")
    return current if current is not None else float("nan")


# -- tables and files --------------------------------------------------------------------
def _cell(value: Any) -> str:
    if value is None:
        return NA
    if isinstance(value, float):
        if math.isnan(value):
            return NA
        if math.isinf(value):
            return "inf"
        return f"{value:.4f}" if abs(value) < 1 else f"{value:.2f}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """Fixed-width plain-text table of ``columns`` taken from each row."""
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max([len(c)] + [len(r[i]) for r in cells]) for i, c in enumerate(columns)]
    line = "  ".join(c.ljust(w) for c, w in zip(columns, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(v.rjust(w) if _numeric(v) else v.ljust(w) for v, w in zip(r, widths)) for r in cells]
    return "\n".join(out)


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    head = "| " + " | ".join(columns) + " |\n|" + "|".join("---" for _ in columns) + "|\n"
    return head + "\n".join("| " + " | ".join(_cell(r.get(c)) for c in columns) + " |" for r in rows) + "\n"


def _numeric(text: str) -> bool:
    return bool(re.fullmatch(r"[-+]?[\d.]+(e[-+]?\d+)?x?|inf|n/a", text))


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None if math.isnan(value) else ("inf" if value > 0 else "-inf")  # strict JSON has no inf
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _jsonable(value.item())
    return value


def write_json(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(_jsonable(payload), indent=2, allow_nan=False) + "\n")
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def output_paths(name: str, out_dir: str | os.PathLike | None, json_file: str | os.PathLike | None) -> dict[str, Path]:
    """Where a benchmark writes: ``--json FILE`` names the JSON (the rest go beside it); else ``DIR/name.*``."""
    if json_file is not None:
        base = Path(json_file)
        stem = base.with_suffix("")
        return {"json": base, "md": stem.with_suffix(".md"), "png": stem.with_suffix(".png"), "dir": base.parent}
    folder = Path(out_dir) if out_dir is not None else Path("bench-results")
    return {"json": folder / f"{name}.json", "md": folder / f"{name}.md", "png": folder / f"{name}.png", "dir": folder}


def system_markdown(system: dict[str, Any], settings: dict[str, Any]) -> str:
    keys = ("cpu_model", "physical_cores", "threads", "onnxruntime", "provider", "torch", "gpu",
            "cuda_runtime_loaded", "cudnn_loaded", "date_utc", "load_average")
    lines = [f"- {k}: {_cell(system.get(k)) if not isinstance(system.get(k), list) else system.get(k)}" for k in keys
             if k in system]
    lines.append(f"- settings: `{json.dumps(_jsonable(settings), sort_keys=True)}`")
    return "\n".join(lines) + "\n"


def percentile(values: Iterable[float], q: float) -> float:
    import numpy as np

    data = list(values)
    return float(np.percentile(data, q)) if data else float("nan")
