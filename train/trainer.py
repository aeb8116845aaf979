"""The training loop: DeblurGAN (WGAN-GP) or pix2pix, on one device or many through torchrun.

One process (CPU or one GPU)::

    deblur-train --data ../shared/data/sharp --out runs/x --content l1+fft

Several processes (one per GPU; CPU processes talk over gloo), one node or many::

    torchrun --standalone --nproc_per_node 4 -m deblur.train.cli --data ... --out runs/x

``train()`` reads top to bottom: setup -> models -> data -> optimisers -> resume -> DDP wrap
-> loop (critic steps, generator step, logging, validation, checkpoints). Rank 0 logs,
validates and writes checkpoints; every rank seeds its own RNGs with ``seed + rank`` (dropout,
penalty coefficients). Augmentation needs no rank offset: it is keyed by (seed, epoch, index)
and the ranks' indices are disjoint.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader
from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from deblur.runtime.atomic import atomic_path, check_can_write
from deblur.runtime.errors import CheckpointError, InputError, first_line
from deblur.runtime.signals import StopOnSignal

from .checkpoint import init_generator_from, load_checkpoint, save_checkpoint
from .config import TrainConfig, TrainError, lr_at, validate
from .data import (StepSampler, TrainPairs, fingerprint, scan, single_threaded_opencv, validation_pairs,
                   worker_init)
from .distributed import gather_rng, pick_device, restore_rng, seed_everything, this_process
from .losses import CriticTerms, build_content_loss, critic_loss, generator_adversarial_loss, gradient_penalty
from .models import check_crop, create_generator, crop_limits
from .models.discriminator import NLayerDiscriminator, init_weights
from .monitor import RunLog, image_scores, restore, save_grid, to_uint8_images

log = logging.getLogger(__name__)

_NOT_COMPARABLE = "val.csv rows from here on are not comparable with earlier ones"
LOSS_NAMES = ("loss_critic", "loss_g", "loss_adv", "loss_content", "critic_gap", "gradient_penalty")
# Flags that may differ on --resume: how a run is watched, where it reads from, and what a
# stopped run needs to go on (a longer schedule, a lower LR or no AMP after a non-finite loss,
# another machine's precision); each change but the watching ones is said. The rest (model,
# losses, seed, batch) would make it another run.
RESUME_MAY_CHANGE = {"data", "val", "workers", "device", "log_every", "val_every", "checkpoint_every",
                     "snapshot_every", "compile", "channels_last", "steps", "amp", "amp_dtype", "lr"}


@dataclass
class TrainResult:
    step: int
    checkpoint: Path
    val: dict  # the last validation row: psnr, ssim and the identity baseline's
    stopped_by: signal.Signals | None = None  # SIGINT / SIGTERM when a signal ended the run early


def train(config: TrainConfig, run_dir: str | os.PathLike, *, resume: bool = False,
          stop_at: int | None = None) -> TrainResult:
    """Train (or continue, with ``resume``) into ``run_dir``; ``stop_at`` ends early after that
    step with a checkpoint, as a time-limited job would, and ``resume`` later carries on."""
    # ---------------------------------------------------------------- setup
    run_dir = Path(run_dir)
    latest = run_dir / "checkpoints" / "latest.pt"
    process = this_process()
    ddp, rank, world_size, master = process.distributed, process.rank, process.world_size, process.master
    device = pick_device(config.device, process.local_rank)
    if device.type == "cuda":
        # Every training batch has the same shape, so cuDNN's algorithm search runs once per
        # layer and pays for itself within the first steps.
        torch.backends.cudnn.benchmark = True
    if ddp:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    cleanup = contextlib.ExitStack()  # closed last: log files, progress bar, worker processes
    try:
        if resume and not latest.is_file():
            raise TrainError(f"{latest}: nothing to resume; start the run without --resume")
        if not resume and latest.exists():
            raise TrainError(f"{run_dir} already holds a run (step {_stored_step(latest)}); "
                             "pass --resume to continue it or choose another --out")
        checkpoint = load_checkpoint(latest) if resume else None
        start_step = int(checkpoint["step"]) if checkpoint else 0
        if start_step >= config.steps:
            done = f"finished at step {start_step}" if start_step == config.steps else \
                f"is at step {start_step}, past --steps {config.steps}"
            raise TrainError(f"{run_dir} {done}; pass a larger --steps to train on (the learning-rate schedule "
                             "stretches accordingly)")
        if stop_at is not None and stop_at <= start_step:
            raise TrainError(f"--stop-at {stop_at} is not after the run's step {start_step}")
        if master:  # where the run writes, checked before minutes of scanning and training (not created:
            try:        # a run refused later leaves no folder behind)
                check_can_write(latest)
                for folder in (latest.parent, run_dir / "samples"):
                    if folder.exists() and not folder.is_dir():
                        raise InputError(f"{folder} is a file, not a folder")
            except InputError as exc:
                raise TrainError(f"--out {run_dir}: cannot write the run there ({exc}); choose another --out") from None
        seed_everything(config.seed + rank)  # each rank its own dropout masks and penalty coefficients
        amp_dtype = _amp_dtype(config, device)
        autocast = (lambda: torch.autocast(device.type, dtype=amp_dtype)) if amp_dtype else contextlib.nullcontext
        # Losses and models come before the data: a missing VGG file or a wrong model flag
        # should fail before minutes of image scanning.
        content_loss = build_content_loss(config.content, config.vgg_weights, config.fft_weight).to(device)

        # ----------------------------------------------------------- models
        try:
            generator = create_generator(config.arch, **config.arch_args)
        except (TypeError, ValueError) as exc:
            raise TrainError(f"cannot build {config.arch} from {config.arch_args}: {exc} (--ngf, --n-blocks and "
                             "--coarse-blocks shape the deblurgan recipe's ResNet; --ngf and --num-downs pix2pix's "
                             "U-Net)") from None
        init_weights(generator)
        # Where the starting weights came from, and how many updates they already had: kept in
        # every checkpoint so exports report the total training (train_step) and its lineage.
        init = (checkpoint.get("meta") or {}).get("init") if checkpoint else None
        if config.init_from and not checkpoint:
            source = init_generator_from(generator, config.arch, config.init_from, seed=config.seed)
            # None: weights from elsewhere (e.g. DeblurGAN's own) whose training we cannot count.
            prior = source.meta.get("total_steps", source.step)
            init = {"path": str(Path(config.init_from).resolve()), "sha256": source.sha256, "steps": prior,
                    "init": source.meta.get("init"), "arch_args": source.arch_args}
            if master:
                grown = {k: v for k, v in config.arch_args.items() if k != "dropout" and source.arch_args.get(k, 0) != v}
                log.info("generator initialised from %s (%s steps of training)%s", config.init_from, prior,
                         "; grown from " + ", ".join(f"{k} {source.arch_args.get(k, 0)} -> {v}" for k, v in grown.items())
                         if grown else "")
                if "n_blocks" in grown and config.warmup == 0:
                    # Measured: one Adam step at LR 1e-4 took a grown 9-block model from 25.70
                    # to 22.80 dB (a width-only one: 25.50); experiments.md.
                    log.warning("the new ResNet blocks start as the identity through InstanceNorm(0), whose "
                                "gradient is ~300x: without --warmup the first full-LR steps wreck the "
                                "grown model; pass --warmup 500 (or grow only --ngf)")
        # (Below its minimum an InstanceNorm sees one pixel: a RuntimeError deep in torch.)
        try:
            check_crop(generator, config.crop)
            check_crop(generator, config.val_crop, "--val-crop", ssim=True)
        except ValueError as exc:
            raise TrainError(str(exc)) from None
        multiple, smallest = crop_limits(generator)
        if config.train_only:
            freeze_except(generator, config.train_only)
        critic = NLayerDiscriminator(6 if config.conditional_critic else 3, config.ndf, config.critic_layers)
        init_weights(critic)
        generator, critic = generator.to(device), critic.to(device)
        layout = torch.channels_last if config.channels_last else torch.contiguous_format
        generator, critic = generator.to(memory_format=layout), critic.to(memory_format=layout)

        # ------------------------------------------------------------- data
        said: set[str] = set()  # layout warnings, once for training and validation together
        train_items = scan(config.data, config.crop, what="training", multiple=multiple, smallest=smallest, said=said)
        data_files = fingerprint(train_items)
        saved_meta = (checkpoint.get("meta") or {}) if checkpoint else {}
        if master and saved_meta.get("data_files") not in (None, data_files) and saved_meta.get("data") == config.data:
            # Same folders, other contents: the step -> batch mapping is not the saved run's any more.
            log.warning("the training folders changed since this checkpoint (%d images then, %d now): batches from "
                        "here on differ from an uninterrupted run's%s", saved_meta["data_files"]["count"],
                        data_files["count"], "" if config.val else f", and so does validation (no --val): {_NOT_COMPARABLE}")
        if master:
            if not config.val:
                log.warning("no --val folder: validating on crops of the training photos "
                            "(numbers then measure fit, not generalisation)")
            val_items = scan(config.val or config.data, config.val_crop, what="validation", option="--val-crop",
                             multiple=multiple, smallest=smallest, said=said)
            val_blurred, val_sharp = validation_pairs(val_items, config.val_crop, config.val_count,
                                                      config.val_seed, config.blur)
            identity = image_scores(to_uint8_images(val_blurred), to_uint8_images(val_sharp))
            run_dir.mkdir(parents=True, exist_ok=True)
            _write_json(run_dir / "config.json", config.to_dict())
            run_log = cleanup.enter_context(contextlib.closing(RunLog(run_dir, start_step if resume else None)))

        # ------------------------------------------------------- optimisers
        opt_g = torch.optim.Adam([p for p in generator.parameters() if p.requires_grad], lr=config.lr,
                                 betas=config.betas)
        opt_d = torch.optim.Adam(critic.parameters(), lr=config.lr, betas=config.betas)
        # Loss scaling only for fp16; disabled scalers are no-ops (scale 1), so one code path.
        fp16 = amp_dtype == torch.float16
        scaler_g = torch.amp.GradScaler(device.type, enabled=fp16)
        scaler_d = torch.amp.GradScaler(device.type, enabled=fp16)

        # ----------------------------------------------------------- resume
        if checkpoint:
            try:
                generator.load_state_dict(checkpoint["generator"])
                critic.load_state_dict(checkpoint["critic"])
                opt_g.load_state_dict(checkpoint["optimizers"]["generator"])
                opt_d.load_state_dict(checkpoint["optimizers"]["critic"])
                # A run saved without fp16 has empty scaler states; --amp may switch on at resume.
                for scaler, name in ((scaler_g, "generator"), (scaler_d, "critic")):
                    if checkpoint["scalers"][name]:
                        scaler.load_state_dict(checkpoint["scalers"][name])
            except (KeyError, RuntimeError) as exc:
                raise CheckpointError(f"{latest}: cannot resume from it ({first_line(exc, 200)}); "
                                      "is it a deblur-train checkpoint of this run?") from None
            # Adam's moments come back in the layout they were saved in; a run resumed with the
            # other --channels-last would step them apart from their weights (slower kernels).
            for opt in (opt_g, opt_d):
                for group in opt.param_groups:
                    for param in group["params"]:
                        for key, value in opt.state.get(param, {}).items():
                            if torch.is_tensor(value) and value.shape == param.shape and value.dim() == 4:
                                opt.state[param][key] = value.contiguous(memory_format=layout)
            restore_rng(checkpoint.get("rng", []), rank, world_size, device)
            if master:
                log.info("resumed %s at step %d", run_dir, start_step)
        del checkpoint

        # The data position is the step: the sampler starts where the last run stopped.
        sampler = StepSampler(len(train_items), config.batch_size, seed=config.seed, rank=rank,
                              world_size=world_size, start_step=start_step)
        if _usable_workers(config.workers):
            single_threaded_opencv()  # before the workers fork (data.py says why)
        loader = DataLoader(TrainPairs(train_items, config.crop, config.seed, config.blur),
                            batch_size=config.batch_size, sampler=sampler, num_workers=_usable_workers(config.workers),
                            pin_memory=device.type == "cuda", worker_init_fn=worker_init,
                            # Its own generator: creating the iterator must not consume the global RNG.
                            generator=torch.Generator())

        # ---------------------------------------------------------- wrap
        raw_generator, raw_critic = generator, critic  # for checkpoints, validation and the G step
        if config.compile:
            # Only the generator: the gradient penalty needs double backward through the critic,
            # which compiled graphs do not support.
            generator = torch.compile(generator)
        if ddp:
            device_ids = [process.local_rank] if device.type == "cuda" else None
            generator, critic = DDP(generator, device_ids=device_ids), DDP(critic, device_ids=device_ids)

        # ------------------------------------------------------------ loop
        end_step = min(config.steps, stop_at) if stop_at is not None else config.steps
        last_val: dict = {}
        if master and start_step == 0:
            last_val = _validate(raw_generator, val_blurred, val_sharp, identity, device, 0, run_log, run_dir)
        show_bar = master and sys.stderr.isatty() and log.isEnabledFor(logging.INFO)  # not with -q
        progress = cleanup.enter_context(tqdm(total=config.steps, initial=start_step, desc="train",
                                              disable=not show_bar, dynamic_ncols=True))
        if not progress.disable:
            cleanup.enter_context(logging_redirect_tqdm())  # log lines above the bar, not through it
        batches = iter(loader)
        step = start_step
        # step_time is the mean since the last log line: single steps swing 20x with data-loader
        # stalls (0.02 s vs 0.5 s on a GPU), which misled the GPU recipe's step-time calibration.
        interval_time, interval_steps = 0.0, 0
        stop = cleanup.enter_context(StopOnSignal("stopping after this step with a checkpoint"))
        while step < end_step:
            t0 = time.perf_counter()
            lr = lr_at(step, config)
            for opt in (opt_g, opt_d):
                for group in opt.param_groups:
                    group["lr"] = lr
            # (B, 3, C, C) in [-1, 1]
            blurred, sharp = (t.to(device, non_blocking=True, memory_format=layout) for t in next(batches))
            condition = blurred if config.conditional_critic else None  # pix2pix's critic sees the input too

            # Critic: `critic_steps` updates on this batch (as DeblurGAN), against one restoration.
            # With adv_weight 0 there is no adversarial term, so no critic to train.
            terms = CriticTerms(*(torch.zeros((), device=device) for _ in range(3)))
            if config.adv_weight > 0:
                with torch.no_grad(), autocast():
                    fake = generator(blurred)
            for _ in range(config.critic_steps if config.adv_weight > 0 else 0):
                with autocast():
                    real_map, fake_map = critic(_with(condition, sharp)), critic(_with(condition, fake))
                    if config.gan_loss == "wgan-gp":
                        penalty = gradient_penalty(critic, sharp, fake, condition=condition)
                    else:
                        penalty = torch.zeros((), device=device)
                    terms = critic_loss(config.gan_loss, real_map.float(), fake_map.float(), penalty, config.gp_weight)
                opt_d.zero_grad(set_to_none=True)
                scaler_d.scale(terms.loss).backward()
                scaler_d.step(opt_d)
                scaler_d.update()

            # Generator: adversarial + content_weight x content. The critic runs unwrapped and
            # frozen here, so DDP does not wait for critic gradients nobody computes.
            raw_critic.requires_grad_(False)
            with autocast():
                restored = generator(blurred)
                if config.adv_weight > 0:
                    adversarial = generator_adversarial_loss(config.gan_loss, raw_critic(_with(condition, restored)).float())
                else:
                    adversarial = torch.zeros((), device=device)
                content = content_loss(restored.float(), sharp)
                loss_g = config.adv_weight * adversarial + config.content_weight * content
            opt_g.zero_grad(set_to_none=True)
            scaler_g.scale(loss_g).backward()
            scaler_g.step(opt_g)
            scaler_g.update()
            raw_critic.requires_grad_(True)
            step += 1

            losses = torch.stack([terms.loss, loss_g, adversarial, content, terms.gap, terms.penalty]).detach().float()
            # The stop request rides along: one all_reduce, and every rank stops at the same step.
            losses = torch.cat([losses, torch.tensor([float(stop.signal is not None)], device=losses.device)])
            if ddp:  # every rank sees the same numbers, so every rank takes the same decision below
                dist.all_reduce(losses)
                losses /= world_size
            *numbers, stop_requested = losses.tolist()
            values = dict(zip(LOSS_NAMES, numbers))
            # A signal during the last step: the run is done anyway, so it ends as finished (a
            # "stopped" run at its last step could not be resumed).
            stopping = stop_requested > 0 and step < end_step
            if not all(math.isfinite(v) for v in values.values()):
                bad = ", ".join(f"{k}={v}" for k, v in values.items() if not math.isfinite(v))
                if latest.is_file():
                    fix = (f"Last good checkpoint: {latest} (step {_stored_step(latest)}); continue from it with "
                           f"--resume --lr {config.lr / 10:g}" + (" (or --no-amp)" if config.amp else ""))
                else:
                    fix = (f"No checkpoint was written yet: start again with a lower --lr (e.g. {config.lr / 10:g})"
                           + (" or without --amp" if config.amp else ""))
                raise TrainError(f"non-finite loss at step {step} ({bad}); stopped. {fix}")
            interval_time += time.perf_counter() - t0
            interval_steps += 1
            row = {"step": step, "lr": lr, **values, "step_time": interval_time / interval_steps}

            final = step == end_step or stopping
            save_latest = step % config.checkpoint_every == 0 or final
            save_snapshot = step % config.snapshot_every == 0
            rng = gather_rng(device, ddp, world_size) if save_latest or save_snapshot else None
            if master:
                progress.update(1)
                progress.set_postfix(g=f"{values['loss_g']:.3f}", gap=f"{values['critic_gap']:.3f}", lr=f"{lr:.1e}")
                if step % config.log_every == 0 or final:
                    run_log.write("train", row)
                    if progress.disable:
                        log.info("step %d/%d  loss_g %.4f  content %.4f  gap %.4f  gp %.4f  lr %.2e  %.2fs/step",
                                 step, config.steps, values["loss_g"], values["loss_content"],
                                 values["critic_gap"], values["gradient_penalty"], lr, row["step_time"])
                    interval_time, interval_steps = 0.0, 0
                if step % config.val_every == 0 or (final and not stopping):  # a signal wants out now
                    last_val = _validate(raw_generator, val_blurred, val_sharp, identity, device, step, run_log, run_dir)
                if not (save_latest or save_snapshot):
                    continue  # never when stopping: final saves
                state = dict(
                    arch=config.arch, arch_args=raw_generator.arch_args, step=step,
                    meta={"config": config.to_dict(), "data": config.data, "data_files": data_files,
                          "losses": values, "val": last_val,
                          "init": init, "total_steps": _total_steps(step, init)},
                    critic=raw_critic.state_dict(),
                    optimizers={"generator": opt_g.state_dict(), "critic": opt_d.state_dict()},
                    scalers={"generator": scaler_g.state_dict(), "critic": scaler_d.state_dict()},
                    rng=rng, config=config.to_dict())
                if save_latest:
                    save_checkpoint(latest, raw_generator, **state)
                if save_snapshot:
                    save_checkpoint(latest.with_name(f"step_{step:07d}.pt"), raw_generator, **state)
            if stopping:
                if master:
                    log.warning("stopped at step %d (%s); continue with --resume", step,
                                stop.signal.name if stop.signal else "a signal on another rank")
                return TrainResult(step, latest, last_val, stop.signal or signal.SIGINT)
        return TrainResult(step, latest, last_val)
    finally:
        cleanup.close()
        if ddp:
            if sys.exc_info()[1] is None:
                # Ranks leave together: rank 0 validates and saves after the last step, and a rank
                # that tore gloo down and exited meanwhile was seen to abort ("terminate called
                # without an active exception"). After an error, torchrun stops the others instead.
                dist.barrier()
            dist.destroy_process_group()


def freeze_except(generator: torch.nn.Module, prefixes: list[str]) -> None:
    """Train only the parameters whose names start with one of ``prefixes``."""
    names = [name for name, _ in generator.named_parameters()]
    unmatched = [p for p in prefixes if not any(name.startswith(p) for name in names)]
    if unmatched:
        parts = sorted({name.split(".")[0] for name in names})
        raise TrainError(f"--train-only {', '.join(unmatched)}: no generator parameter is named so; its parts: "
                         f"{', '.join(p + '.' for p in parts)} (e.g. coarse. needs --coarse-blocks)")
    for name, param in generator.named_parameters():
        param.requires_grad_(any(name.startswith(p) for p in prefixes))


def _total_steps(step: int, init: dict | None) -> int | None:
    """This run's steps plus those its starting weights had; None when those are unknown."""
    if init is None:
        return step
    return None if init["steps"] is None else step + int(init["steps"])


def resume_config(run_dir: str | os.PathLike, overrides: dict) -> TrainConfig:
    """The stored run's config, with only the overrides that cannot change what it computes."""
    latest = Path(run_dir) / "checkpoints" / "latest.pt"
    if not latest.is_file():
        raise TrainError(f"{latest}: nothing to resume; start the run without --resume")
    stored = load_checkpoint(latest).get("config")
    if not isinstance(stored, dict):
        raise TrainError(f"{latest}: holds no training config; it was not written by deblur-train")
    config = TrainConfig.from_dict(stored)
    conflicts, changed = [], {}
    for key, value in overrides.items():
        current = getattr(config, key)
        if key == "arch_args":
            value = {**current, **value}
        if value == current or (isinstance(current, tuple) and tuple(value) == current):
            continue
        if key not in RESUME_MAY_CHANGE:
            conflicts.append(f"{key} ({current!r} -> {value!r})")
            continue
        changed[key] = current
        setattr(config, key, value)
    if conflicts:
        raise TrainError(f"--resume keeps the run's settings; these differ: {', '.join(conflicts)}. "
                         "Drop those options, or start a new run with another --out")
    validate(config)
    # Said only once the resume is accepted, and of the settings it ends up with.
    for key, before in changed.items():
        if key == "steps":
            log.warning("--steps %d -> %d: the learning-rate schedule changes from here on", before, config.steps)
        if key == "lr":  # what a non-finite loss asks for
            log.warning("--lr %g -> %g: the learning rate differs from here on (the schedule's shape stays)",
                        before, config.lr)
        if key in ("channels_last", "compile", "device"):
            log.warning("--%s changed: the same computation %s (floating-point sums round differently from here on)",
                        key.replace("_", "-"), {"channels_last": "in another memory layout", "compile": "compiled "
                        "otherwise", "device": f"on {config.device}"}[key])
        if key in ("amp", "amp_dtype"):
            log.warning("--%s changed: the precision differs from here on (e.g. another machine); the data and "
                        "schedule do not", key.replace("_", "-"))
        if key == "data":
            log.warning("--data changed: batches from here on follow the new image list, not the old run's%s",
                        "" if config.val else f", and so does validation (no --val): {_NOT_COMPARABLE}")
        if key == "val":
            log.warning("--val changed: validation uses other images from here on: %s", _NOT_COMPARABLE)
    return config


def _with(condition: torch.Tensor | None, image: torch.Tensor) -> torch.Tensor:
    """The critic's input: the image, or (condition, image) stacked on channels (6 channels)."""
    return image if condition is None else torch.cat([condition, image], 1)


def _validate(generator, blurred, sharp, identity, device, step, run_log, run_dir) -> dict:
    restored = to_uint8_images(restore(generator, blurred, device))
    blurred_u8, sharp_u8 = to_uint8_images(blurred), to_uint8_images(sharp)
    psnr, ssim = image_scores(restored, sharp_u8)
    row = {"step": step, "psnr": psnr, "ssim": ssim, "psnr_identity": identity[0], "ssim_identity": identity[1]}
    run_log.write("val", row)
    save_grid(run_dir / "samples" / f"step_{step:07d}.png", blurred_u8, restored, sharp_u8)
    log.info("val step %d: PSNR %.2f dB, SSIM %.4f (identity %.2f dB, %.4f)", step, psnr, ssim, *identity)
    return row


def _amp_dtype(config: TrainConfig, device: torch.device) -> torch.dtype | None:
    if not config.amp:
        return None
    if device.type == "cpu":
        # bf16 autocast pays on CPUs with native bf16 (AVX512-BF16 / AMX: 2.0x for the default
        # model's bare generator step on a 2-core Sapphire Rapids, 1.6x per training step with
        # the data); elsewhere oneDNN emulates it, slower than fp32.
        if config.amp_dtype != "bf16":
            raise TrainError("--amp on the CPU is bf16 only; drop --amp-dtype fp16")
        if not cpu_has_native_bf16():
            raise TrainError("this CPU has no native bf16 (AVX512-BF16 or AMX), so --amp would be slower than "
                             "float32: drop --amp")
        return torch.bfloat16
    if device.type != "cuda":
        raise TrainError(f"--amp is for CUDA GPUs and bf16-capable CPUs, not {device.type}: drop --amp")
    if config.amp_dtype == "bf16" and not torch.cuda.is_bf16_supported():
        log.warning("this GPU has no bf16; using fp16 with loss scaling")
        return torch.float16
    return torch.bfloat16 if config.amp_dtype == "bf16" else torch.float16


def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (x86 AVX512-BF16 or AMX-BF16; Linux flags)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def _usable_workers(requested: int) -> int:
    # More workers than cores only thrash; the data do not depend on the count, so cap it.
    return min(requested, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def _stored_step(path: Path) -> int | str:
    try:
        return load_checkpoint(path).get("step", "?")
    except CheckpointError:
        return "unreadable"


def _write_json(path: Path, data: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, default=list) + "\n", encoding="utf-8")
