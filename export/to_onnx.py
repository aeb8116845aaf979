"""PyTorch generator -> ONNX graph: export, simplify, FP16 conversion, metadata.

Exporter: the TorchScript-based ``torch.onnx.export(dynamo=False)``. It keeps batch, height
and width symbolic through ``dynamic_axes`` and writes ConvTranspose with ``output_padding``
rather than a baked ``output_shape``; the dynamo exporter needs onnxscript as an extra
dependency and emits opset >= 18, which older TensorRT / ORT Mobile builds do not take.

Opset 17: InstanceNormalization, Pad(reflect) and ConvTranspose are unchanged since opset
<= 13, so a newer opset buys nothing for these graphs; 17 is the newest the TorchScript
exporter supports well and runs on ONNX Runtime >= 1.12 and TensorRT >= 8.5.
"""

from __future__ import annotations

import io
import logging
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch
from torch import nn

from deblur.runtime.errors import ExportError

log = logging.getLogger(__name__)

OPSET = 17
INPUT_NAME, OUTPUT_NAME = "input", "output"
DYNAMIC_AXES = {0: "batch", 2: "height", 3: "width"}


def torch_to_onnx(model: nn.Module, *, opset: int = OPSET, sample_size: tuple[int, int] = (64, 64)) -> onnx.ModelProto:
    """Trace ``model`` (eval mode, dropout off) into an ONNX graph with dynamic N, H, W."""
    model = model.eval()
    sample = torch.zeros(1, 3, *sample_size)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        # The TorchScript exporter is deprecated in favour of dynamo and says so on every
        # call, and warns that InstanceNorm ignores running stats (ours have none).
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (sample,), buffer, dynamo=False, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                          dynamic_axes={INPUT_NAME: DYNAMIC_AXES, OUTPUT_NAME: DYNAMIC_AXES},
                          do_constant_folding=True)
    proto = onnx.load_from_string(buffer.getvalue())
    onnx.checker.check_model(proto)
    return proto


def simplify(proto: onnx.ModelProto, *, test_size: tuple[int, int] = (256, 256)) -> onnx.ModelProto:
    """onnxsim with concrete test shapes (H/W are symbolic); the result stays dynamic."""
    import onnxsim

    simplified, ok = onnxsim.simplify(proto, test_input_shapes={INPUT_NAME: [1, 3, *test_size]})
    if not ok:
        raise ExportError("onnxsim could not validate the simplified model against the original; "
                          "re-run with --no-simplify and report the model")
    dims = [d.dim_param for d in simplified.graph.input[0].type.tensor_type.shape.dim]
    if dims[2:] != ["height", "width"]:
        raise ExportError(f"simplification fixed the spatial axes ({dims}); re-run with --no-simplify")
    return simplified


def to_fp16(proto: onnx.ModelProto, *, fp16_io: bool = False, block_ops: list[str] | None = None) -> onnx.ModelProto:
    """FP16 weights and compute; FP32 inputs/outputs unless ``fp16_io``.

    ``block_ops`` keeps those op types in FP32 (with casts around them), which is how
    InstanceNormalization is rescued when its FP16 statistics lose too much.
    """
    from onnxconverter_common import float16

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "values truncated to fp16 range" per tiny weight
        return float16.convert_float_to_float16(
            proto, keep_io_types=not fp16_io,
            op_block_list=list(float16.DEFAULT_OP_BLOCK_LIST) + list(block_ops or []))


def to_int8(proto: onnx.ModelProto, calibration: list[np.ndarray]) -> onnx.ModelProto:
    """Static INT8 quantisation (QDQ, per-channel weights) calibrated on real image batches.

    QDQ rather than QOperator: the same file runs on CPU (fused into integer kernels) and on
    TensorRT. InstanceNormalization and the output Tanh stay in float: ORT has no integer
    kernels for them, and the residual add into [-1, 1] needs the precision. ConvTranspose
    stays in float too: quantised, the default model's two upsampling layers took its output
    from 53 to 34 dB of the FP32 one and ran slower on ORT's CPU kernels (256²: 48.6 ms vs
    41.7 ms with them in float; FP32 54.0 ms).
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = iter(calibration)

        def get_next(self) -> dict | None:
            batch = next(self._batches, None)
            return None if batch is None else {INPUT_NAME: batch}

    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        onnx.save(proto, src)
        root = logging.getLogger()
        level = root.level
        root.setLevel(logging.ERROR)  # the quantiser warns per node through the root logger
        try:
            quantize_static(str(src), str(dst), _Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            op_types_to_quantize=["Conv"])
        finally:
            root.setLevel(level)
        return onnx.load(dst)


def set_metadata(proto: onnx.ModelProto, props: dict[str, str]) -> None:
    existing = {p.key: p for p in proto.metadata_props}
    for key, value in props.items():
        if key in existing:
            existing[key].value = value
        else:
            proto.metadata_props.add(key=key, value=value)
