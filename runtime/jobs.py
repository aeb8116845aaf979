"""What ``deblur-run`` does with its arguments: plan input -> output pairs, then process them.

Kept out of ``cli.py`` so that apps can batch-process folders with the same rules.
Rules: without ``-o`` results go beside their inputs with a ``_deblurred`` suffix (a folder
becomes ``FOLDER_deblurred/``, structure mirrored); an input is never overwritten; an
existing output is only replaced with ``overwrite``; every write is atomic.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import cv2
import numpy as np

from .atomic import check_can_write
from .errors import DeblurError, InputError, first_line
from .metadata import (HEIF_SUFFIXES, JPEG_SUFFIXES, MAX_JPEG_EXIF_BYTES, METADATA_SUFFIXES, Metadata, colour_space,
                       unlike_srgb, upright_exif)
from .image_io import (ALPHA_SUFFIXES, IMAGE_SUFFIXES, SIXTEEN_BIT_SUFFIXES, VIDEO_SUFFIXES, check_format, check_size,
                       fit_side, read_image_and_metadata, side_by_side, to_8bit, write_image)

log = logging.getLogger(__name__)

SUFFIX = "_deblurred"


@dataclass(frozen=True)
class Job:
    src: Path
    dst: Path
    kind: str  # "image" or "video"

    @property
    def compare_path(self) -> Path:
        if self.kind == "image":
            return self.dst.with_name(f"{self.dst.stem}_compare{self.dst.suffix}")
        # A PNG named after the container too: clip.mp4's never takes the place of its poster
        # clip.png's, or clip.mov's, whichever files a later run finds beside it.
        return self.dst.with_name(f"{self.dst.stem}_compare_{self.dst.suffix[1:].lower()}.png")


@dataclass
class Summary:
    done: list[Job] = field(default_factory=list)
    skipped: list[Job] = field(default_factory=list)  # outputs there already (skip_existing)
    failed: list[tuple[Path, str]] = field(default_factory=list)
    interrupted: str | None = None
    seconds: float = 0.0


def media_kind(path: Path) -> str | None:
    suffix = path.suffix.lower()
    return "image" if suffix in IMAGE_SUFFIXES else "video" if suffix in VIDEO_SUFFIXES else None


def _walk(folder: Path, skip: Path | None = None) -> list[Path]:
    """Media files under ``folder``, but none under ``skip`` (an output folder inside it: a
    second run would deblur the first run's results again)."""
    found = []
    skip = skip.resolve() if skip is not None else None
    if skip is not None and not skip.is_relative_to(folder.resolve()):
        skip = None  # outside the tree: nothing to leave out, no path to resolve per file
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if any(part.startswith(".") for part in rel.parts):
            continue  # hidden files and our own in-flight temporary files
        if skip is not None and path.resolve().is_relative_to(skip):
            continue
        if path.is_symlink() and path.is_dir():
            log.warning("%s: a linked folder, not followed (it could lead back into %s); pass it as an input "
                        "of its own", path, folder)
        if path.is_file() and media_kind(path):
            found.append(path)
    return found


def plan_jobs(inputs: list[str | Path], output: str | Path | None = None, *,
              compare: bool = False) -> tuple[list[Job], list[tuple[Path, str]]]:
    """Map inputs (files and folders) to outputs; returns (jobs, problems found while planning).
    With ``compare`` the side-by-side files count as outputs too: they may not land on an input
    or on another job's output."""
    jobs: list[Job] = []
    problems: list[tuple[Path, str]] = []
    out = Path(output) if output is not None else None
    many = len(inputs) > 1
    for raw in inputs:
        src = Path(raw)
        if src.is_dir():
            # Made absolute: "." or ".." have no name of their own to put the suffix on. Not
            # resolved: a symlinked folder's output goes beside the link, under its name.
            folder = Path(os.path.abspath(src))
            if out is None and folder.parent == folder:
                problems.append((src, f"{src}: no folder beside the root to write into; pass -o OUTPUT_FOLDER"))
                continue
            base = (out / folder.name if many else out) if out else folder.with_name(folder.name + SUFFIX)
            if out is not None and out.exists() and not out.is_dir():
                problems.append((src, f"{out}: is a file; a folder's results need an output folder"))
                continue
            if out is not None and not out.exists() and media_kind(out):  # a typo: photos.jpg for photos/
                problems.append((src, f"{out}: a folder's results need an output folder, and this names "
                                      f"a{'n image' if media_kind(out) == 'image' else ' video'} file; pass a "
                                      f"folder (e.g. {out.parent / out.stem}/)"))
                continue
            if out is not None and out.is_dir() and os.path.samefile(out, folder):
                problems.append((src, f"{out}: is the input folder: the results would land on the inputs; "
                                      "choose another -o (or none: results go to a new folder beside it)"))
                continue
            files = _walk(src, skip=out)  # results written into the input folder are no input
            if not files:
                problems.append((src, f"{src}: folder has no images or videos ({', '.join(IMAGE_SUFFIXES + VIDEO_SUFFIXES)})"))
            for f in files:
                jobs.append(Job(f, base / f.relative_to(src), media_kind(f)))  # type: ignore[arg-type]
            continue
        kind = media_kind(src)
        if not src.exists():
            problems.append((src, f"{src}: no such file or folder"))
        elif kind is None:
            problems.append((src, f"{src}: unknown file type {src.suffix!r}; images: {', '.join(IMAGE_SUFFIXES)}; "
                                  f"videos: {', '.join(VIDEO_SUFFIXES)}"))
        elif out is None:
            jobs.append(Job(src, src.with_name(f"{src.stem}{SUFFIX}{src.suffix}"), kind))
        elif many and media_kind(out) and not out.is_dir():
            # Several inputs go into a folder: one named like a file (photo.jpg) is a typo.
            article = "an image" if media_kind(out) == "image" else "a video"
            problems.append((src, f"{out}: several inputs need an output folder, and this names {article} "
                                  f"file; pass a folder (e.g. {out.parent / out.stem}/)"))
        elif many or out.is_dir() or str(output).endswith(("/", "\\")):
            jobs.append(Job(src, out / src.name, kind))
        else:
            if out.suffix and media_kind(out) is None:
                problems.append((src, f"{out}: unknown output type {out.suffix!r}; images: "
                                      f"{', '.join(IMAGE_SUFFIXES)}; videos: {', '.join(VIDEO_SUFFIXES)}; or a "
                                      f"folder (end it with /: {out}/)"))
                continue
            if media_kind(out) != kind:
                problems.append((src, f"{out}: output must be {'an image' if kind == 'image' else 'a video'} "
                                      f"file, as the input ({src.suffix}) is, or a folder (end it with /: {out}/)"))
                continue
            jobs.append(Job(src, out, kind))
    # `deblur-run *.jpg` run again: a_deblurred.jpg (and its compare picture) is a.jpg's earlier
    # result, not an input; taken as one it came back as a_deblurred_deblurred.jpg, and the
    # run ended refusing to overwrite an input. Only for results named beside their inputs
    # (no -o): with -o an input a result would land on is refused below, never replaced.
    results = {path.resolve(): job for job in jobs for path in (job.dst, job.compare_path)} if out is None else {}
    earlier = {job.src: results[job.src.resolve()] for job in jobs
               if results.get(job.src.resolve(), job) is not job}
    for src, owner in earlier.items():
        log.info("%s: %s's result from an earlier run; not deblurred again", src, owner.src)
    jobs = [job for job in jobs if job.src not in earlier]
    unique: dict[tuple[Path, Path], Job] = {}
    for job in jobs:  # `deblur-run a.jpg a.jpg`: once (a linked copy inside a tree has its own output)
        key = (job.src.resolve(), job.dst.resolve())
        if key in unique:
            log.warning("%s: given twice (the same file as %s); deblurred once", job.src, unique[key].src)
        else:
            unique[key] = job
    jobs = list(unique.values())
    sources = {src for src, _ in unique}
    targets: dict[Path, Path] = {}
    safe = []
    for job in jobs:
        paths = [job.dst, job.compare_path] if compare else [job.dst]
        clash = None
        for path in paths:
            dst = path.resolve()
            if dst in sources:
                clash = f"{path}: refusing to overwrite an input; choose another -o"
            elif dst in targets:
                clash = f"{path}: {targets[dst]} already writes there; give the inputs separate runs or rename one"
            if clash:
                break
        if clash:
            problems.append((job.src, clash))
            continue
        for path in paths:
            targets[path.resolve()] = job.src
        safe.append(job)
    return safe, problems


def run_jobs(deblur: Callable[[np.ndarray], np.ndarray], jobs: list[Job], *, overwrite: bool = False,
             skip_existing: bool = False, compare: bool = False, stop: threading.Event | None = None,
             interruptible: threading.Event | None = None,
             file_progress: Callable[[Job], None] | None = None,
             frame_progress: Callable[[Job, int, int | None], None] | None = None,
             video_codec: str | None = None, crf: int = 18, keep_depth: bool = True) -> Summary:
    """Process every job; a bad file is recorded and skipped, the rest still run.

    An existing output is an error unless ``overwrite`` (replaced) or ``skip_existing`` (left
    as it is and counted as skipped: re-running an interrupted batch finishes it).

    ``stop`` is polled between files and video frames. ``interruptible`` (set by the caller)
    is cleared while a video runs: interrupting then could close the output under its encoder
    thread, and the video stops at its next frame anyway.
    """
    summary = Summary()
    stop = stop or threading.Event()
    started = time.perf_counter()
    for index, job in enumerate(jobs):
        if stop.is_set():
            summary.interrupted = f"stopped after {index} of {len(jobs)} files"
            break
        made: list[Path] = []  # output folders this job created: removed again if it fails
        try:
            outputs = (job.dst, job.compare_path) if compare else (job.dst,)
            if skip_existing and job.dst.exists():
                if not all(path.exists() for path in outputs):  # the output came first, then the stop
                    log.warning("%s: exists without its compare picture; pass --overwrite to make both", job.dst)
                summary.skipped.append(job)
                if file_progress:
                    file_progress(job)
                continue
            for path in outputs:
                # Under --skip-existing a compare picture without its output is what an earlier
                # run left (or the user kept while deleting the result to redo it): made again.
                if path.exists() and not overwrite and not (skip_existing and path == job.compare_path):
                    raise InputError(f"{path}: exists; pass --overwrite to replace it (or --skip-existing)")
            check_can_write(job.dst)  # before minutes of deblurring, not at the write
            made = [p for p in (job.dst.parent, *job.dst.parent.parents) if not p.exists()]
            try:
                job.dst.parent.mkdir(parents=True, exist_ok=True)  # the video muxer will not
            except OSError as exc:
                raise InputError(f"{job.dst.parent}: cannot create the output folder ({exc.strerror or exc})") from None
            if job.kind == "image":
                _run_image(deblur, job, compare)
            else:
                if interruptible is not None:
                    interruptible.clear()
                try:
                    _run_video(deblur, job, compare, stop, frame_progress, video_codec, crf, keep_depth)
                finally:
                    if interruptible is not None:
                        interruptible.set()
            summary.done.append(job)
        except (DeblurError, MemoryError, cv2.error) as exc:
            # One file's failure is that file's: a photo too big for this machine's memory, or
            # one OpenCV chokes on, must not end a batch of thousands.
            message = str(exc) if isinstance(exc, DeblurError) else (
                f"{job.src}: out of memory; use a smaller --tile (e.g. 512)" if isinstance(exc, MemoryError)
                else f"{job.src}: OpenCV failed ({first_line(exc.err or exc)})")
            log.error("error: %s", message)
            summary.failed.append((job.src, message))
            _remove_empty(made)
        except _Stopped as exc:
            _remove_empty(made)
            of = f" of {exc.total}" if exc.total else ""
            summary.interrupted = (f"stopped during {job.src} after {exc.frames}{of} frames; "
                                   f"{index} of {len(jobs)} files done")
            break
        if file_progress:
            file_progress(job)
    summary.seconds = time.perf_counter() - started
    return summary


class _Stopped(Exception):
    def __init__(self, frames: int, total: int | None) -> None:
        super().__init__(frames)
        self.frames, self.total = frames, total


def _run_image(deblur: Callable[[np.ndarray], np.ndarray], job: Job, compare: bool) -> None:
    image, metadata = read_image_and_metadata(job.src)
    icc, exif = _carried_profile(job, image, metadata), _carried_exif(job, metadata.exif)
    lost = unlike_srgb(metadata.nclx)
    if lost and job.dst.suffix.lower() not in (*HEIF_SUFFIXES, ".png"):
        shown = "as its ICC profile says" if icc else "as sRGB"
        log.warning("%s: its colour tags (%s) cannot be carried into %s: viewers will show it %s; write .heic or "
                    ".png to keep them", job.src, lost, job.dst.suffix, shown)
    # A 10/12/16-bit photo asked for as JPEG, WebP or BMP: what the user named, with 8 bits.
    eight_bit = image.dtype == np.uint16 and job.dst.suffix.lower() not in SIXTEEN_BIT_SUFFIXES
    if eight_bit:
        log.warning("%s: written with 8 bits per channel, all %s holds (write .png or .tif to keep its depth; "
                    ".heic keeps 10 bits)", job.src, job.dst.suffix)
    try:
        check_format(job.dst.suffix, np.dtype(np.uint8) if eight_bit else image.dtype)  # before the work
        check_size(job.dst.suffix, image.shape)
    except InputError as exc:
        raise InputError(f"{job.dst}: {exc}") from None
    if metadata.frames > 1:  # an APNG or animated WebP, a scanned multi-page TIFF, a HEIF burst
        which = f"its primary one ({metadata.primary + 1} of {metadata.frames})" if metadata.primary else "the first"
        suffix = job.src.suffix.lower()
        kind = "pages" if suffix in (".tif", ".tiff") else "pictures" if suffix in HEIF_SUFFIXES else "frames"
        log.warning("%s: holds %d %s; only %s is deblurred (save them as separate images, or an animation as a "
                    "video, to deblur every one)", job.src, metadata.frames, kind, which)
    if image.ndim == 3 and image.shape[2] == 4 and job.dst.suffix.lower() not in ALPHA_SUFFIXES:
        log.warning("%s: its alpha channel is dropped: %s cannot store one (write %s to keep it)",
                    job.src, job.dst.suffix, " or ".join(ALPHA_SUFFIXES))
    key = _transparent_grey(image, metadata, job.dst)
    try:
        result = deblur(image)
    except InputError as exc:
        raise InputError(f"{job.src}: {exc}") from None
    if key is not None:  # grey + alpha, which a PNG takes as such
        result, image = (np.dstack([grey, grey, grey, key]) for grey in (result, image))
    if eight_bit:
        result, image = to_8bit(result), to_8bit(image)
    if image.dtype.kind == "f":
        low, high = float(image.min()), float(image.max())
        if low < 0.0 or high > 1.0:
            log.warning("%s: float pixels span [%.3g, %.3g]; they are taken as [0, 1], the result is clipped to it",
                        job.src, low, high)
    write_image(job.dst, result, icc=icc, exif=exif, like=metadata)
    if compare:  # a picture of two photos, no longer the one the EXIF describes; twice as wide,
        # so shrunk where the format cannot hold it (a panorama's WebP or JPEG)
        picture = fit_side(side_by_side(image, result), job.compare_path.suffix)
        write_image(job.compare_path, picture, icc=icc, like=metadata)


def _transparent_grey(image: np.ndarray, metadata: Metadata, dst: Path) -> np.ndarray | None:
    """The alpha of a grey PNG with a transparent value (tRNS, which OpenCV ignores), for a PNG
    output; None when there is none, or no pixel has that value. Other outputs get the grey
    picture as OpenCV reads it, as before (its grey profile stays true)."""
    if metadata.transparent_grey is None or image.ndim != 2 or dst.suffix.lower() != ".png":
        return None
    hidden = image == metadata.transparent_grey
    return np.where(hidden, 0, np.iinfo(image.dtype).max).astype(image.dtype) if hidden.any() else None


def _remove_empty(folders: list[Path]) -> None:
    """Remove folders a failed job created (deepest first) while they are still empty: a failed
    or interrupted run leaves no empty mirror of the input tree behind."""
    for folder in folders:  # deepest first, as (parent, *parents) lists them
        try:
            folder.rmdir()
        except OSError:  # not empty (another job wrote there) or gone
            return


def _carried_profile(job: Job, image: np.ndarray, metadata: Metadata) -> bytes | None:
    """The input's ICC profile if the output can carry it and it still describes the pixels
    (deblurring keeps their colour space); else None, said once."""
    icc = metadata.icc
    if icc is None:
        return None
    # OpenCV decodes CMYK to BGR: a CMYK profile no longer describes the pixels (nor an RGB
    # one a grey image), and a mismatched tag is worse than none.
    space = colour_space(icc)
    # Grey + alpha goes back into a PNG as such; other formats get it as colour.
    grey = image.ndim == 2 or (metadata.grey_alpha and job.dst.suffix.lower() == ".png")
    if space != ("GRAY" if grey else "RGB"):
        log.warning("%s: its %s ICC profile does not describe the decoded %s pixels; the result is "
                    "written untagged", job.src, space, "grey" if grey else "colour")
        return None
    if job.dst.suffix.lower() not in METADATA_SUFFIXES:
        log.warning("%s: its ICC colour profile is dropped: only %s outputs carry it here; colour-managed "
                    "viewers will show %s as sRGB", job.src, ", ".join(METADATA_SUFFIXES), job.dst.name)
        return None
    return icc


def _carried_exif(job: Job, exif: bytes | None) -> bytes | None:
    """The input's EXIF block, upright, if the output can carry it; else None, said once."""
    if exif is None:
        return None
    suffix = job.dst.suffix.lower()
    if suffix not in METADATA_SUFFIXES:
        log.warning("%s: its EXIF data (date, camera, place) is dropped: only %s outputs carry it here",
                    job.src, ", ".join(METADATA_SUFFIXES))
        return None
    if suffix in JPEG_SUFFIXES and len(exif) > MAX_JPEG_EXIF_BYTES:
        log.warning("%s: its EXIF data (%d bytes) is dropped: a JPEG holds at most %d; write .png or .webp "
                    "to keep it", job.src, len(exif), MAX_JPEG_EXIF_BYTES)
        return None
    return upright_exif(exif)


def _run_video(deblur: Callable[[np.ndarray], np.ndarray], job: Job, compare: bool, stop: threading.Event,
               frame_progress: Callable[[Job, int, int | None], None] | None, video_codec: str | None = None,
               crf: int = 18, keep_depth: bool = True) -> None:
    from .video import VideoError, VideoInterrupted, probe_video, process_video

    try:
        info = probe_video(job.src)
    except VideoError as exc:
        raise InputError(str(exc)) from None
    # The middle frame; Matroska/WebM give no count, the video stream's duration does (frame 0
    # stays as the fallback should the estimate overshoot).
    estimate = round(info.video_duration_s * info.fps) if info.video_duration_s else None
    frames = info.frame_count or estimate or 1
    total = info.frame_count or estimate  # the progress bar's end: Matroska's is estimated, not absent
    snapshot_at = frames // 2
    counter = {"n": 0}
    snapshot: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def frame_fn(frame: np.ndarray) -> np.ndarray:
        result = deblur(frame)
        if compare and counter["n"] in (0, snapshot_at):
            snapshot["halves"] = (frame.copy(), result.copy())
        counter["n"] += 1
        return result

    def progress(frames: int) -> None:
        if frame_progress:
            frame_progress(job, frames, total)

    try:
        process_video(job.src, job.dst, frame_fn, progress=progress, stop_event=stop, codec=video_codec, crf=crf,
                      keep_depth=keep_depth)
    except VideoInterrupted as exc:
        raise _Stopped(exc.frames_done, exc.frames_total) from None
    except VideoError as exc:
        raise InputError(str(exc)) from None
    if compare and "halves" in snapshot:
        # Upright as players show it (images get their EXIF orientation applied likewise).
        turn = {90: cv2.ROTATE_90_COUNTERCLOCKWISE, 180: cv2.ROTATE_180, 270: cv2.ROTATE_90_CLOCKWISE}.get(
            info.rotation % 360)
        halves = [half if turn is None else cv2.rotate(half, turn) for half in snapshot["halves"]]
        # A video's colour tags as the PNG's cICP (written only where sRGB would show it otherwise):
        # an HDR video's frames are PQ/HLG code values in BT.2020, washed out untagged.
        nclx = (info.color_primaries, info.color_trc, 0, 1)
        write_image(job.compare_path, side_by_side(*halves), like=Metadata(nclx=nclx))
