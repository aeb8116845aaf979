"""``deblur-bench``: latency | video | tiling | quality | train-speed. Parse, run the benchmark, print, write."""

from __future__ import annotations

import functools
import signal
from typing import Any, Callable

import click

from deblur.runtime.errors import report_errors, setup_logging
from deblur.runtime.version import __version__


def _check_output(out_dir: str | None, json_file: str | None, **_: Any) -> None:
    """Before minutes of measuring: results that could not be written would be lost."""
    from pathlib import Path

    from deblur.runtime.atomic import check_can_write
    from deblur.runtime.errors import InputError

    if out_dir is not None and json_file is not None:
        raise InputError("--out and --json both say where results go; pass one")
    if json_file is not None and Path(json_file).suffix.lower() != ".json":
        raise InputError(f"--json {json_file}: name a .json file (the Markdown and plot go beside it, with their "
                         "own suffixes)")
    check_can_write(json_file or Path(out_dir or "bench-results") / "results.json")


def _stop_on_sigterm(*_: Any) -> None:
    # As Ctrl-C: temporary clips and half-written files are cleaned up on the way out.
    raise KeyboardInterrupt


def _common(func: Callable) -> Callable:
    """Output and logging options every subcommand shares; the output place is checked first."""

    @functools.wraps(func)
    def checked(*args: Any, **kwargs: Any) -> Any:
        report_errors(_check_output)(**kwargs)
        signal.signal(signal.SIGTERM, _stop_on_sigterm)
        return func(*args, **kwargs)

    options = [
        click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
                     help="Folder for NAME.json / NAME.md (/ NAME.png) [default: ./bench-results]."),
        click.option("--json", "json_file", type=click.Path(dir_okay=False, readable=False), default=None,
                     help="Write the JSON here instead (Markdown/PNG beside it)."),
        click.option("-q", "--quiet", is_flag=True, help="Only the table, no progress messages."),
        click.option("-v", "--verbose", is_flag=True, help="Debug logging."),
        click.option("--debug", is_flag=True, help="Tracebacks instead of one-line errors."),
    ]
    for option in reversed(options):
        checked = option(checked)
    return checked


def _split(values: tuple[str, ...]) -> list[str]:
    """Repeated options and comma lists both work: ``--size 720p --size 1080p`` == ``--size 720p,1080p``."""
    return [v.strip() for value in values for v in value.split(",") if v.strip()]


def _ints(values: tuple[str, ...], name: str) -> list[int]:
    from deblur.runtime.errors import InputError

    try:
        return [int(v) for v in _split(values)]
    except ValueError:
        raise InputError(f"{name} takes integers, got {', '.join(values)}") from None


def _emit(name: str, payload: dict[str, Any], rows: list[dict[str, Any]], columns: list[str], out_dir, json_file,
          image=None, extra_md: str = "", quiet: bool = False) -> None:
    from . import report
    from deblur.runtime.image_io import write_image

    click.echo(report.format_table(rows, columns))
    paths = report.output_paths(name, out_dir, json_file)
    report.write_json(paths["json"], payload)
    md = (f"# deblur-bench {name}\n\n" + report.system_markdown(payload["system"], payload["settings"]) + "\n"
          + report.markdown_table(rows, columns) + extra_md)
    report.write_text(paths["md"], md)
    written = [paths["json"], paths["md"]]
    if image is not None:
        written.append(write_image(paths["png"], image))
    if not quiet:
        click.echo("wrote " + ", ".join(str(p) for p in written), err=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "-V", "--version", prog_name="deblur-bench")
def main() -> None:
    """Benchmarks that print tables and write JSON + Markdown: latency, video, tiling, quality, train-speed."""


@main.command()
@click.option("-m", "--model", "models", multiple=True, required=True, type=click.Path(readable=False), help="ONNX model (repeatable).")
@click.option("-p", "--provider", "providers", multiple=True, default=("cpu",), show_default=True,
              help="Provider(s), comma-separated or repeated.")
@click.option("-s", "--size", "sizes", multiple=True, default=("256,480p,720p,1080p",), show_default=True,
              help="256, 480p, 720p, 1080p, 4k or WxH; comma-separated or repeated.")
@click.option("--tile", "tiles", multiple=True, default=("0",), show_default=True, help="Tile side(s); 0 = whole image.")
@click.option("--overlap", type=click.IntRange(min=0), default=None, help="Tile context [default: the model's].")
@click.option("--tile-batch", type=click.IntRange(min=1), default=1, show_default=True,
              help='Tiles per model call (deblur-run --tile-batch).')
@click.option("--warmup", type=click.IntRange(min=0), default=2, show_default=True, help="Untimed runs per variant first.")
@click.option("-n", "--runs", type=click.IntRange(min=1), default=10, show_default=True, help="Timed runs per variant.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads [default: physical cores].")
@click.option("--torch", "torch_checkpoint", type=click.Path(readable=False), default=None,
              help="Checkpoint the models were exported from: adds a PyTorch eager baseline row.")
@click.option("--torch-device", type=click.Choice(["cpu", "cuda"]), default="cpu", show_default=True,
              help="Device of the --torch baseline; compared with the provider of the same name.")
@click.option("--photo", type=click.Path(readable=False), default=None, help="Input photo [default: bundled astronaut].")
@click.option("--plot/--no-plot", default=True, show_default=True, help="Also write a latency-vs-resolution PNG.")
@_common
@report_errors
def latency(models, providers, sizes, tiles, overlap, tile_batch, warmup, runs, threads, torch_checkpoint, torch_device,
            photo, plot,
            out_dir, json_file, quiet, verbose, debug) -> None:
    """p50/p95 latency, fps, MP/s and GFLOP/s of the runtime path and bare session.run."""
    setup_logging(verbose, quiet)
    from .latency import COLUMNS, LatencySettings, run_latency, short_rows

    settings = LatencySettings(models=list(models), providers=_split(providers), sizes=_split(sizes),
                               tiles=_ints(tiles, "--tile"), overlap=overlap, tile_batch=tile_batch, warmup=warmup,
                               runs=runs, threads=threads, torch_checkpoint=torch_checkpoint,
                               torch_device=torch_device, photo=photo)
    payload = run_latency(settings)
    image = None
    if plot:
        from .plot import latency_plot

        image = latency_plot(payload["rows"])
    _emit("latency", payload, short_rows(payload["rows"]), COLUMNS, out_dir, json_file, image, quiet=quiet)


@main.command()
@click.option("-m", "--model", required=True, type=click.Path(readable=False),
              help='ONNX model.')
@click.option("-p", "--provider", default="cpu", show_default=True,
              help='Execution provider: cpu, cuda, ... (deblur-run --provider).')
@click.option("-s", "--size", default="480p", show_default=True, help="Frame size: named or WxH.")
@click.option("--frames", type=click.IntRange(min=2), default=30, show_default=True, help="Frames in the generated clip.")
@click.option("--repeats", type=click.IntRange(min=1), default=3, show_default=True, help="Pipeline / model-only pass pairs (medians).")
@click.option("--tile", type=click.IntRange(min=0), default=0, show_default=True,
              help='Tile side; 0 = whole frames.')
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help='CPU threads [default: physical cores].')
@_common
@report_errors
def video(model, provider, size, frames, repeats, tile, threads, out_dir, json_file, quiet, verbose, debug) -> None:
    """End-to-end frames/s of the deblur-run video path vs the model alone on the same frames."""
    setup_logging(verbose, quiet)
    from .latency import short_rows
    from .video_bench import COLUMNS, VideoSettings, run_video

    payload = run_video(VideoSettings(model=model, provider=provider, size=size, frames=frames, repeats=repeats,
                                      tile=tile, threads=threads))
    _emit("video", payload, short_rows(payload["rows"]), COLUMNS, out_dir, json_file, quiet=quiet)


@main.command()
@click.option("-m", "--model", required=True, type=click.Path(readable=False),
              help='ONNX model.')
@click.option("-p", "--provider", default="cpu", show_default=True,
              help='Execution provider: cpu, cuda, ... (deblur-run --provider).')
@click.option("-s", "--size", "sizes", multiple=True, default=("1080p,4k",), show_default=True,
              help='1080p, 4k, WxH or N (NxN); comma-separated or repeated.')
@click.option("--tile", "tiles", multiple=True, default=("512,768,1024",), show_default=True,
              help='Tile side(s) to compare with the whole image.')
@click.option("--overlap", "overlaps", multiple=True, default=(), help="Overlap(s) [default: the model's tile context].")
@click.option("--blend", type=click.IntRange(min=0), default=32, show_default=True,
              help='Cross-fade width between tiles, px.')
@click.option("--warmup", type=click.IntRange(min=0), default=1, show_default=True,
              help='Untimed runs per configuration first.')
@click.option("-n", "--runs", type=click.IntRange(min=1), default=3, show_default=True,
              help='Timed runs per configuration.')
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help='CPU threads [default: physical cores].')
@click.option("--photo", type=click.Path(readable=False), default=None, help="Photo to scale to each size [default: bundled astronaut].")
@click.option("--memory/--no-memory", default=True, show_default=True, help="Peak RSS per config (one subprocess each).")
@_common
@report_errors
def tiling(model, provider, sizes, tiles, overlaps, blend, warmup, runs, threads, photo, memory, out_dir, json_file,
           quiet, verbose, debug) -> None:
    """Tiled vs whole-image PSNR, time and peak memory per tile size and overlap."""
    setup_logging(verbose, quiet)
    from .tiling_bench import COLUMNS, TilingSettings, run_tiling

    settings = TilingSettings(model=model, provider=provider, sizes=_split(sizes), tiles=_ints(tiles, "--tile"),
                              overlaps=_ints(overlaps, "--overlap") or [None], blend=blend, warmup=warmup, runs=runs,
                              threads=threads, photo=photo, memory=memory)
    payload = run_tiling(settings)
    _emit("tiling", payload, payload["rows"], COLUMNS, out_dir, json_file, quiet=quiet)


@main.command()
@click.option("-d", "--data", multiple=True, required=True, type=click.Path(readable=False),
              help="Folder of sharp photos, or GoPro layout (*/blur, */sharp); repeatable.")
@click.option("-m", "--model", "models", multiple=True, type=click.Path(readable=False), help="ONNX model (repeatable).")
@click.option("-p", "--provider", default="cpu", show_default=True,
              help='Execution provider: cpu, cuda, ... (deblur-run --provider).')
@click.option("--condition", type=click.Choice(["noise_jpeg", "clean", "both"]), default="noise_jpeg", show_default=True,
              help="Synthetic degradation: blur + noise/JPEG as in training, blur only, or both.")
@click.option("--seed", default=0, show_default=True, help="Blur seed; each image's generator is (seed, crc32(folder/file)).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="First N images of each folder.")
@click.option("--max-side", type=click.IntRange(min=64), default=None, help="Downscale larger images to this side first.")
@click.option("--crop-border", type=click.IntRange(min=0), default=15, show_default=True,
              help='Pixels cropped from each side before PSNR/SSIM (deconvolution edge effects).')
@click.option("--on", type=click.Choice(["rgb", "y"]), default="rgb", show_default=True,
              help='Measure on RGB, or on luma (Y of YCbCr) as super-resolution papers do.')
@click.option("--baseline", "baselines", multiple=True, default=("identity,wiener,richardson_lucy",), show_default=True,
              help='Classical rows: identity (the blurred input), wiener, richardson_lucy (given the true '
                   'kernel); comma list, "" for none.')
@click.option("--tile", type=click.IntRange(min=0), default=0, show_default=True,
              help="Tile side for the models; 0 = whole image (the quality reference).")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help='CPU threads [default: physical cores].')
@click.option("--self-ensemble", type=click.Choice(["1", "2", "4", "8"]), default="1", show_default=True,
              callback=lambda ctx, p, v: int(v), help="Run the models with deblur-run's --self-ensemble N.")
@_common
@report_errors
def quality(data, models, provider, condition, seed, limit, max_side, crop_border, on, baselines, tile, threads,
            self_ensemble, out_dir, json_file, quiet, verbose, debug) -> None:
    """PSNR/SSIM per image and mean: models vs identity, Wiener and Richardson-Lucy (true kernel)."""
    setup_logging(verbose, quiet)
    from pathlib import Path

    from deblur.runtime.errors import InputError

    from .quality import COLUMNS, QualitySettings, run_quality

    if not models and not _split(baselines):
        raise InputError("nothing to measure: pass -m MODEL and/or --baseline (identity, wiener, richardson_lucy)")
    names = [Path(folder).absolute().name for folder in data]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        # Images are named (and their blur seeded) by folder/file: two folders of one name would collide.
        raise InputError(f"-d: two folders named {', '.join(twice)}; their images would share names and blur "
                         "seeds (rename or link one)")
    conditions = ["noise_jpeg", "clean"] if condition == "both" else [condition]
    settings = QualitySettings(data=list(data), models=list(models), provider=provider, conditions=conditions, seed=seed,
                               limit=limit, max_side=max_side, crop_border=crop_border, on=on,
                               baselines=_split(baselines), tile=tile, threads=threads,
                               self_ensemble=self_ensemble)
    payload, sheet = run_quality(settings)
    from .report import markdown_table

    per_image = "\n## Per image\n\n" + markdown_table(payload["per_image"], ["condition", "image", "method", "psnr", "ssim", "seconds"])
    _emit("quality", payload, payload["summary"], COLUMNS, out_dir, json_file, sheet, per_image, quiet=quiet)


@main.command("train-speed")
@click.option("--ngf", type=click.IntRange(min=1), default=32, show_default=True, help="Generator width (ResNet generator).")
@click.option("--n-blocks", type=click.IntRange(min=0), default=6, show_default=True, help="ResNet blocks.")
@click.option("--checkpoint", type=click.Path(readable=False), default=None,
              help="Take the architecture from this checkpoint instead of --ngf/--n-blocks.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
              help='Images per training step.')
@click.option("--crop", type=click.IntRange(min=16), default=256, show_default=True,
              help='Training crop side, px.')
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), default="auto", show_default=True,
              help='auto: CUDA if torch sees a GPU, else the CPU.')
@click.option("--amp/--no-amp", default=True, show_default=True, help="bf16 autocast, as gpu_session.sh trains.")
@click.option("--content", type=click.Choice(["l1", "l1+fft", "mse"]), default="l1+fft", show_default=True,
              help='Content loss, as deblur-train --content.')
@click.option("--variant", "variants", multiple=True, default=("eager,channels_last",), show_default=True,
              help="eager, channels_last, compile, compile+channels_last (comma list or repeated).")
@click.option("--warmup", type=click.IntRange(min=0), default=3, show_default=True,
              help='Untimed steps per variant first (compile happens here).')
@click.option("-n", "--runs", type=click.IntRange(min=1), default=20, show_default=True,
              help='Timed steps per variant.')
@click.option("--threads", type=click.IntRange(min=1), default=None, help="torch threads on the CPU [default: torch's].")
@_common
@report_errors
def train_speed(ngf, n_blocks, checkpoint, batch_size, crop, device, amp, content, variants, warmup, runs, threads,
                out_dir, json_file, quiet, verbose, debug) -> None:
    """Seconds per training step (generator + content loss + Adam) per memory layout / torch.compile."""
    setup_logging(verbose, quiet)
    from .train_speed import COLUMNS, TrainSpeedSettings, run_train_speed

    settings = TrainSpeedSettings(ngf=ngf, n_blocks=n_blocks, checkpoint=checkpoint, batch_size=batch_size, crop=crop,
                                  device=device, amp=amp, content=content, variants=_split(variants), warmup=warmup,
                                  runs=runs, threads=threads)
    payload = run_train_speed(settings)
    _emit("train_speed", payload, payload["rows"], COLUMNS, out_dir, json_file, quiet=quiet)


if __name__ == "__main__":
    main()
