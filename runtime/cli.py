"""``deblur-run``: deblur images, folders and videos. Parses, builds a Deblurrer, runs jobs."""

from __future__ import annotations

import sys

import click

from .errors import EXIT_USAGE, report_errors, setup_logging
from .signals import StopOnSignal
from .version import __version__


# --video-codec names -> FFmpeg encoders (all in PyAV's wheels).
VIDEO_CODECS = {"h264": "libx264", "hevc": "libx265", "vp9": "libvpx-vp9", "av1": "libsvtav1", "mpeg4": "mpeg4"}


def _parse_tile(value: str) -> int | None:
    if value == "auto":
        return None
    try:
        return int(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a number of pixels or 'auto'") from None


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("inputs", nargs=-1, required=True, metavar="INPUT...")
@click.option("-o", "--output", type=click.Path(readable=False), help="Output file (one input) or folder (several inputs / a folder). "
              "Default: beside each input with a _deblurred suffix; a folder -> FOLDER_deblurred/.")
@click.option("-m", "--model", type=click.Path(readable=False), help="ONNX model from deblur-export. Default: the model shipped "
              "with deblur-edge (on cuda, for 8-bit images, its FP16 export with uint8 I/O: 3.5-4.7x faster there).")
@click.option("-p", "--provider", default="auto", show_default=True,
              help="auto | cpu | cuda | tensorrt | coreml | directml | openvino, or a full ONNX Runtime "
                   "provider name. auto picks CUDA, then CoreML/DirectML/OpenVINO, then CPU. An unavailable "
                   "provider is an error, never a silent fallback.")
@click.option("--device-id", default=0, show_default=True, type=click.IntRange(min=0),
              help="GPU index for cuda/tensorrt.")
@click.option("--tile", default="auto", show_default=True, callback=lambda ctx, p, v: _parse_tile(v),
              help="Tile side in pixels (the model's input size); 0 runs each image whole (more memory, no "
                   "seams); auto: whole up to 1080p's pixel count, 1024-px tiles above.")
@click.option("--overlap", type=click.IntRange(min=0), default=None,
              help="Context pixels each tile reads beyond what it keeps "
              "[default: from the model's receptive field].")
@click.option("--blend", default=32, show_default=True, type=click.IntRange(min=0),
              help="Pixels of cross-fade between neighbouring tiles.")
@click.option("--tile-batch", default=1, show_default=True, type=click.IntRange(min=1),
              help="Tiles per model call (throughput on GPUs).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads [default: physical cores].")
@click.option("--self-ensemble", type=click.Choice(["1", "2", "4", "8"]), default="1", show_default=True,
              callback=lambda ctx, p, v: int(v),
              help="Average the model over N (1, 2, 4 or 8) flipped/rotated copies of each input: more quality for N times "
                   "the time (default model, Set5+Set14 blurred: +0.16 / +0.20 / +0.25 dB).")
@click.option("--video-codec", type=click.Choice(sorted(VIDEO_CODECS)), default=None,
              help="Video encoder [default: H.264 (libx264), VP9 for .webm; for 10/12-bit sources (HDR, ProRes) HEVC, AV1 "
                   "for .webm (10-bit H.264 in .avi), keeping their depth]; hevc and av1 make ~half the file at the "
                   "same look, slower; .webm takes vp9 or av1.")
@click.option("--video-depth", type=click.Choice(["source", "8"]), default="source", show_default=True,
              help="Bits per channel of output videos: the source's (10/12-bit HDR and ProRes stay deep, "
                   "deblurred in 16 bits) or 8 (4:2:0, what every player takes; on CUDA the faster 8-bit model).")
@click.option("--crf", type=click.IntRange(0, 51), default=18, show_default=True,
              help="Video quality on x264's scale (lower: better, larger; mapped for the other codecs): 18 looks "
                   "like the source, 23 is x264's default at about half the size.")
@click.option("--compare", is_flag=True, help="Also write INPUT | OUTPUT side by side (_compare suffix; "
              "for videos a PNG of the middle frame, named after the container too: clip_compare_mp4.png).")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs (inputs are never overwritten).")
@click.option("--skip-existing", is_flag=True, help="Leave outputs that exist already as they are (re-running an "
              "interrupted batch finishes it); without this or --overwrite an existing output is an error.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars or info messages.")
@click.option("-v", "--verbose", is_flag=True, help="Debug logging.")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(__version__, "-V", "--version", prog_name="deblur-run")
@report_errors
def main(inputs, output, model, provider, device_id, tile, overlap, blend, tile_batch, threads, self_ensemble,
         video_codec, video_depth, crf, compare, overwrite, skip_existing, quiet, verbose, debug) -> None:
    """Deblur images (png, jpg/jfif, bmp, tif, webp; heic with pillow-heif), folders (recursively) and videos
    (mp4, m4v, mov, mkv, avi, webm; every frame, same size and rate, every audio track kept; subtitles and
    chapters too where the output container holds them, else dropped with a warning; 10/12-bit video stays deep).

    \b
    Examples:
      deblur-run photo.jpg                      # -> photo_deblurred.jpg
      deblur-run --provider cuda video.mp4 -o out.mp4
      deblur-run holiday/ -o sharp/ --compare   # mirrors holiday/ under sharp/

    Exit status: 0 all done; 2 bad usage or some input failed (each is reported, the rest
    still run); 130 interrupted (no partial output files are left). Ctrl-C or SIGTERM ends the
    run after the current image (a video: at its next frame, no output); a second one stops
    an image after the model call in progress (a tile; a whole image up to 1080p: seconds).
    """
    setup_logging(verbose, quiet)
    if overwrite and skip_existing:
        raise click.UsageError("--overwrite replaces existing outputs and --skip-existing keeps them: pass one")
    import cv2

    from .deblurrer import Deblurrer
    from .jobs import plan_jobs, run_jobs
    from .progress import Progress

    if not verbose:  # OpenCV's own "[ERROR:0@0.01] global grfmt_webp.cpp..." lines: each failure
        # is reported once, as this tool's one-line error naming the file
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)

    jobs, problems = plan_jobs(list(inputs), output, compare=compare)
    for _, message in problems:
        click.echo(f"error: {message}", err=True)
    if not jobs:
        sys.exit(EXIT_USAGE)
    deblurrer = Deblurrer(model, provider, tile=tile, overlap=overlap, blend=blend, tile_batch=tile_batch,
                          device_id=device_id, threads=threads, self_ensemble=self_ensemble)
    # The first signal lets the file in progress finish (a video stops at the next frame,
    # leaving no output); the second stops at once, except while a video's encoder thread
    # could still be writing (run_jobs holds that stage back then).
    with StopOnSignal("stopping after the current image; a video stops at its next frame, without output") as stop:
        try:
            with Progress(jobs, enabled=not quiet) as progress:
                summary = run_jobs(deblurrer, jobs, overwrite=overwrite, skip_existing=skip_existing,
                                   compare=compare, stop=stop.event,
                                   interruptible=stop.interruptible, file_progress=progress.file_done,
                                   frame_progress=progress.frames,
                                   video_codec=VIDEO_CODECS.get(video_codec), crf=crf,
                                   keep_depth=video_depth == "source")
        except KeyboardInterrupt:
            if debug:
                raise
            click.echo("interrupted: stopped at once; files finished before are kept, no partial output left",
                       err=True)
            sys.exit(130)
    failed = len(summary.failed) + len(problems)
    if not quiet:
        skipped = f", {len(summary.skipped)} skipped (exist)" if summary.skipped else ""
        click.echo(f"{len(summary.done)} done{skipped}, {failed} failed in {summary.seconds:.1f} s "
                   f"({deblurrer.provider})", err=True)
    if summary.interrupted:
        click.echo(f"interrupted: {summary.interrupted}; no partial output left", err=True)
        sys.exit(130)
    if failed:
        sys.exit(EXIT_USAGE)
