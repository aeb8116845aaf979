"""The preprocessing contract between an exported model and the runtime.

``deblur-export`` writes these fields into the ONNX file's ``metadata_props``; the runtime
reads them back to decide range, channel order, padding and tile context. A plain ONNX
image-to-image model without them still runs, with the documented defaults below.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields

# Defaults for a foreign model without our metadata: the common convention of image
# restoration models exported from PyTorch (RGB, [0, 1]); a multiple of 8 is harmless
# (reflection padding, cropped back) and fits most U-Nets; 32 px of context per tile.
DEFAULT_INPUT_RANGE = (0.0, 1.0)
DEFAULT_CHANNEL_ORDER = "RGB"
DEFAULT_SIZE_MULTIPLE = 8
DEFAULT_TILE_CONTEXT = 32

_PREFIX = "deblur."  # metadata_props keys, e.g. "deblur.input_range"
_KIND_NAMES = {int: "an integer", (int, type(None)): "an integer", dict: "a JSON object",
               (int, float, type(None)): "a finite number"}


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclass(frozen=True)
class ModelInfo:
    """What the runtime needs to know about a model to feed it correctly."""

    input_range: tuple[float, float] = DEFAULT_INPUT_RANGE  # pixel values 0 and max map here
    channel_order: str = DEFAULT_CHANNEL_ORDER  # "RGB" or "BGR"
    size_multiple: int = DEFAULT_SIZE_MULTIPLE  # H and W must be multiples of this
    tile_context: int = DEFAULT_TILE_CONTEXT  # px of context each tile gets on every side
    receptive_field: int | None = None  # px, of the conv stack with norms disabled
    precision: str = "fp32"  # "fp32", "fp16" or "int8" (weights/compute)
    io_dtype: str = "float32"  # dtype of the model's input/output tensors: float32, float16, uint8
    io_layout: str = "NCHW"  # "NHWC": uint8 pixels as OpenCV holds them (deblur-export --uint8-io)
    normalization: str = "none"  # "instance": outputs depend on whole-input statistics
    arch: str | None = None
    arch_args: dict = field(default_factory=dict)
    toolkit_version: str | None = None
    source_sha256: str | None = None
    train_step: int | None = None
    gflops_per_megapixel: float | None = None
    # "fp16": an FP32 model whose file holds FP16 weights (half the size). Informational: ONNX
    # Runtime casts them back at load, so the runtime never needs it and checks no value.
    weight_storage: str | None = None
    has_metadata: bool = False  # False: defaults above were used

    def to_metadata(self) -> dict[str, str]:
        """Flat string key/values for ONNX ``metadata_props``."""
        out = {}
        for key, value in asdict(self).items():
            if key == "has_metadata" or value is None:
                continue
            out[_PREFIX + key] = value if isinstance(value, str) else json.dumps(value)
        return out

    @classmethod
    def from_metadata(cls, props: dict[str, str]) -> "ModelInfo":
        """Parse ``metadata_props``; keys we do not know are ignored (newer exporters)."""
        known = {f.name: f for f in fields(cls)}
        values: dict = {}
        for key, raw in props.items():
            if not key.startswith(_PREFIX):
                continue
            name = key[len(_PREFIX):]
            if name not in known or name == "has_metadata":
                continue
            if known[name].type in ("str", "str | None"):
                values[name] = raw
                continue
            try:
                values[name] = json.loads(raw)
            except json.JSONDecodeError:
                raise ValueError(f"metadata {key}={raw!r} is not valid JSON") from None
        if not values:
            return cls()
        if isinstance(values.get("input_range"), list):
            values["input_range"] = tuple(float(v) if _is_number(v) else v for v in values["input_range"])
        info = cls(**values, has_metadata=True)
        info.validate()
        return info

    def validate(self) -> None:
        if not isinstance(self.input_range, (tuple, list)) or len(self.input_range) != 2 or not all(_is_number(v) and math.isfinite(v) for v in self.input_range):
            raise ValueError(f"input_range must be two finite numbers, got {self.input_range!r}")
        wanted = {"size_multiple": int, "tile_context": int, "receptive_field": (int, type(None)),
                  "train_step": (int, type(None)), "arch_args": dict,
                  "gflops_per_megapixel": (int, float, type(None))}
        for name, kinds in wanted.items():  # JSON gives what it was given: "4.5", true, a list
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, kinds) or (
                    isinstance(value, float) and not math.isfinite(value)):
                raise ValueError(f"{name} {value!r} is not {_KIND_NAMES.get(kinds, 'valid')}")
        low, high = self.input_range
        if not high > low:
            raise ValueError(f"input_range {self.input_range} is empty")
        if self.channel_order not in ("RGB", "BGR"):
            raise ValueError(f"channel_order must be RGB or BGR, got {self.channel_order!r}")
        if self.size_multiple < 1 or self.tile_context < 0:
            raise ValueError(f"size_multiple {self.size_multiple} / tile_context {self.tile_context} out of range")
        if self.precision not in ("fp32", "fp16", "int8"):
            raise ValueError(f"precision must be fp32, fp16 or int8, got {self.precision!r}")
        if self.io_dtype not in ("float32", "float16", "uint8"):
            raise ValueError(f"io_dtype must be float32, float16 or uint8, got {self.io_dtype!r}")
        # Float tensors are channel-first, uint8 pixels channel-last: the two layouts exporters write.
        if self.io_layout != ("NHWC" if self.io_dtype == "uint8" else "NCHW"):
            raise ValueError(f"io_layout {self.io_layout!r} does not go with io_dtype {self.io_dtype!r} "
                             "(uint8 is NHWC, float NCHW)")
        if self.io_dtype == "uint8" and tuple(self.input_range) != (0.0, 255.0):
            raise ValueError(f"a uint8-I/O model takes pixel values: input_range must be [0, 255], "
                             f"not {list(self.input_range)}")
