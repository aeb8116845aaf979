import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deblur.runtime import Deblurrer
from deblur.runtime.tiling import make_grid, pad_reflect, padded_size
from local_models import LOCAL_METADATA, local_conv_model


@settings(max_examples=200, deadline=None)
@given(h=st.integers(1, 500), w=st.integers(1, 500), tile=st.integers(0, 200),
       context=st.integers(0, 24), blend=st.integers(0, 24), multiple=st.sampled_from([1, 2, 4, 8]))
def test_grid_covers_every_pixel_with_weights_summing_to_one(h, w, tile, context, blend, multiple):
    tile += 2 * context + blend + multiple  # the smallest tile the runtime accepts, and up
    H, W = padded_size(h, multiple), padded_size(w, multiple)
    grid = make_grid(H, W, tile, context, blend, multiple)
    total = np.zeros((H, W, 1), np.float64)
    for y, x in grid.positions():
        assert y % multiple == 0 and x % multiple == 0
        assert y + grid.tile_h <= H and x + grid.tile_w <= W  # shifted inward, never shrunk
        assert grid.tile_h % multiple == 0 and grid.tile_w % multiple == 0
        total[y:y + grid.tile_h, x:x + grid.tile_w] += grid.weight(y, x)
    np.testing.assert_allclose(total, 1.0, atol=1e-5)


@settings(max_examples=50, deadline=None)
@given(h=st.integers(1, 40), w=st.integers(1, 40), H=st.integers(0, 60), W=st.integers(0, 60))
def test_reflect_padding_keeps_the_image_and_reaches_the_size(h, w, H, W):
    image = np.random.default_rng(0).random((h, w, 3)).astype(np.float32)
    out = pad_reflect(image, h + H, w + W)
    assert out.shape == (h + H, w + W, 3)
    np.testing.assert_array_equal(out[:h, :w], image)


@pytest.fixture(scope="module")
def local_model(tmp_path_factory):
    return local_conv_model(tmp_path_factory.mktemp("m") / "local.onnx", metadata=LOCAL_METADATA)


@pytest.mark.parametrize("shape", [(97, 131, 3), (131, 97, 3), (23, 37, 3), (1, 200, 3), (300, 1, 3), (1, 1, 3),
                                   (2, 2), (64, 64, 3), (65, 129, 4)])
@pytest.mark.parametrize("tile_batch", [1, 3])
def test_tiled_equals_whole_image_for_a_local_model(local_model, shape, tile_batch):
    rng = np.random.default_rng(sum(shape))
    image = rng.integers(0, 256, shape, dtype=np.uint8)
    whole = Deblurrer(local_model, "cpu", tile=0)(image)
    tiled = Deblurrer(local_model, "cpu", tile=32, overlap=4, blend=8, tile_batch=tile_batch)(image)
    assert tiled.shape == image.shape and tiled.dtype == image.dtype
    assert np.abs(whole.astype(int) - tiled.astype(int)).max() <= 1


def test_too_little_overlap_is_not_exact(local_model):
    # The check above can fail: with no context, tile borders see a truncated neighbourhood.
    image = np.random.default_rng(1).integers(0, 256, (96, 96, 3), dtype=np.uint8)
    whole = Deblurrer(local_model, "cpu", tile=0)(image)
    tiled = Deblurrer(local_model, "cpu", tile=32, overlap=0, blend=0)(image)
    assert np.abs(whole.astype(int) - tiled.astype(int)).max() > 1


@pytest.mark.parametrize("context, blend, multiple", [(60, 32, 4), (8, 8, 4), (4, 8, 1), (13, 5, 8)])
def test_the_smallest_sensible_tile_keeps_half_of_itself(context, blend, multiple):
    from deblur.runtime.tiling import smallest_sensible_tile, tile_stride

    tile = smallest_sensible_tile(context, blend, multiple)
    assert tile % multiple == 0 and 2 * tile_stride(tile, context, blend, multiple) >= tile
    smaller = tile - multiple
    assert 2 * tile_stride(smaller, context, blend, multiple) < smaller
