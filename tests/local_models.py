"""Tiny ONNX models built with onnx.helper (no torch) for exact runtime tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper


def local_conv_model(path: Path, *, metadata: dict[str, str] | None = None, seed: int = 0,
                     in_channels: int = 3, rank4: bool = True) -> Path:
    """x + conv3(relu(conv3(x))): each output pixel depends on a 5x5 neighbourhood only.

    Zero-padded convolutions, so the whole-image result at the border is what a border tile
    sees too; output is not clipped so any blending error shows.
    """
    rng = np.random.default_rng(seed)
    w1 = (rng.standard_normal((8, in_channels, 3, 3)) * 0.2).astype(np.float32)
    w2 = (rng.standard_normal((3, 8, 3, 3)) * 0.2).astype(np.float32)
    dims = ["batch", in_channels, "height", "width"] if rank4 else ["batch", "height", "width"]
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, ["batch", 3, "height", "width"])
    nodes = [
        helper.make_node("Conv", ["input", "w1"], ["h1"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["h1"], ["h2"]),
        helper.make_node("Conv", ["h2", "w2"], ["h3"], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["input", "h3"] if in_channels == 3 else ["h3", "h3"], ["output"]),
    ]
    if not rank4:  # a valid model that just is not an image model
        nodes = [helper.make_node("Identity", ["input"], ["output"])]
        y = helper.make_tensor_value_info("output", TensorProto.FLOAT, dims)
    graph = helper.make_graph(nodes, "local", [x], [y],
                              initializer=[numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in (metadata or {}).items():
        model.metadata_props.add(key=key, value=value)
    onnx.save(model, path)
    return path


LOCAL_METADATA = {
    "deblur.input_range": "[-1.0, 1.0]",
    "deblur.channel_order": "RGB",
    "deblur.size_multiple": "4",
    "deblur.tile_context": "4",
    "deblur.receptive_field": "5",
}


def local_graph_model(path: Path, nodes: list, output_dims: list, initializers: dict[str, np.ndarray] | None = None,
                      batch: int | str = "batch") -> Path:
    """A float NCHW model "input" -> ``nodes`` -> "output" of ``output_dims``: models that are
    not image-to-image (an upscaler, a mask, a classifier) or that misbehave (NaN)."""
    x = helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch, 3, "height", "width"])
    y = helper.make_tensor_value_info("output", TensorProto.FLOAT, output_dims)
    graph = helper.make_graph(nodes, "local", [x], [y],
                              initializer=[numpy_helper.from_array(v, k) for k, v in (initializers or {}).items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, path)
    return path
