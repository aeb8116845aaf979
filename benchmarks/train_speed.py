"""Training-step speed of a generator under the layouts/compilers a GPU session may use.

A rented GPU gives minutes, and every minute's steps are quality (``experiments.md``: a
leg's gain comes from its step count). Before spending them, this times the step that the
default-model recipe runs (generator forward, content loss, backward, Adam; no critic, as
``--adv-weight 0``) in each variant, interleaved like the latency benchmark:

* ``eager``: as ``deblur-train`` runs by default (cuDNN autotuning on, as the trainer sets on CUDA);
* ``channels_last``: NHWC weights and batches (``--channels-last``): tensor-core convolutions
  want NHWC, and NCHW pays transposes around them;
* ``compile``: ``torch.compile`` of the generator (``--compile``), which can fuse InstanceNorm,
  ReLU and the residual adds; ``first_step_s`` shows what the compilation costs;
* ``compile+channels_last``: both.

Random tensors stand in for the data: a step's cost does not depend on the pixels, and the
data loader's pace is a separate question (``calibration.txt`` of ``gpu_session.sh``).
torch is imported inside :func:`run_train_speed` only, like every torch use in benchmarks.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from deblur.runtime.errors import InputError, install_hint

from . import report
from .latency import time_interleaved

VARIANTS = ("eager", "channels_last", "compile", "compile+channels_last")
COLUMNS = ["variant", "device", "dtype", "batch", "crop", "p50_ms", "p95_ms", "steps_per_s", "mp_per_s",
           "speedup_vs_eager", "first_step_s", "peak_gpu_mem_mb"]


@dataclass
class TrainSpeedSettings:
    ngf: int = 32
    n_blocks: int = 6
    checkpoint: str | None = None  # take the architecture (not the weights' values) from here
    batch_size: int = 32
    crop: int = 256
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = True  # bf16 autocast, as gpu_session.sh trains
    content: str = "l1+fft"
    variants: list[str] = field(default_factory=lambda: ["eager", "channels_last"])
    warmup: int = 3
    runs: int = 20
    threads: int | None = None


def _arch(settings: TrainSpeedSettings) -> tuple[str, dict]:
    if settings.checkpoint is None:
        return "resnet_generator", {"ngf": settings.ngf, "n_blocks": settings.n_blocks, "dropout": False}
    from deblur.train.checkpoint import load_generator

    loaded = load_generator(settings.checkpoint)
    return loaded.arch, {**loaded.arch_args, "dropout": False}


def _step_fn(torch, variant: str, arch: str, arch_args: dict, settings: TrainSpeedSettings,
             device, dtype) -> Callable[[], None]:
    from deblur.train.losses import build_content_loss
    from deblur.train.models import create_generator

    torch.manual_seed(0)
    channels_last = "channels_last" in variant
    layout = torch.channels_last if channels_last else torch.contiguous_format
    model = create_generator(arch, **arch_args).to(device, memory_format=layout).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.5, 0.999))
    loss_fn = build_content_loss(settings.content).to(device)
    shape = (settings.batch_size, 3, settings.crop, settings.crop)
    blurred = (torch.rand(shape, device=device) * 2 - 1).contiguous(memory_format=layout)
    sharp = (torch.rand(shape, device=device) * 2 - 1).contiguous(memory_format=layout)
    forward = torch.compile(model) if variant.startswith("compile") else model

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            restored = forward(blurred)
            loss = loss_fn(restored.float(), sharp)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()  # the time of the kernels, not of queueing them
    return step


def run_train_speed(settings: TrainSpeedSettings) -> dict[str, Any]:
    """Time every variant; returns the JSON payload (system, settings, rows)."""
    unknown = [v for v in settings.variants if v not in VARIANTS]
    if unknown or not settings.variants:
        raise InputError(f"--variant {', '.join(unknown) or '(none)'}: choose from {', '.join(VARIANTS)}")
    if settings.batch_size < 1:
        raise InputError(f"--batch-size must be >= 1 (got {settings.batch_size})")
    try:
        import torch
    except ImportError:
        raise InputError(f"train-speed needs PyTorch: {install_hint('torch', 'deblur-train')}") from None
    from deblur.train.distributed import pick_device

    if settings.device == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device cuda: this PyTorch build sees no CUDA GPU (torch {torch.__version__})")
    device = pick_device(settings.device, 0)
    if settings.threads:
        torch.set_num_threads(settings.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as the trainer: fixed shapes, tuned once
    from deblur.train.config import TrainConfig, TrainError
    from deblur.train.trainer import _amp_dtype

    try:  # the trainer's choice: bf16, fp16 on GPUs without bf16, refused on CPUs that emulate it
        dtype = _amp_dtype(TrainConfig(amp=settings.amp), device)
    except TrainError as exc:
        raise InputError(f"{exc} (here: pass --no-amp)") from None

    dtype_name = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[dtype]
    arch, arch_args = _arch(settings)
    from deblur.train.models import check_crop, create_generator

    try:  # the trainer's rule: 4 for the ResNet generator, 8 with a coarse branch, 2^depth for a U-Net
        check_crop(create_generator(arch, **arch_args), settings.crop)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    steps, first, peak = {}, {}, {}
    for variant in settings.variants:
        if device.type == "cuda":  # before this variant's model and batch exist, so they count
            torch.cuda.reset_peak_memory_stats()
            held = torch.cuda.memory_allocated()  # the earlier variants', still alive to interleave
        steps[variant] = _step_fn(torch, variant, arch, arch_args, settings, device, dtype)
        start = time.perf_counter()
        steps[variant]()  # compiles (compile variants) and tunes cuDNN: reported, not timed below
        first[variant] = time.perf_counter() - start
        # This variant's own peak over its first step: model, Adam state, batch, activations.
        peak[variant] = (torch.cuda.max_memory_allocated() - held) / 2**20 if device.type == "cuda" else None
    times = time_interleaved(steps, warmup=settings.warmup, runs=settings.runs)

    megapixels = settings.batch_size * settings.crop ** 2 / 1e6
    rows = []
    for variant in settings.variants:
        p50 = report.percentile(times[variant], 50)
        rows.append({"variant": variant, "device": str(device), "dtype": dtype_name,
                     "batch": settings.batch_size, "crop": settings.crop, "runs": len(times[variant]),
                     "p50_ms": p50 * 1e3, "p95_ms": report.percentile(times[variant], 95) * 1e3,
                     "steps_per_s": 1.0 / p50, "mp_per_s": megapixels / p50, "first_step_s": first[variant],
                     "peak_gpu_mem_mb": peak[variant]})
    eager = next((r["p50_ms"] for r in rows if r["variant"] == "eager"), None)
    for row in rows:
        row["speedup_vs_eager"] = eager / row["p50_ms"] if eager else None
    system = report.system_info(threads=torch.get_num_threads())  # torch's threads: what the steps used
    system.update(torch=torch.__version__, torch_cuda=torch.version.cuda or "n/a",
                  gpu=torch.cuda.get_device_name(0) if device.type == "cuda" else "n/a",
                  torch_threads=torch.get_num_threads())
    return {"benchmark": "train_speed", "system": system,
            "settings": {**asdict(settings), "arch": arch, "arch_args": arch_args}, "rows": rows}
