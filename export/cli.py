"""``deblur-export``: checkpoint -> simplified ONNX. Parses, calls the library, reports."""

from __future__ import annotations

from pathlib import Path

import click

from deblur.runtime.errors import InputError, report_errors, setup_logging
from deblur.runtime.version import __version__


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("checkpoint", type=click.Path(readable=False, path_type=str))
@click.argument("output", type=click.Path(path_type=str))
@click.option("--fp16", is_flag=True, help="FP16 weights and compute (FP32 inputs/outputs unless --fp16-io). "
              "For GPUs; on CPUs FP16 is no faster than FP32.")
@click.option("--fp16-storage", is_flag=True, help="FP32 compute, FP16 weights in the file: half the size, "
              "the same speed and nearly the same output (ONNX Runtime casts the weights back when it loads the "
              "model; the default model stays within 0.1 grey level, the check requires >= 70 dB). For shipping "
              "FP32 models; not with --fp16 or --int8.")
@click.option("--fp16-io", is_flag=True, help="With --fp16: FP16 inputs and outputs too. The model runs 1.2x faster on "
              "a GPU, but from Python, NumPy's float16 conversion costs more than that: for pipelines that keep "
              "tensors on the GPU.")
@click.option("--uint8-io", is_flag=True, help="uint8 BGR pixels in and out, channels last (as OpenCV holds "
              "images): scaling, channel order and layout are converted inside the graph (on the GPU with CUDA) "
              "instead of in NumPy, and a quarter of the bytes cross to the device. For GPU inference; with any "
              "precision, not with --fp16-io.")
@click.option("--fp16-block-op", "fp16_block_ops", multiple=True, metavar="OP",
              help="Keep this ONNX op type in FP32 (repeatable). Default: InstanceNormalization only "
                   "if plain FP16 fails the parity check.")
@click.option("--int8", is_flag=True, help="Static INT8 quantisation (QDQ, per-channel), calibrated on "
              "blurred crops of a bundled photo (or --calibration); faster on CPUs with VNNI, must stay >= 30 dB "
              "vs FP32.")
@click.option("--calibration", type=click.Path(readable=False), default=None, metavar="DIR",
              help="With --int8: calibrate on blurred crops of these photos (up to 32; the kind the model will "
                   "see) instead of the bundled one; the 30 dB check then runs on the first of them.")
@click.option("--overwrite", is_flag=True, help="Replace OUTPUT if it exists (otherwise an error, as deblur-run's).")
@click.option("--no-simplify", is_flag=True, help="Skip onnxsim graph simplification.")
@click.option("--no-check", is_flag=True, help="Skip the torch-vs-ONNX parity check on a real photo.")
@click.option("-v", "--verbose", is_flag=True, help="More logging.")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(__version__, "-V", "--version", prog_name="deblur-export")
@report_errors
def main(checkpoint: str, output: str, fp16: bool, fp16_storage: bool, fp16_io: bool,
         fp16_block_ops: tuple[str, ...], int8: bool, calibration: str | None, uint8_io: bool, overwrite: bool,
         no_simplify: bool, no_check: bool, verbose: bool, debug: bool) -> None:
    """Export a generator CHECKPOINT (ours, or a DeblurGAN latest_net_G.pth, or a pix2pix
    U-Net) to OUTPUT.onnx.

    The ONNX model has dynamic batch, height and width (multiples of its size multiple,
    deblur.size_multiple in its metadata; the runtime pads other sizes), is simplified with onnxsim, carries
    the runtime's preprocessing contract in its metadata, and is checked against PyTorch on
    a real photo at two sizes: FP32 must agree to 1e-4, FP16 storage to 70 dB PSNR, FP16 to
    45 dB, INT8 to 30 dB, else exit 1 and nothing is written. Bad inputs exit 2.

    \b
    Examples:
      deblur-export runs/x/checkpoints/latest.pt model.onnx
      deblur-export latest_net_G.pth model_fp16.onnx --fp16
      deblur-export ckpt.pt model_gpu.onnx --uint8-io
    """
    setup_logging(verbose)
    if not overwrite and Path(output).is_file():
        # A re-export of the same checkpoint is one flag away; a model someone ships is not lost.
        raise InputError(f"{output}: exists; pass --overwrite to replace it")
    from deblur.export.exporter import export_checkpoint  # torch import: only when asked to run

    report = export_checkpoint(checkpoint, output, fp16=fp16, fp16_io=fp16_io,
                               fp16_block_ops=list(fp16_block_ops) or None, int8=int8,
                               fp16_storage=fp16_storage, uint8_io=uint8_io,
                               simplify_graph=not no_simplify, check=not no_check, calibration=calibration)
    click.echo(report.summary())
