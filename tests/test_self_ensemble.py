"""``self_ensemble``: the model averaged over flipped and rotated copies of its input."""

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from deblur.runtime import Deblurrer, InputError
from deblur.runtime.deblurrer import SELF_ENSEMBLE
from local_models import LOCAL_METADATA, local_conv_model


@pytest.fixture(scope="module")
def local_model(tmp_path_factory):
    return local_conv_model(tmp_path_factory.mktemp("m") / "local.onnx", metadata=LOCAL_METADATA)


@pytest.fixture(scope="module")
def identity_model(tmp_path_factory):
    dims = ["batch", 3, "height", "width"]
    graph = helper.make_graph([helper.make_node("Identity", ["input"], ["output"])], "identity",
                              [helper.make_tensor_value_info("input", TensorProto.FLOAT, dims)],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, dims)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    for key, value in LOCAL_METADATA.items():
        model.metadata_props.add(key=key, value=value)
    path = tmp_path_factory.mktemp("id") / "identity.onnx"
    onnx.save(model, path)
    return path


@pytest.mark.parametrize("n", [2, 4, 8])
def test_the_transforms_are_distinct(n):
    assert len(set(SELF_ENSEMBLE[n])) == n and SELF_ENSEMBLE[n][0] == (0, False)


@pytest.mark.parametrize("n", [2, 4, 8])
def test_averages_the_model_over_flipped_and_rotated_inputs(local_model, n):
    # 48 x 64: a multiple of the model's size and above the minimum side, so nothing is padded
    # and transforming the image is transforming what the model sees. Values kept mid-range so
    # no result is clipped before or after averaging.
    image = np.random.default_rng(0).uniform(0.45, 0.55, (48, 64, 3)).astype(np.float32)
    single = Deblurrer(local_model, "cpu", tile=0)
    expected = np.zeros_like(image)
    for turns, flip in SELF_ENSEMBLE[n]:
        x = np.rot90(image[:, ::-1] if flip else image, turns)
        y = np.rot90(single(np.ascontiguousarray(x)), -turns)
        expected += y[:, ::-1] if flip else y
    got = Deblurrer(local_model, "cpu", tile=0, self_ensemble=n)(image)
    assert np.abs(got - single(image)).max() > 1e-3  # the model is not flip-invariant: a real test
    np.testing.assert_allclose(got, expected / n, rtol=0, atol=1e-5)


@pytest.mark.parametrize("tile, tile_batch", [(0, 1), (64, 1), (64, 2)])
def test_every_transform_is_undone_also_on_tiles_that_are_not_square(identity_model, tile, tile_batch):
    # An identity model is flip- and rotation-equivariant: any transform left undone, or undone
    # the wrong way, shows as moved pixels. 40 x 100 at tile 64: tiles of 40 x 64, which a
    # quarter turn makes 64 x 40.
    image = np.random.default_rng(1).integers(0, 256, (40, 100, 3), dtype=np.uint8)
    got = Deblurrer(identity_model, "cpu", tile=tile, overlap=4, blend=8, tile_batch=tile_batch,
                    self_ensemble=8)(image)
    np.testing.assert_array_equal(got, image)


def test_only_the_listed_sizes_are_accepted(local_model):
    with pytest.raises(InputError, match="self_ensemble must be one of 1, 2, 4, 8, got 3"):
        Deblurrer(local_model, "cpu", self_ensemble=3)
