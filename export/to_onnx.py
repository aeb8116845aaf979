"""PyTorch generator -> ONNX graph: export, simplify, FP16/INT8 conversion, metadata.

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


def to_fp16_storage(proto: onnx.ModelProto, *, min_elements: int = 64) -> onnx.ModelProto:
    """Store FP32 weights as FP16 in the file, each behind a Cast back to FP32.

    Halves the file while the model still computes in FP32 at FP32 speed: ONNX Runtime's
    constant folding (basic graph optimisations, on by default) turns each Cast of an
    initializer back into an FP32 constant when the session loads. The price is the weights'
    rounding to 11 significant bits (the export's parity check measures it). Tensors under
    ``min_elements`` (most biases) stay FP32: they save nothing. Run this last: onnxsim would
    fold the casts straight back.
    """
    from onnx import helper, numpy_helper

    out = _copy(proto)
    graph = out.graph
    graph_inputs = {i.name for i in graph.input}  # IR < 4 lists initializers as inputs: leave those
    casts, kept = [], []
    for init in graph.initializer:
        if (init.data_type != onnx.TensorProto.FLOAT or init.name in graph_inputs
                or int(np.prod(init.dims)) < min_elements):
            kept.append(init)
            continue
        values = numpy_helper.to_array(init)
        if np.abs(values).max(initial=0.0) > np.finfo(np.float16).max:
            raise ExportError(f"initializer {init.name} holds values beyond FP16's range; "
                              "export without FP16 weight storage")
        stored = f"{init.name}__fp16"
        kept.append(numpy_helper.from_array(values.astype(np.float16), stored))
        casts.append(helper.make_node("Cast", [stored], [init.name], to=onnx.TensorProto.FLOAT,
                                      name=f"{init.name}__to_fp32"))
    del graph.initializer[:]
    graph.initializer.extend(kept)
    nodes = casts + list(graph.node)  # casts first: the graph's nodes stay topologically sorted
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(out)
    return out


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


def to_uint8_io(proto: onnx.ModelProto, *, input_range: tuple[float, float], channel_order: str) -> onnx.ModelProto:
    """Move the runtime's pixel conversions into the graph: uint8 NHWC BGR in and out.

    On a GPU the model is fast and NumPy's conversions around it are most of the time
    (H200, 1080p: 14 ms in the session, 43 ms through ``Deblurrer``); in the graph they run
    on the device, and 3 bytes a pixel cross PCIe each way instead of 12. The arithmetic is
    float32 whatever the model computes in, and the output rounds half to even, as the
    runtime's own conversion does, so results match the float model's to one grey level.
    """
    from onnx import TensorProto, helper, numpy_helper

    proto = _copy(proto)
    graph = proto.graph
    old_in, old_out = graph.input[0], graph.output[0]
    inner = old_in.type.tensor_type.elem_type  # FLOAT, or FLOAT16 for an --fp16-io graph
    low, high = input_range
    flip = channel_order == "RGB"  # the graph takes OpenCV's BGR

    def const(name: str, value, dtype=np.float32) -> str:
        graph.initializer.append(numpy_helper.from_array(np.asarray(value, dtype), f"uint8_io/{name}"))
        return f"uint8_io/{name}"

    order = const("bgr_rgb", [2, 1, 0], np.int64)
    nodes = [helper.make_node("Cast", ["image"], ["uint8_io/in_f"], to=TensorProto.FLOAT),
             helper.make_node("Transpose", ["uint8_io/in_f"], ["uint8_io/in_nchw"], perm=[0, 3, 1, 2])]
    x = "uint8_io/in_nchw"
    if flip:
        nodes.append(helper.make_node("Gather", [x, order], ["uint8_io/in_rgb"], axis=1))
        x = "uint8_io/in_rgb"
    nodes += [helper.make_node("Mul", [x, const("in_gain", (high - low) / 255.0)], ["uint8_io/in_scaled"]),
              helper.make_node("Add", ["uint8_io/in_scaled", const("in_low", low)],
                               [old_in.name if inner == TensorProto.FLOAT else "uint8_io/in_f32"])]
    if inner != TensorProto.FLOAT:
        nodes.append(helper.make_node("Cast", ["uint8_io/in_f32"], [old_in.name], to=inner))
    y = old_out.name
    tail = []
    if old_out.type.tensor_type.elem_type != TensorProto.FLOAT:
        tail.append(helper.make_node("Cast", [y], ["uint8_io/out_f"], to=TensorProto.FLOAT))
        y = "uint8_io/out_f"
    if flip:
        tail.append(helper.make_node("Gather", [y, order], ["uint8_io/out_bgr"], axis=1))
        y = "uint8_io/out_bgr"
    tail += [helper.make_node("Transpose", [y], ["uint8_io/out_nhwc"], perm=[0, 2, 3, 1]),
             helper.make_node("Sub", ["uint8_io/out_nhwc", const("out_low", low)], ["uint8_io/out_shifted"]),
             helper.make_node("Mul", ["uint8_io/out_shifted", const("out_gain", 255.0 / (high - low))],
                              ["uint8_io/out_scaled"]),
             helper.make_node("Clip", ["uint8_io/out_scaled", const("zero", 0.0), const("top", 255.0)],
                              ["uint8_io/out_clipped"]),
             helper.make_node("Round", ["uint8_io/out_clipped"], ["uint8_io/out_rounded"]),
             helper.make_node("Cast", ["uint8_io/out_rounded"], ["deblurred"], to=TensorProto.UINT8)]
    body = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + body + tail)
    nhwc = ["batch", "height", "width", 3]
    graph.input.remove(old_in)
    graph.input.insert(0, helper.make_tensor_value_info("image", TensorProto.UINT8, nhwc))
    graph.output.remove(old_out)
    graph.output.insert(0, helper.make_tensor_value_info("deblurred", TensorProto.UINT8, nhwc))
    onnx.checker.check_model(proto)
    return proto


def _copy(proto: onnx.ModelProto) -> onnx.ModelProto:
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    return copy


def set_metadata(proto: onnx.ModelProto, props: dict[str, str]) -> None:
    existing = {p.key: p for p in proto.metadata_props}
    for key, value in props.items():
        if key in existing:
            existing[key].value = value
        else:
            proto.metadata_props.add(key=key, value=value)
