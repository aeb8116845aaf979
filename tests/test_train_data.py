import logging

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from train_fixtures import write_photos  # noqa: E402

from deblur.runtime.errors import InputError  # noqa: E402
from deblur.train.blur import BlurConfig  # noqa: E402
from deblur.train.data import StepSampler, TrainPairs, read_rgb, scan, validation_pairs  # noqa: E402


def test_gopro_pairs_and_sharp_only_photos_are_found(tmp_path):
    for scene in ("GOPR0001", "GOPR0002"):
        write_photos(tmp_path / "gopro" / scene / "sharp", 2)
        write_photos(tmp_path / "gopro" / scene / "blur", 2, seed=1)
        write_photos(tmp_path / "gopro" / scene / "blur_gamma", 2, seed=2)  # blurred too: never a target
    write_photos(tmp_path / "photos", 3)
    items = scan([str(tmp_path / "gopro"), str(tmp_path / "photos")], crop=64)
    paired = [i for i in items if i.blurred is not None]
    assert len(paired) == 4 and len(items) == 7
    assert all(i.sharp.parent.name == "sharp" and i.blurred.parent.name == "blur" and
               i.sharp.name == i.blurred.name for i in paired)
    # A GoPro sample is the stored blurred image, cropped at the same place as the sharp one.
    dataset = TrainPairs(paired, 64, seed=0, blur=BlurConfig())
    blurred, sharp = dataset[(0, 0)]
    assert blurred.shape == sharp.shape == (3, 64, 64)
    assert not torch.equal(blurred, sharp)


def test_greyscale_becomes_three_channels_and_unreadable_files_are_skipped(tmp_path, caplog):
    write_photos(tmp_path, 2, grey=True)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    assert read_rgb(tmp_path / "photo_00.png").shape == (80, 96, 3)
    assert read_rgb(tmp_path / "broken.png") is None
    with caplog.at_level(logging.WARNING):
        items = scan([str(tmp_path)], crop=64)
    assert len(items) == 2
    assert "broken.png: unreadable image; skipped" in caplog.text


def test_data_errors_name_the_folder_and_the_fix(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images found"):
        scan([str(tmp_path / "empty")], crop=64)
    with pytest.raises(InputError, match="no such data folder"):
        scan([str(tmp_path / "missing")], crop=64)
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "a.png").write_bytes(b"nope")
    with pytest.raises(InputError, match="none of the 1 training images could be read"):
        scan([str(tmp_path / "junk")], crop=64)
    write_photos(tmp_path / "small", 2, size=(50, 70))
    with pytest.raises(InputError, match="crop 64 px is larger than every image .* pass --crop 50 or less"):
        scan([str(tmp_path / "small")], crop=64)
    # The hint is a crop the generator takes (multiples of 4 for the ResNet).
    with pytest.raises(InputError, match="pass --crop 48 or less"):
        scan([str(tmp_path / "small")], crop=64, multiple=4)
    # ... and one at least its minimum (a coarse branch: multiples of 8, at least 16).
    write_photos(tmp_path / "tiny", 1, size=(12, 20))
    with pytest.raises(InputError, match="every training image is smaller than the 16 px this generator needs"):
        scan([str(tmp_path / "tiny")], crop=16, multiple=8, smallest=16)


def test_small_images_are_skipped_when_others_fit(tmp_path, caplog):
    write_photos(tmp_path, 2, size=(50, 70))
    write_photos(tmp_path / "big", 1, size=(80, 80))
    with caplog.at_level(logging.WARNING):
        assert len(scan([str(tmp_path)], crop=64)) == 1
    assert "2 training images smaller than the 64 px crop skipped" in caplog.text


def test_samples_depend_only_on_seed_epoch_and_index(tmp_path):
    items = scan([str(write_photos(tmp_path, 3)[0].parent)], crop=64)
    dataset = TrainPairs(items, 64, seed=7, blur=BlurConfig())
    a, b = dataset[(2, 1)], TrainPairs(items, 64, seed=7, blur=BlurConfig())[(2, 1)]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    other_epoch = dataset[(3, 1)]
    assert not torch.equal(a[0], other_epoch[0])
    blurred, sharp = a
    assert blurred.dtype == torch.float32 and blurred.min() >= -1 and blurred.max() <= 1
    # Blur spreads the rectangles' step edges: the steepest step gets smaller.
    assert blurred.diff(dim=2).abs().amax() < 0.8 * sharp.diff(dim=2).abs().amax()


def test_sampler_resumes_mid_epoch_and_shards_ranks():
    def take(sampler, n):
        it = iter(sampler)
        return [next(it) for _ in range(n)]

    full = take(StepSampler(10, 2, seed=3), 40)  # 5 steps per epoch, 4 epochs
    assert full[:10] != full[10:20]  # a new order each epoch
    assert sorted(i for _, i in full[:10]) == list(range(10))
    assert take(StepSampler(10, 2, seed=3, start_step=7), 26) == full[14:]
    ranks = [take(StepSampler(10, 2, seed=3, rank=r, world_size=2), 4) for r in (0, 1)]
    assert not {i for _, i in ranks[0]} & {i for _, i in ranks[1]}
    with pytest.raises(InputError, match="fewer than batch size"):
        StepSampler(3, 2, seed=0, world_size=2)


def test_validation_pairs_are_deterministic_across_calls(tmp_path):
    items = scan([str(write_photos(tmp_path, 4)[0].parent)], crop=64)
    b1, s1 = validation_pairs(items, 64, 3, seed=5, blur=BlurConfig())
    b2, s2 = validation_pairs(items, 64, 3, seed=5, blur=BlurConfig())
    assert b1.shape == (3, 3, 64, 64) and torch.equal(b1, b2) and torch.equal(s1, s2)
    b3, _ = validation_pairs(items, 64, 3, seed=6, blur=BlurConfig())
    assert not torch.equal(b1, b3)
    # The sharp half is the centre crop, untouched.
    photo = cv2.cvtColor(cv2.imread(str(items[0].sharp)), cv2.COLOR_BGR2RGB)
    expected = photo[8:72, 16:80].transpose(2, 0, 1).astype(np.float32) / 127.5 - 1
    np.testing.assert_allclose(s1[0].numpy(), expected, atol=1e-6)


def test_decoded_photos_are_cached_within_budget_without_changing_samples(tmp_path):
    photos = write_photos(tmp_path, 3, size=(80, 96))
    items = scan([str(photos[0].parent)], crop=64)
    cached = TrainPairs(items, 64, seed=7, blur=BlurConfig(), cache_bytes=2 * 80 * 96 * 3)
    uncached = TrainPairs(items, 64, seed=7, blur=BlurConfig(), cache_bytes=0)
    for key in [(0, 0), (0, 1), (0, 2), (1, 0), (1, 2)]:
        a, b = cached[key], uncached[key]
        assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert len(cached.cache.images) == 2 and cached.cache.used == 2 * 80 * 96 * 3  # the budget held
    assert not uncached.cache.images
    first = next(iter(cached.cache.images))
    assert cached.cache.read(first) is cached.cache.images[first]  # no second decode
    assert not cached.cache.images[first].flags.writeable


def _jpeg_tagged(path, image, orientation: int):
    """A JPEG whose EXIF Orientation tag is ``orientation`` (little-endian IFD, SHORT)."""
    ok, data = cv2.imencode(".jpg", image)
    exif = b"Exif\x00\x00II*\x00\x08\x00\x00\x00\x01\x00\x12\x01\x03\x00\x01\x00\x00\x00" \
        + orientation.to_bytes(2, "little") + bytes(6)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.tobytes()[:2] + b"\xff\xe1" + (len(exif) + 2).to_bytes(2, "big") + exif + data.tobytes()[2:])
    return path


def test_training_reads_photos_upright_as_the_runtime_does(tmp_path):
    # A 40x20 JPEG tagged "rotate 90" (a portrait phone photo): trained as the 20x40 it shows as.
    path = _jpeg_tagged(tmp_path / "portrait.jpg", np.zeros((20, 40, 3), np.uint8), 6)
    assert read_rgb(path).shape == (40, 20, 3)
    item = scan([str(path)], crop=16)[0]
    assert (item.height, item.width) == (40, 20)
    (tmp_path / "bad.jpg").write_bytes(b"not a jpeg")
    assert read_rgb(tmp_path / "bad.jpg") is None
    # A float32 TIFF (an HDR export) is a photo in [0, 1], not an unreadable file.
    cv2.imwrite(str(tmp_path / "float.tif"), np.full((8, 10, 3), (0.0, 0.5, 1.0), np.float32))
    assert read_rgb(tmp_path / "float.tif")[0, 0].tolist() == [255, 128, 0]


def test_a_pair_turned_against_itself_is_skipped_but_one_turned_upright_is_kept(tmp_path, caplog):
    # Square, so the sizes agree. a: the blurred copy lost its tag but not its sideways pixels
    # (misaligned); b: a tool turned the pixels upright and dropped the tag (aligned); c: same tags.
    photo = _gradient_photo()
    upright = np.ascontiguousarray(np.rot90(photo, -1))  # what orientation 6 shows
    for name, blurred, tag in (("a", photo, 1), ("b", upright, 1), ("c", photo, 6)):
        _jpeg_tagged(tmp_path / "s1" / "sharp" / f"{name}.jpg", photo, 6)
        _jpeg_tagged(tmp_path / "s1" / "blur" / f"{name}.jpg", cv2.GaussianBlur(blurred, (5, 5), 0), tag)
    with caplog.at_level(logging.WARNING):
        items = scan([str(tmp_path)], crop=32)
    assert [i.sharp.name for i in items] == ["b.jpg", "c.jpg"]
    assert "blur/a.jpg: turned against its sharp image (EXIF orientation 1, its sharp image's 6)" in caplog.text


def _gradient_photo() -> np.ndarray:
    """No symmetry a turn could map onto itself: a bright corner, a bar, a ramp."""
    y, x = np.mgrid[0:48, 0:48]
    image = (x * 2 + y * 3).astype(np.uint8)
    image[5:15, 30:44] = 255
    image[30:34, 4:40] = 0
    return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)


def test_a_blur_folder_given_alone_is_warned_about(tmp_path, caplog):
    # --data GOPR0001/blur would train the blurred images as sharp targets.
    write_photos(tmp_path / "GOPR0001" / "blur", 2)
    with caplog.at_level(logging.WARNING):
        scan([str(tmp_path / "GOPR0001" / "blur")], crop=32)
    assert "its name says blurred images" in caplog.text
    caplog.clear()
    write_photos(tmp_path / "GOPR0001" / "sharp", 2)
    with caplog.at_level(logging.WARNING):
        items = scan([str(tmp_path / "GOPR0001")], crop=32)
    assert all(i.blurred is not None for i in items) and "its name says" not in caplog.text


@pytest.mark.parametrize("blurred, sharp", [("A", "B"), ("trainA", "trainB"), ("lq", "gt"), ("input", "target")])
def test_other_tools_pair_layouts_are_warned_about_once(tmp_path, caplog, blurred, sharp):
    # pix2pix's A/ (input) + B/ (target) were trained as 12 sharp-only images, A blurred again.
    write_photos(tmp_path / "facades" / blurred, 2)
    write_photos(tmp_path / "facades" / sharp, 2)
    said: set[str] = set()
    with caplog.at_level(logging.WARNING):
        items = scan([str(tmp_path / "facades")], crop=32, said=said)
        scan([str(tmp_path / "facades")], crop=32, said=said)  # validation reads the same folders: said once
    assert all(i.blurred is None for i in items)
    assert caplog.text.count(f"{blurred}/ and {sharp}/ look like (blurred, sharp) pairs") == 1
    assert "rename them blur/ and sharp/" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):  # another run (a notebook's second call) is told again
        scan([str(tmp_path / "facades")], crop=32)
    assert "look like (blurred, sharp) pairs" in caplog.text


def test_pix2pix_own_layout_and_blurred_sharp_folders_are_warned_about(tmp_path, caplog):
    # pix2pix keeps A/train + B/train; blurred/ + sharp/ is said once, not twice.
    write_photos(tmp_path / "facades" / "A" / "train", 2)
    write_photos(tmp_path / "facades" / "B" / "train", 2)
    write_photos(tmp_path / "mine" / "blurred", 2)
    write_photos(tmp_path / "mine" / "sharp", 2)
    with caplog.at_level(logging.WARNING):
        scan([str(tmp_path / "facades"), str(tmp_path / "mine")], crop=32)
    assert "A/ and B/ look like (blurred, sharp) pairs" in caplog.text
    assert "blurred/ and sharp/ look like" in caplog.text and "its name says" not in caplog.text


def test_side_by_side_pairs_are_warned_about(tmp_path, caplog):
    write_photos(tmp_path / "ab", 3, size=(48, 96))
    with caplog.at_level(logging.WARNING):
        scan([str(tmp_path / "ab")], crop=32)
    assert "twice as wide as high, like pix2pix's side-by-side" in caplog.text
    caplog.clear()
    write_photos(tmp_path / "photos", 3, size=(48, 80))
    with caplog.at_level(logging.WARNING):
        scan([str(tmp_path / "photos")], crop=32)
    assert "side-by-side" not in caplog.text


def test_training_reads_what_deblur_run_reads(tmp_path):
    # .jfif photos were "no images found" for training while deblur-run took them.
    paths = write_photos(tmp_path / "photos", 2)
    for path in paths:
        cv2.imwrite(str(path.with_suffix(".jpg")), cv2.imread(str(path)))
        path.with_suffix(".jpg").rename(path.with_suffix(".jfif"))
        path.unlink()
    assert len(scan([str(tmp_path / "photos")], crop=32)) == 2
