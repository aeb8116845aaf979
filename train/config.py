"""Training recipes as dataclasses: one flat, commented config per run.

A recipe is a ``TrainConfig`` with the paper's defaults; the CLI overrides fields by name
(unknown names are errors) and the resolved config is written to ``RUN_DIR/config.json``
and into every checkpoint, so a run can always say exactly how it was made.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from deblur.runtime.errors import DeblurError

from .blur import BlurConfig


class TrainError(DeblurError):
    """A training run that cannot start or continue; the message names the cause and the fix."""


CONTENT_LOSSES = ("perceptual", "l1", "l1+fft", "mse")
GAN_LOSSES = ("wgan-gp", "bce")


@dataclass
class TrainConfig:
    recipe: str = "deblurgan"
    # --- data
    data: list[str] = field(default_factory=list)  # folders: GoPro-style pairs and/or sharp photos
    val: list[str] = field(default_factory=list)  # empty: validate on (fixed crops of) the training photos
    crop: int = 256  # random training crop, square
    val_crop: int | None = None  # centre crop of each validation image; None: the training crop
    val_count: int = 16  # validation pairs, fixed for the whole run
    val_seed: int = 1234  # blur of the validation pairs: same seed, same numbers across runs
    workers: int = 4  # DataLoader worker processes per rank
    blur: BlurConfig = field(default_factory=BlurConfig)
    # --- models
    arch: str = "resnet_generator"
    arch_args: dict = field(default_factory=lambda: {"ngf": 64, "n_blocks": 9, "dropout": True})
    init_from: str | None = None  # generator checkpoint to start from (fine-tuning); None: random init
    # Parameter-name prefixes of the generator to train (e.g. ["coarse."]); the rest stays
    # frozen. Empty: all. A part grown onto trained weights can learn at a high LR while the
    # small-batch noise of a CPU leg cannot pull the trained rest off its optimum.
    train_only: list[str] = field(default_factory=list)
    ndf: int = 64  # critic width
    critic_layers: int = 3  # strided convolutions in the PatchGAN critic
    conditional_critic: bool = False  # pix2pix: the critic also sees the blurred input
    # --- losses
    gan_loss: str = "wgan-gp"
    adv_weight: float = 1.0  # 0: content loss only (PSNR-oriented pre-training; no critic is trained)
    gp_weight: float = 10.0  # lambda of the gradient penalty
    critic_steps: int = 5  # critic updates per generator update
    content: str = "perceptual"  # perceptual | l1 | l1+fft | mse
    content_weight: float = 100.0
    # l1+fft: weight of the spectral L1 term against the pixel one (orthonormal spectrum, see
    # losses.L1FFTLoss: 0.1 is ~8 % of the pixel term; MIMO-UNet's setting is ~25.6 at 256 px).
    fft_weight: float = 0.1
    vgg_weights: str | None = None  # None: look in the torch hub cache
    # --- optimisation
    steps: int = 300_000  # generator updates
    batch_size: int = 1  # per process
    lr: float = 1e-4
    betas: tuple[float, float] = (0.5, 0.999)
    decay_start: float = 0.5  # fraction of `steps` after which the LR decays linearly to 0
    # Steps of a linear LR ramp from 0 at the start. Fine-tuning wants it: Adam starts with
    # no moment estimates, so its first updates are full lr-sized steps that knock trained
    # (or newly grown) weights off their optimum before the gradients' scale is known.
    warmup: int = 0
    # --- running
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    amp: bool = False  # CUDA, or CPUs with native bf16
    amp_dtype: str = "bf16"  # bf16 | fp16 (fp16 adds loss scaling)
    compile: bool = False  # torch.compile the generator (the critic needs double backward)
    # NHWC weights and batches: tensor-core GPUs convolve NHWC natively and NCHW pays transposes;
    # on the 2-core CPU it was 0.9x alone, 1.04-1.09x on top of `compile` (experiments.md).
    # Measure with `deblur-bench train-speed`.
    channels_last: bool = False
    log_every: int = 50
    val_every: int = 5000
    checkpoint_every: int = 1000  # RUN_DIR/checkpoints/latest.pt
    snapshot_every: int = 50_000  # RUN_DIR/checkpoints/step_NNNNNNN.pt, kept

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        values = dict(values)
        blur = values.pop("blur", {}) or {}
        config = replace(cls(), **values)
        # JSON and torch.save give lists back where the dataclasses declare tuples.
        config.blur = BlurConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in blur.items()})
        config.betas = tuple(config.betas)
        return config


def deblurgan() -> TrainConfig:
    """Kupyn et al. 2018: ResNet generator, PatchGAN critic, WGAN-GP, 100 x perceptual."""
    return TrainConfig()


def pix2pix() -> TrainConfig:
    """Isola et al. 2017: U-Net generator, conditional PatchGAN, BCE GAN loss + 100 x L1."""
    return TrainConfig(
        recipe="pix2pix",
        arch="unet_generator",
        arch_args={"num_downs": 8, "ngf": 64, "dropout": True, "norm": "batch"},
        conditional_critic=True,
        gan_loss="bce",
        critic_steps=1,
        content="l1",
        lr=2e-4,
    )


RECIPES = {"deblurgan": deblurgan, "pix2pix": pix2pix}


def replace(config: TrainConfig, **overrides: Any) -> TrainConfig:
    """``dataclasses.replace`` with a TrainError that lists the valid names for a typo."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise TrainError(f"unknown config key(s) {', '.join(unknown)}; valid keys: {', '.join(sorted(names))}")
    return dataclasses.replace(config, **overrides)


def make_config(recipe: str = "deblurgan", **overrides: Any) -> TrainConfig:
    """A recipe with overrides applied and checked. ``arch_args`` overrides merge key by key."""
    if recipe not in RECIPES:
        raise TrainError(f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
    config = RECIPES[recipe]()
    # Another architecture (e.g. taken from --init-from) brings its own arguments whole.
    base = config.arch_args if overrides.get("arch", config.arch) == config.arch else {}
    arch_args = {**base, **overrides.pop("arch_args", {})}
    config = replace(config, arch_args=arch_args, **overrides)
    if config.val_crop is None:
        config.val_crop = config.crop
    validate(config)
    return config


def validate(config: TrainConfig) -> None:
    """Refuse values that would only fail later, deep in the loop."""
    if config.content not in CONTENT_LOSSES:
        raise TrainError(f"unknown content loss {config.content!r}; choose one of {', '.join(CONTENT_LOSSES)}")
    if config.gan_loss not in GAN_LOSSES:
        raise TrainError(f"unknown GAN loss {config.gan_loss!r}; choose one of {', '.join(GAN_LOSSES)}")
    if config.device not in ("auto", "cpu", "cuda"):
        raise TrainError(f"unknown device {config.device!r}; choose auto, cpu or cuda")
    if config.amp_dtype not in ("bf16", "fp16"):
        raise TrainError(f"unknown AMP dtype {config.amp_dtype!r}; choose bf16 or fp16")
    positive = ("crop", "val_crop", "steps", "batch_size", "critic_steps", "log_every", "val_every",
                "checkpoint_every", "snapshot_every")
    for name in positive:
        if getattr(config, name) < 1:
            raise TrainError(f"{name.replace('_', '-')} must be >= 1, got {getattr(config, name)}")
    if config.adv_weight < 0:
        raise TrainError(f"adv-weight must be >= 0, got {config.adv_weight}")
    if config.fft_weight < 0:
        raise TrainError(f"fft-weight must be >= 0, got {config.fft_weight}")
    if config.fft_weight != TrainConfig.fft_weight and config.content != "l1+fft":
        raise TrainError(f"--fft-weight weighs the spectral term of --content l1+fft; this run's content loss "
                         f"is {config.content}: pass --content l1+fft or leave --fft-weight out")
    if config.workers < 0 or config.val_count < 1:
        raise TrainError("workers must be >= 0 and val-count >= 1")
    if config.warmup < 0:
        raise TrainError(f"warmup must be >= 0 steps, got {config.warmup}")
    if not 0.0 <= config.decay_start <= 1.0:
        raise TrainError(f"decay_start is a fraction of the steps in [0, 1], got {config.decay_start}")
    if not config.data:
        raise TrainError("no training data: pass --data FOLDER (sharp photos or GoPro-style blur/ + sharp/)")


def lr_at(step: int, config: TrainConfig) -> float:
    """Learning rate of the update that takes the model from ``step`` to ``step + 1``.

    Constant, then linear decay towards 0 over the last ``1 - decay_start`` of the run
    (DeblurGAN: 150 + 150 epochs), after an optional linear ramp over the first ``warmup``
    steps. A pure function of the step, so resuming needs no scheduler state.
    """
    # A ramp longer than the constant part (e.g. a run shortened on --resume) meets the decay:
    # the lower of the two wins.
    ramp = (step + 1) / (config.warmup + 1) if step < config.warmup else 1.0
    decay_from = int(config.steps * config.decay_start)
    if step < decay_from:
        return config.lr * ramp
    return config.lr * min(ramp, max(0.0, (config.steps - step) / max(1, config.steps - decay_from)))
