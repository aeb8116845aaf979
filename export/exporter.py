"""checkpoint -> simplified, checked ONNX file with the runtime's metadata."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path

import onnx

from deblur.runtime.atomic import atomic_path, check_can_write
from deblur.runtime.errors import ExportError, InputError, first_line
from deblur.runtime.model_info import ModelInfo
from deblur.runtime.tiling import padded_size
from deblur.runtime.version import __version__
from deblur.train.checkpoint import load_generator

from .analysis import count_gflops_per_megapixel, count_parameters, measure_receptive_field
from .parity import ParityResult, calibration_batches, check_parity, check_pixel_io
from .to_onnx import (OPSET, set_metadata, simplify, to_fp16, to_fp16_storage, to_int8, to_uint8_io,
                      torch_to_onnx)

log = logging.getLogger(__name__)

FP32_MAX_ABS = 1e-4  # in [-1, 1] units: float reassociation noise, nothing more
FP16_MIN_PSNR = 45.0  # dB against FP32 torch: invisible at 8 bits (1 grey level is ~48 dB)
# FP16 storage rounds only the weights: the default model lands at ~98 dB (max 0.1 grey level).
FP16_STORAGE_MIN_PSNR = 70.0
INT8_MIN_PSNR = 30.0  # dB: INT8 trades visible-on-inspection error for speed; below this it is broken
# --uint8-io vs the float graph: rounding ties only. A wrong rounding step (truncation) stays
# within 1 level too, but moves about half of all values.
UINT8_IO_MAX_LEVELS = 1
UINT8_IO_MAX_DIFFERING = 1e-3


@dataclass
class ExportReport:
    path: Path
    info: ModelInfo
    parameters: int
    file_bytes: int
    parity: list[ParityResult] = field(default_factory=list)
    fp16_blocked_ops: list[str] = field(default_factory=list)
    pixel_io: tuple[int, float] | None = None  # --uint8-io vs the float graph: max levels, fraction differing

    def summary(self) -> str:
        i = self.info
        lines = [
            f"wrote {self.path} ({self.file_bytes / 1e6:.2f} MB, {i.precision}"
            f"{', weights stored as ' + i.weight_storage if i.weight_storage else ''}, io {i.io_dtype}, opset {OPSET})",
            f"  {i.arch}({', '.join(f'{k}={v}' for k, v in i.arch_args.items())}): "
            f"{self.parameters / 1e6:.2f} M parameters, {i.gflops_per_megapixel:.1f} GFLOPs per megapixel",
            f"  receptive field {i.receptive_field} px -> tile context {i.tile_context} px; "
            f"size multiple {i.size_multiple}; input {i.channel_order} in {list(i.input_range)}",
        ]
        if self.fp16_blocked_ops:
            lines.append(f"  kept in FP32: {', '.join(self.fp16_blocked_ops)}")
        lines += [f"  parity vs torch FP32 at {r}" for r in self.parity]
        if self.pixel_io is not None:
            levels, differing = self.pixel_io
            lines.append(f"  uint8 NHWC BGR I/O in the graph: {differing:.4%} of values differ from the float "
                         f"graph's, by at most {levels} grey level(s)")
        if not self.parity:
            lines.append("  parity check skipped (--no-check)")
        return "\n".join(lines)


def export_checkpoint(checkpoint: str | os.PathLike, output: str | os.PathLike, *, fp16: bool = False,
                      fp16_io: bool = False, fp16_block_ops: list[str] | None = None, int8: bool = False,
                      fp16_storage: bool = False, uint8_io: bool = False, simplify_graph: bool = True,
                      check: bool = True, calibration: str | os.PathLike | None = None) -> ExportReport:
    """Export a generator checkpoint to ONNX; nothing is written unless every check passes.
    ``calibration``: a folder of photos like the ones the INT8 model will see (default: the
    bundled photo)."""
    output = Path(output)
    if fp16 and int8:
        raise InputError("choose one of --fp16 and --int8")
    if calibration is not None and not int8:
        raise InputError("--calibration photos calibrate an --int8 export; this export is not --int8")
    photos = _calibration_photos(Path(calibration)) if calibration is not None else None
    if fp16_storage and (fp16 or int8):
        raise InputError("--fp16-storage is for FP32 models (FP16 weights in the file, FP32 compute); "
                         "--fp16 and --int8 models store their weights in their own precision already")
    if fp16_io and not fp16:
        raise InputError("--fp16-io needs --fp16 (an FP32 model has FP32 inputs)")
    if fp16_io and uint8_io:
        raise InputError("choose one of --fp16-io and --uint8-io (with --uint8-io the graph converts pixels "
                         "to the model's precision itself)")
    if output.suffix.lower() != ".onnx":
        raise InputError(f"{output}: the output file should end in .onnx")
    if output.exists() and output.is_dir():
        raise InputError(f"{output}: is a directory; give a file name such as {output / 'model.onnx'}")
    check_can_write(output)  # before a minute of export and checks
    if fp16_block_ops and not fp16:
        raise InputError("--fp16-block-op keeps ops of an --fp16 export in FP32; this export is not --fp16")
    loaded = load_generator(checkpoint)
    model = loaded.model
    size_multiple = int(getattr(model, "size_multiple", 1))
    receptive_field = measure_receptive_field(model)
    info = ModelInfo(
        input_range=tuple(getattr(model, "input_range", (-1.0, 1.0))),
        channel_order=getattr(model, "channel_order", "RGB"),
        size_multiple=size_multiple,
        tile_context=padded_size(receptive_field // 2, size_multiple),
        receptive_field=receptive_field,
        precision="fp16" if fp16 else "int8" if int8 else "fp32",
        io_dtype="float16" if fp16_io else "float32",
        normalization="instance" if "InstanceNorm" in repr(model) else "none",
        arch=loaded.arch,
        arch_args=loaded.arch_args,
        toolkit_version=__version__,
        source_sha256=loaded.sha256,
        # A fine-tuned run counts its own steps; the model's training includes its start's.
        train_step=loaded.meta.get("total_steps", loaded.step),
        gflops_per_megapixel=round(count_gflops_per_megapixel(model), 2),
        weight_storage="fp16" if fp16_storage else None,
        has_metadata=True,
    )
    # Traced and simplified at multiples of the size multiple: a U-Net traced at 64 px (not a
    # multiple of its 256) baked its eager-mode padding into the graph, one of 32 did not.
    trace, test = (padded_size(side, size_multiple) for side in (64, 256))
    proto = torch_to_onnx(model, sample_size=(trace, trace))
    if simplify_graph:
        proto = simplify(proto, test_size=(test, test))
    fp32_proto = proto
    parity: list[ParityResult] = []
    blocked: list[str] = []
    if fp16_block_ops:
        present = {node.op_type for node in fp32_proto.graph.node}
        unknown = sorted(set(fp16_block_ops) - present)
        if unknown:
            raise InputError(f"--fp16-block-op {', '.join(unknown)}: no such op in this model; its op types: "
                             f"{', '.join(sorted(present))}")
    if fp16:
        # Try plain FP16 first; keep InstanceNorm in FP32 only if measurement says so.
        # Op types the user names are kept in FP32 from the start.
        ladder = [list(fp16_block_ops)] if fp16_block_ops else [[], ["InstanceNormalization"]]
        for blocked in ladder:
            proto = to_fp16(fp32_proto, fp16_io=fp16_io, block_ops=blocked)
            if not check:
                break
            parity = _parity(model, proto, info)
            if not _below(parity, FP16_MIN_PSNR):
                break
        else:
            raise ExportError(f"FP16 model is below {FP16_MIN_PSNR} dB PSNR against FP32 torch even with "
                              f"{', '.join(blocked)} in FP32: " + "; ".join(map(str, parity)) +
                              ". Export FP32 instead or pass --fp16-block-op for other op types")
    elif int8:
        try:
            proto = to_int8(fp32_proto, calibration_batches(info.input_range, info.channel_order,
                                                            count=max(8, min(64, 2 * len(photos or []))),
                                                            photos=photos))
        except (AssertionError, ValueError, RuntimeError) as exc:  # the quantiser's own checks
            raise ExportError(f"INT8 quantisation failed ({first_line(exc) or type(exc).__name__}); export FP32 "
                              "(or FP16 for GPUs) instead") from exc
        if check:  # on the kind of photo it was calibrated for
            parity = _parity(model, proto, info, photos[0] if photos else None)
            if _below(parity, INT8_MIN_PSNR):
                raise ExportError(f"INT8 model is below {INT8_MIN_PSNR} dB PSNR against FP32 torch: "
                                  + "; ".join(map(str, parity)) + ". Use FP32 (or FP16 on GPU) for this model")
    elif check:
        parity = _parity(model, proto, info)
        worst = max(r.max_abs for r in parity)
        if any(not r.max_abs <= FP32_MAX_ABS for r in parity):  # NaN-safe: a NaN difference fails
            raise ExportError(f"ONNX output differs from torch by {worst:.2e} > {FP32_MAX_ABS:.0e}: "
                              + "; ".join(map(str, parity)) + ". Try --no-simplify; report the checkpoint")
    if fp16_storage:
        proto = to_fp16_storage(proto)
        if check:
            parity = _parity(model, proto, info)
            if _below(parity, FP16_STORAGE_MIN_PSNR):
                raise ExportError(f"with FP16 weight storage the model is below {FP16_STORAGE_MIN_PSNR} dB PSNR "
                                  "against FP32 torch: " + "; ".join(map(str, parity))
                                  + ". Export without --fp16-storage")
    pixel_io = None
    if uint8_io:
        float_proto = proto
        proto = to_uint8_io(float_proto, input_range=info.input_range, channel_order=info.channel_order)
        if check:
            pixel_io = check_pixel_io(float_proto, proto, input_range=info.input_range,
                                      channel_order=info.channel_order, size_multiple=info.size_multiple)
            levels, differing = pixel_io
            if levels > UINT8_IO_MAX_LEVELS or differing > UINT8_IO_MAX_DIFFERING:
                raise ExportError(f"the uint8-I/O graph differs from the float one in {differing:.2%} of values, by up "
                                  f"to {levels} grey levels (allowed: {UINT8_IO_MAX_DIFFERING:.1%}, "
                                  f"{UINT8_IO_MAX_LEVELS}); export without --uint8-io and report the model")
        # The graph now takes what OpenCV gives: pixel values 0..255, BGR, channels last.
        info = replace(info, input_range=(0.0, 255.0), channel_order="BGR", io_dtype="uint8", io_layout="NHWC")
    set_metadata(proto, info.to_metadata())
    proto.producer_name, proto.producer_version = "deblur-edge", __version__
    with atomic_path(output) as tmp:
        onnx.save(proto, tmp)
    return ExportReport(output, info, count_parameters(model), output.stat().st_size, parity, blocked,
                        pixel_io)


def _calibration_photos(folder: Path, most: int = 32) -> list:
    """Up to ``most`` photos of ``folder`` (recursively, sorted), as BGR uint8."""
    from deblur.runtime.image_io import IMAGE_SUFFIXES, as_bgr8, read_image

    if not folder.is_dir():
        raise InputError(f"{folder}: --calibration needs a folder of photos")
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())[:most]
    photos = [as_bgr8(read_image(path)) for path in paths]
    if not photos:
        raise InputError(f"{folder}: no photos for --calibration ({', '.join(IMAGE_SUFFIXES)})")
    return photos


def _below(parity: list, floor: float) -> bool:
    """Any size under ``floor`` dB, NaN included (it compares false with everything: min() and
    ``<`` would let a NaN model through)."""
    return any(not r.psnr_db >= floor for r in parity)


def _parity(model, proto: onnx.ModelProto, info: ModelInfo, photo=None) -> list[ParityResult]:
    return check_parity(model, proto, input_range=info.input_range, channel_order=info.channel_order,
                        size_multiple=info.size_multiple, photo=photo)
