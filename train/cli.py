"""``deblur-train``: parse options into a config, call ``train()``, report. Nothing else."""

from __future__ import annotations

import logging
import os
import sys

import click

from deblur.runtime.errors import report_errors, setup_logging
from deblur.runtime.version import __version__

log = logging.getLogger("deblur.train")


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--data", "data", multiple=True, metavar="PATH",
              help="Training folder (repeatable): sharp photos (blurred on the fly) and/or GoPro-style "
                   "<scene>/blur + <scene>/sharp pairs.")
@click.option("--val", "val", multiple=True, metavar="PATH",
              help="Validation folder (repeatable). Default: fixed crops of the training photos.")
@click.option("--out", "run_dir", required=True, type=click.Path(file_okay=False), metavar="RUN_DIR",
              help="Run folder: checkpoints/, samples/, metrics.jsonl, train.csv, val.csv, config.json.")
@click.option("--recipe", type=click.Choice(["deblurgan", "pix2pix"]), default=None,
              help="deblurgan (default): ResNet G, WGAN-GP, 5 critic steps, Adam 1e-4. "
                   "pix2pix: U-Net G, conditional PatchGAN, BCE + 100 x L1, Adam 2e-4.")
@click.option("--steps", type=int, help="Generator updates (deblurgan: 300000). LR decays linearly to 0 "
                                        "over the second half.")
@click.option("--batch-size", type=int, help="Per process (default 1, as the paper).")
@click.option("--crop", type=int, help="Training crop in pixels (default 256); smaller images are skipped.")
@click.option("--val-crop", type=int, help="Centre crop of each validation image (default: --crop).")
@click.option("--val-count", type=int, help="Number of fixed validation pairs (default 16).")
@click.option("--ngf", type=int, help="Generator width (default 64).")
@click.option("--n-blocks", type=int, help="ResNet blocks of the deblurgan generator (default 9).")
@click.option("--coarse-blocks", type=int, help="ResNet blocks at 1/8 resolution after the deblurgan generator's "
              "blocks (default 0: DeblurGAN's layout). With --init-from, the branch starts silent.")
@click.option("--train-only", "train_only", multiple=True, metavar="PREFIX",
              help="Train only generator parameters whose names start with PREFIX (repeatable; end it with a dot: "
                   "model.1 would match model.10 too), e.g. 'coarse.' to train a newly grown coarse branch on "
                   "frozen trained weights.")
@click.option("--num-downs", type=int, help="U-Net levels of the pix2pix generator (default 8: unet_256).")
@click.option("--dropout/--no-dropout", default=None, help="Dropout(0.5) in the generator (the papers' "
              "default). Compact generators fit better without it.")
@click.option("--init-from", type=click.Path(dir_okay=False, readable=False), metavar="CKPT",
              help="Start the generator from this checkpoint (ours or DeblurGAN's latest_net_G.pth) instead "
              "of random weights, in its architecture (--dropout/--no-dropout may differ). A larger --ngf / "
              "--n-blocks grows a ResNet generator into a wider/deeper one that starts with the same "
              "output (Net2Net), so a bigger model need not start from scratch.")
@click.option("--ndf", type=int, help="Critic width (default 64).")
@click.option("--content", type=click.Choice(["perceptual", "l1", "l1+fft", "mse"]),
              help="Content loss, weighted 100x. deblurgan default: perceptual (VGG19 conv3_3), which needs "
                   "torchvision's vgg19-dcbb9e9d.pth in ~/.cache/torch/hub/checkpoints/ or --vgg-weights; "
                   "without it this is an error, never a random VGG - pass l1+fft instead. pix2pix: l1. "
                   "mse: the metric itself (PSNR), for a last leg after L1 training.")
@click.option("--fft-weight", type=float, help="--content l1+fft: weight of the spectral L1 term on the "
              "orthonormal spectrum (default 0.1: ~8 % of the pixel term; MIMO-UNet's setting is ~25.6 at 256 px).")
@click.option("--vgg-weights", type=click.Path(dir_okay=False, readable=False), metavar="FILE",
              help="torchvision's VGG19 ImageNet state dict for --content perceptual.")
@click.option("--adv-weight", type=float, help="Weight of the adversarial term (default 1). 0 trains on the "
                                             "content loss alone and skips the critic: PSNR-oriented, much faster.")
@click.option("--critic-steps", type=int, help="Critic updates per generator update (deblurgan 5, pix2pix 1).")
@click.option("--lr", type=float, help="Adam learning rate (deblurgan 1e-4, pix2pix 2e-4).")
@click.option("--warmup", type=int, help="Ramp the LR up linearly over the first N steps (default 0). Worth a "
              "few hundred when starting from trained weights (--init-from), grown ones above all.")
@click.option("--device", type=click.Choice(["auto", "cpu", "cuda"]), help="Default auto: CUDA when available.")
@click.option("--amp/--no-amp", default=None, help="Mixed precision: bf16 (or fp16 with loss scaling) on CUDA; bf16 on CPUs "
              "with native bf16 (AVX512-BF16/AMX), ~1.6x per training step there (0.27 -> 0.17 s for the default recipe).")
@click.option("--amp-dtype", type=click.Choice(["bf16", "fp16"]), help="Precision of --amp (default bf16).")
@click.option("--compile/--no-compile", "compile_", default=None, help="torch.compile the generator.")
@click.option("--channels-last/--no-channels-last", default=None, help="NHWC memory layout for the models (GPUs "
              "with tensor cores; slower on CPUs unless with --compile); `deblur-bench train-speed` measures "
              "whether it pays on yours.")
@click.option("--seed", type=int, help="Seed of the data order, augmentation and initialisation (default 0).")
@click.option("--workers", type=int, help="DataLoader worker processes per process (default 4).")
@click.option("--log-every", type=int, help="Steps between metric rows (default 50).")
@click.option("--val-every", type=int, help="Steps between validations and sample grids (default 5000).")
@click.option("--checkpoint-every", type=int, help="Steps between writes of checkpoints/latest.pt (default 1000).")
@click.option("--snapshot-every", type=int, help="Steps between kept checkpoints/step_N.pt (default 50000).")
@click.option("--resume", is_flag=True, help="Continue RUN_DIR from checkpoints/latest.pt with its settings, "
                                             "optimiser, RNG and data position.")
@click.option("--stop-at", type=int, metavar="STEP", help="Stop after STEP (checkpointed) without ending the "
                                                          "schedule, e.g. for time-limited jobs; --resume continues.")
@click.option("-q", "--quiet", is_flag=True, help="Warnings and the final summary only (no progress lines).")
@click.option("-v", "--verbose", is_flag=True, help="More logging.")
@click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
@click.version_option(__version__, "-V", "--version", prog_name="deblur-train")
@report_errors
def main(run_dir: str, recipe: str | None, resume: bool, stop_at: int | None, quiet: bool, verbose: bool, debug: bool,
         ngf: int | None, n_blocks: int | None, coarse_blocks: int | None, num_downs: int | None,
         dropout: bool | None,
         compile_: bool | None, **options) -> None:
    """Train a deblurring generator; checkpoints go to RUN_DIR/checkpoints/latest.pt for deblur-export.

    Options left out take the recipe's value; with --resume they take the stored run's. A resume
    refuses what would make it another run (model, losses, seed, batch, crop); --steps, --lr,
    --amp, --compile, --channels-last, --device, --data and --val may change, each said.

    \b
    Examples:
      deblur-train --data ../shared/data/sharp/Urban100 --val ../shared/data/sharp/Set14 \\
                   --out runs/dgan --content l1+fft
      deblur-train --data GOPRO/train --val GOPRO/test --out runs/gopro --vgg-weights vgg19-dcbb9e9d.pth --amp
      deblur-train --out runs/dgan --resume
      torchrun --standalone --nproc_per_node 4 -m deblur.train.cli --data ... --out runs/ddp
    """
    # Under torchrun every rank runs this; only rank 0 reports progress, the others warnings.
    setup_logging(verbose, quiet=quiet or os.environ.get("RANK", "0") != "0")
    from .config import TrainError, make_config  # torch-free, but keep `--help` fast and uniform
    from .trainer import resume_config, train

    overrides = {key: value for key, value in options.items() if value not in (None, ())}
    for key in ("data", "val", "train_only"):
        if key in overrides:
            overrides[key] = list(overrides[key])
    if compile_ is not None:
        overrides["compile"] = compile_
    arch_args = {k: v for k, v in (("ngf", ngf), ("n_blocks", n_blocks), ("coarse_blocks", coarse_blocks),
                                   ("num_downs", num_downs), ("dropout", dropout)) if v is not None}
    if overrides.get("init_from") and not resume:
        from .checkpoint import load_generator

        source = load_generator(overrides["init_from"])
        if recipe == "pix2pix" and source.arch != "unet_generator":
            log.warning("--init-from holds a %s: training it with the pix2pix losses, not a U-Net", source.arch)
        overrides["arch"] = source.arch
        arch_args = {**source.arch_args, **arch_args}
    if arch_args:
        overrides["arch_args"] = arch_args
    if resume:
        if recipe is not None:
            overrides["recipe"] = recipe
        config = resume_config(run_dir, overrides)
    else:
        config = make_config(recipe or "deblurgan", **overrides)
    import torch

    try:
        result = train(config, run_dir, resume=resume, stop_at=stop_at)
    except torch.cuda.OutOfMemoryError:  # (torch.OutOfMemoryError only from torch 2.5)
        raise TrainError(f"out of GPU memory at --batch-size {config.batch_size}, --crop {config.crop}, "
                         f"--val-crop {config.val_crop}: start a run with smaller ones (or --amp)") from None
    if result.val:
        scores = (f"PSNR {result.val['psnr']:.2f} dB, SSIM {result.val['ssim']:.4f} (blurred input: "
                  f"{result.val['psnr_identity']:.2f} dB, {result.val['ssim_identity']:.4f})")
        if result.step == result.val["step"]:
            click.echo(f"step {result.step}: validation {scores}; checkpoint {result.checkpoint}")
        else:  # a signal stop skips the final validation: the scores are an earlier step's
            click.echo(f"stopped at step {result.step}, checkpoint {result.checkpoint}; last validation "
                       f"(step {result.val['step']}): {scores}")
    if result.stopped_by:
        # The shell's convention for "ended by a signal": scripts see the run did not finish.
        sys.exit(128 + int(result.stopped_by))


if __name__ == "__main__":
    main()
