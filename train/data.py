"""Training and validation data: GoPro-style blur/sharp pairs and sharp photos blurred on the fly.

Every random choice for a sample (crop, flip, blur kernel, noise, JPEG) comes from a numpy
generator seeded with ``(seed, epoch, index)``, and the sampler's order is a function of
``(seed, epoch)``: the data a step sees depends on the step number only, so a resumed run
gets exactly the batches the uninterrupted run would have, whatever the worker count.
"""

from __future__ import annotations

import hashlib
import logging
import os
import signal
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from deblur.runtime.errors import DeblurError, InputError
from deblur.runtime.heif import HeifSupportMissing
from deblur.runtime.image_io import IMAGE_SUFFIXES as RUNTIME_SUFFIXES, as_bgr8, read_image_and_metadata
from deblur.runtime.metadata import exif_orientation

from .blur import BlurConfig, degrade

log = logging.getLogger(__name__)

# What deblur-run reads (.jfif, HEIC with pillow-heif, ...), and the netpbm files datasets use.
IMAGE_SUFFIXES = {*RUNTIME_SUFFIXES, ".ppm", ".pgm"}
# Sibling folders that other tools' paired datasets use for (blurred, sharp): pix2pix's A/B,
# CycleGAN's trainA/trainB, BasicSR's lq/gt, and input/target spellings.
_FOREIGN_PAIRS = (("a", "b"), ("traina", "trainb"), ("testa", "testb"), ("lq", "gt"), ("input", "target"),
                  ("inputs", "targets"), ("input", "gt"), ("blurred", "sharp"), ("blurry", "sharp"))


def _warn_once(said: set[str], message: str) -> None:
    """Training and validation scan the same folders: a run passes one ``said`` to both."""
    if message not in said:
        said.add(message)
        log.warning("%s", message)


@dataclass(frozen=True)
class Item:
    sharp: Path
    blurred: Path | None  # None: synthesise the blur
    height: int
    width: int


def read_rgb(path: Path) -> np.ndarray | None:
    """HxWx3 uint8 RGB, upright (EXIF orientation applied, as deblur-run reads it: a portrait
    phone photo must not train sideways); greyscale is repeated, alpha dropped, 16 bit
    scaled. None if unreadable."""
    read = _read_upright(path)
    return None if read is None else read[0]


def _read_upright(path: Path) -> tuple[np.ndarray, int] | None:
    """``read_rgb``, and the EXIF orientation (1-8) that was applied."""
    try:
        image, metadata = read_image_and_metadata(path)
    except HeifSupportMissing:
        raise  # every HEIC would be "unreadable": say what to install instead
    except (DeblurError, OSError, cv2.error):
        return None
    if image is None or image.size == 0:
        return None
    return np.ascontiguousarray(as_bgr8(image)[:, :, ::-1]), exif_orientation(metadata.exif)


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _find_files(paths: list[str], said: set[str]) -> list[tuple[Path, Path | None]]:
    """(sharp, blurred-or-None) for every image: ``*/sharp/x`` pairs with ``*/blur/x``."""
    found: list[tuple[Path, Path | None]] = []
    for root in map(Path, paths):
        if not root.exists():
            raise InputError(f"{root}: no such data folder")
        files = [root] if root.is_file() else _images_in(root)
        if not files:
            raise InputError(f"{root}: no images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})")
        paired_dirs = {p.parent for p in files if p.parent.name == "sharp" and (p.parent.parent / "blur").is_dir()}
        paired_scenes = {d.parent for d in paired_dirs}
        ignored, start = 0, len(found)
        for path in files:
            if path.parent in paired_dirs:
                blurred = path.parent.parent / "blur" / path.name
                if blurred.is_file():
                    found.append((path, blurred))
                else:
                    log.warning("%s: no blurred partner at %s; skipped", path, blurred)
            elif path.parent.parent in paired_scenes:
                # blur/ itself, and siblings such as GoPro's blur_gamma/: blurred images, never targets.
                ignored += path.parent.name != "blur"
            else:
                found.append((path, None))
        if ignored:
            log.info("%s: ignored %d images in folders beside paired sharp/ + blur/ (e.g. blur_gamma/)", root, ignored)
        unpaired = {path.parent for path, partner in found[start:] if partner is None}
        # Folders between the images and the root (pix2pix keeps A/train + B/train): where
        # another tool's pair of sibling folders sits.
        above = {parent for folder in unpaired for parent in (folder, *folder.parents)
                 if parent == root or root in parent.parents}
        explained: set[Path] = set()
        for parent in sorted(above):
            names = {child.name.lower(): child for child in parent.iterdir() if child.is_dir()}
            for blurred, sharp in _FOREIGN_PAIRS:
                if blurred in names and sharp in names:  # pix2pix's A/ + B/: A would be trained as sharp
                    explained.add(names[blurred])
                    _warn_once(said, f"{parent}: {names[blurred].name}/ and {names[sharp].name}/ look like (blurred, "
                               "sharp) pairs, but deblur-train pairs only sharp/ + blur/ folders side by side: every "
                               "image in both is taken as a sharp target and blurred again; rename them blur/ and "
                               "sharp/ (with the same file names in each)")
        blurry = sorted(folder for folder in unpaired if folder.name.lower() in ("blur", "blurred", "blurry")
                        and folder not in explained)
        for folder in blurry:  # e.g. --data GOPR0001/blur: trained on as the sharp targets
            _warn_once(said, f"{folder}: its name says blurred images, but unpaired they are taken as sharp targets; "
                       "pass the folder above it (pairs are sharp/ + blur/, lower-case) or sharp photos")
    return found


def _probe(pair: tuple[Path, Path | None]) -> tuple[int, int] | str:
    sharp_path, blurred_path = pair
    sharp = _read_upright(sharp_path)
    if sharp is None:
        return f"{sharp_path}: unreadable image"
    if blurred_path is not None:
        blurred = _read_upright(blurred_path)
        if blurred is None:
            return f"{blurred_path}: unreadable image"
        tags = f" (EXIF orientation {blurred[1]}, its sharp image's {sharp[1]})" if blurred[1] != sharp[1] else ""
        if blurred[0].shape != sharp[0].shape:
            return f"{blurred_path}: size {blurred[0].shape[1]}x{blurred[0].shape[0]} differs from its sharp image{tags}"
        # Tags that differ are fine when a tool turned the pixels and dropped the tag; when it
        # dropped the tag alone, the pair would train turned against itself.
        if tags and not _upright_alike(sharp[0], blurred[0]):
            return f"{blurred_path}: turned against its sharp image{tags}; save both the same way up"
    return sharp[0].shape[0], sharp[0].shape[1]


def _upright_alike(sharp: np.ndarray, blurred: np.ndarray) -> bool:
    """Whether ``blurred`` matches ``sharp`` better as it is than flipped or turned (small grey
    thumbnails: blur changes detail, not where things are)."""
    def thumb(image: np.ndarray) -> np.ndarray:
        return cv2.resize(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), (32, 32), interpolation=cv2.INTER_AREA).astype(float)

    target = thumb(sharp)
    turns = [lambda a: a[::-1], lambda a: a[:, ::-1], lambda a: a[::-1, ::-1]]
    if sharp.shape[0] == sharp.shape[1]:
        turns += [lambda a: a.swapaxes(0, 1), lambda a: np.rot90(a), lambda a: np.rot90(a, -1),
                  lambda a: np.rot90(a.swapaxes(0, 1), 2)]
    error = np.mean((thumb(blurred) - target) ** 2)
    return all(error <= np.mean((thumb(np.ascontiguousarray(turn(blurred))) - target) ** 2) for turn in turns)


def scan(paths: list[str], crop: int, *, what: str = "training", option: str = "--crop",
         multiple: int = 1, smallest: int = 1, said: set[str] | None = None) -> list[Item]:
    """Find, decode once and size-check every image. Unusable ones are skipped with a warning;
    nothing usable is an error that says why (the crop it suggests is one the generator takes:
    a multiple of ``multiple``, at least ``smallest``)."""
    said = set() if said is None else said
    pairs = _find_files(paths, said)
    if not pairs:
        raise InputError(f"{', '.join(paths)}: no usable {what} images (sharp/ images without blur/ partners?)")
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:  # cv2 releases the GIL
        probes = list(pool.map(_probe, pairs))
    items, unreadable, small, largest = [], 0, 0, (0, 0)
    for (sharp, blurred), probe in zip(pairs, probes):
        if isinstance(probe, str):
            log.warning("%s; skipped", probe)
            unreadable += 1
            continue
        height, width = probe
        largest = max(largest, (height, width), key=min)
        if min(height, width) < crop:
            small += 1
            continue
        items.append(Item(sharp, blurred, height, width))
    where = ", ".join(paths)
    if unreadable == len(pairs):
        raise InputError(f"{where}: none of the {len(pairs)} {what} images could be read")
    if not items:
        fits = min(largest) // multiple * multiple
        raise InputError(f"{where}: the {what} crop {crop} px is larger than every image (the largest fits "
                         f"{min(largest)} px); pass {option} {fits} or less" if fits >= smallest else
                         f"{where}: every {what} image is smaller than the {max(smallest, multiple)} px this "
                         "generator needs; use larger photos")
    if small:
        log.warning("%s: %d %s images smaller than the %d px crop skipped", where, small, what, crop)
    sharp_only = [item for item in items if item.blurred is None]
    if len(sharp_only) >= 2 and all(item.width == 2 * item.height for item in sharp_only):
        _warn_once(said, f"{where}: every unpaired image is exactly twice as wide as high, like pix2pix's side-by-side "
                   "(blurred | sharp) pairs; they are taken whole as sharp targets. Split each into blur/ and "
                   "sharp/ folders (same file names) to train on the pairs")
    log.info("%s data: %d image%s (%d paired, %d sharp-only)", what, len(items), "" if len(items) == 1 else "s",
             sum(i.blurred is not None for i in items), sum(i.blurred is None for i in items))
    return items


def fingerprint(items: list[Item]) -> dict[str, int | str]:
    """What the training images are, to tell on ``--resume`` whether the folders changed: their
    count and a hash of names and sizes (not paths: a run may resume from another directory)."""
    listing = "\n".join(f"{i.sharp.name}|{i.blurred.name if i.blurred else ''}|{i.height}x{i.width}" for i in items)
    return {"count": len(items), "sha1": hashlib.sha1(listing.encode()).hexdigest()}


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 -> (3, H, W) float32 in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float().div_(127.5).sub_(1.0)


def make_sample(item: Item, top: int, left: int, crop: int, rng: np.random.Generator,
                blur: BlurConfig, read=read_rgb) -> tuple[np.ndarray, np.ndarray]:
    """(blurred, sharp) crops at (top, left); sharp-only images are blurred here with ``rng``."""
    sharp = read(item.sharp)
    if sharp is None:
        raise InputError(f"{item.sharp}: became unreadable during training")
    if item.blurred is not None:
        blurred = read(item.blurred)
        if blurred is None:
            raise InputError(f"{item.blurred}: became unreadable during training")
        window = np.s_[top:top + crop, left:left + crop]
        return blurred[window], sharp[window]
    # Blur a margin around the crop too, so the kernel sees real pixels rather than a
    # reflected border at the crop's edges.
    margin = blur.kernel_size // 2
    y0, x0 = max(0, top - margin), max(0, left - margin)
    y1, x1 = min(sharp.shape[0], top + crop + margin), min(sharp.shape[1], left + crop + margin)
    blurred, _ = degrade(sharp[y0:y1, x0:x1], rng, blur)
    inner = np.s_[top - y0:top - y0 + crop, left - x0:left - x0 + crop]
    return blurred[inner], sharp[top:top + crop, left:left + crop]


# Decoding a photo costs more than blurring a crop of it (4.4 vs 2.6 ms for the default
# data on the 2-core CPU) and every step decodes batch-size photos: each data process keeps
# decoded photos up to this many bytes (the 198 default training photos take 313 MiB).
IMAGE_CACHE_BYTES = 1 << 30


class DecodedCache:
    """Decoded images by path, up to a byte budget; later images are decoded on every read."""

    def __init__(self, budget: int = IMAGE_CACHE_BYTES) -> None:
        self.budget, self.used, self.images = budget, 0, {}

    def read(self, path: Path) -> np.ndarray | None:
        image = self.images.get(path)
        if image is None:
            image = read_rgb(path)
            if image is not None and self.used + image.nbytes <= self.budget:
                image.flags.writeable = False  # shared by every later sample: crops must copy
                self.images[path] = image
                self.used += image.nbytes
        return image


class TrainPairs(Dataset):
    """Random crops with horizontal flips; indexed by ``(epoch, index)`` (see ``StepSampler``)."""

    def __init__(self, items: list[Item], crop: int, seed: int, blur: BlurConfig,
                 cache_bytes: int = IMAGE_CACHE_BYTES) -> None:
        self.items, self.crop, self.seed, self.blur = items, crop, seed, blur
        self.cache = DecodedCache(cache_bytes)  # each worker process fills its own copy

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
        epoch, index = key
        item = self.items[index]
        rng = np.random.default_rng([self.seed, epoch, index])
        top = int(rng.integers(0, item.height - self.crop + 1))
        left = int(rng.integers(0, item.width - self.crop + 1))
        blurred, sharp = make_sample(item, top, left, self.crop, rng, self.blur, self.cache.read)
        # Horizontal flips only: an upside-down photo is not a photo (sky below, light from under).
        if rng.random() < 0.5:
            blurred, sharp = blurred[:, ::-1], sharp[:, ::-1]
        return to_tensor(blurred), to_tensor(sharp)  # (3, C, C) each, in [-1, 1]


class StepSampler(Sampler):
    """Endless ``(epoch, index)`` keys, sharded over ranks, starting at a given step.

    Like ``DistributedSampler`` (a fresh permutation per epoch from ``seed + epoch``, each rank
    a disjoint slice, the tail dropped so ranks stay in step) but it can start mid-epoch, which
    is what exact resuming needs, and it never ends, so one DataLoader iterator (and one set of
    worker processes) lives for the whole run.
    """

    def __init__(self, size: int, batch_size: int, *, seed: int, rank: int = 0, world_size: int = 1,
                 start_step: int = 0) -> None:
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.rank, self.world_size, self.start_step = rank, world_size, start_step
        self.steps_per_epoch = size // world_size // batch_size
        if self.steps_per_epoch == 0:
            raise InputError(f"{size} training images are fewer than batch size {batch_size} x {world_size} "
                             "processes; lower --batch-size or add images")

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch, first_batch = divmod(self.start_step, self.steps_per_epoch)
        per_rank = self.steps_per_epoch * self.batch_size
        while True:
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + epoch)).tolist()
            shard = order[self.rank::self.world_size][:per_rank]
            for index in shard[first_batch * self.batch_size:]:
                yield epoch, index
            epoch, first_batch = epoch + 1, 0


def validation_pairs(items: list[Item], crop: int, count: int, seed: int,
                     blur: BlurConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Fixed (blurred, sharp) centre crops, (N, 3, C, C) in [-1, 1]; pair i is blurred with
    seed ``(seed, i)``, so the numbers are comparable across runs and machines."""
    chosen = items[:: max(1, len(items) // count)][:count]  # spread over the folders
    blurred, sharp = [], []
    for i, item in enumerate(chosen):
        top, left = (item.height - crop) // 2, (item.width - crop) // 2
        b, s = make_sample(item, top, left, crop, np.random.default_rng([seed, i]), blur)
        blurred.append(to_tensor(b))
        sharp.append(to_tensor(s))
    return torch.stack(blurred), torch.stack(sharp)


def single_threaded_opencv() -> None:
    """Call in the main process before data workers fork: each worker is one process (OpenCV's
    own pool inside it only oversubscribes), and OpenCV's pool is not fork-safe. Torn down in
    a child, the pool inherited from a parent that had used it hung for good in
    pthread_cond_destroy (a worker stuck in cv2.setNumThreads, seen in CI); torn down here,
    the workers inherit one thread and no pool."""
    cv2.setNumThreads(1)


def worker_init(_: int) -> None:
    # Ctrl-C and `timeout` signal the whole process group: the main process turns them into a
    # checkpointed stop after the current step, which needs the workers alive until then (they
    # exit with the loader, or by themselves when the main process is gone).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
