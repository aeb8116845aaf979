"""HEIC/HEIF photos (iPhones) through pillow-heif: read upright, written with their metadata."""

import sys

import cv2
import numpy as np
import pytest

from conftest import run_cli
from local_models import LOCAL_METADATA, local_conv_model
from deblur.runtime import InputError, read_image, read_image_and_metadata
from deblur.runtime.image_io import write_image
from deblur.runtime.metadata import exif_orientation

pillow_heif = pytest.importorskip("pillow_heif")
Image = pytest.importorskip("PIL.Image")
ImageCms = pytest.importorskip("PIL.ImageCms")


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return str(local_conv_model(tmp_path_factory.mktemp("m") / "local.onnx", metadata=LOCAL_METADATA))


def _photo(h: int = 48, w: int = 64) -> np.ndarray:
    """BGR with a marked corner (top-left red), smooth elsewhere: HEVC keeps it within a few levels."""
    y, x = np.mgrid[0:h, 0:w]
    image = np.dstack([x * 255 // w, y * 255 // h, np.full((h, w), 128)]).astype(np.uint8)
    image[:8, :8] = (0, 0, 255)
    return image


def _iphone_like(path, image: np.ndarray, orientation: int = 6) -> bytes:
    """A HEIC as an iPhone stores one: pixels sideways, turned by the file's rotation box, and an
    EXIF orientation tag that says the same (viewers follow the box). pillow-heif writes the box
    from the EXIF tag, so the pixels are stored turned back the other way first."""
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    exif = Image.Exif()
    exif[0x0112], exif[0x010F] = orientation, "Apple"
    stored = cv2.rotate(image, cv2.ROTATE_90_COUNTERCLOCKWISE)  # orientation 6 turns it clockwise
    heif = pillow_heif.from_bytes(mode="BGR", size=(stored.shape[1], stored.shape[0]), data=stored.tobytes())
    heif.save(str(path), quality=95, exif=exif.tobytes(), icc_profile=profile)
    return profile


def test_an_iphone_heic_is_read_upright_once_with_its_metadata(tmp_path):
    # libheif applies the rotation box; the EXIF tag must not turn the picture a second time.
    photo = _photo()
    profile = _iphone_like(tmp_path / "IMG_0001.HEIC", photo)
    image, metadata = read_image_and_metadata(tmp_path / "IMG_0001.HEIC")
    assert image.shape == photo.shape and image.dtype == np.uint8
    assert np.abs(image.astype(int) - photo).mean() < 3 and (image[2, 2] > (0, 0, 200)).tolist() == [False, False, True]
    assert metadata.icc == profile and exif_orientation(metadata.exif) == 6 and b"Apple" in metadata.exif


@pytest.mark.parametrize("shape, dtype", [((40, 56, 3), np.uint8), ((40, 56, 4), np.uint8), ((40, 56), np.uint8),
                                          ((40, 56, 3), np.uint16)])
def test_heic_round_trips_colour_alpha_grey_and_ten_bits(tmp_path, shape, dtype):
    rng = np.random.default_rng(0)
    top = np.iinfo(dtype).max
    image = cv2.GaussianBlur(rng.integers(0, top, shape, dtype=dtype), (9, 9), 3)  # smooth: codable
    if len(shape) == 3 and shape[2] == 4:
        image[..., 3] = np.where(np.arange(56) < 28, top, top // 3)  # half opaque, half translucent
    write_image(tmp_path / "x.heic", image)
    back = read_image(tmp_path / "x.heic")
    assert back.shape == image.shape and back.dtype == image.dtype
    # Lossy (quality 90): within a couple of 8-bit levels; 16-bit pictures travel as 10 bits
    # (values between 8-bit levels).
    level = 1 if dtype == np.uint8 else 256
    assert np.abs(back.astype(float) - image).mean() < 2.5 * level
    if dtype == np.uint16:
        assert pillow_heif.open_heif(str(tmp_path / "x.heic")).info["bit_depth"] == 10


def test_deblur_run_on_heic_keeps_format_orientation_and_metadata(model, tmp_path):
    photo = _photo()
    profile = _iphone_like(tmp_path / "IMG_0002.heic", photo)
    cv2.imwrite(str(tmp_path / "upright.png"), photo)  # what the model makes of the upright photo
    run_cli("deblur-run", str(tmp_path / "upright.png"), "-m", model, check=True)
    expected = cv2.imread(str(tmp_path / "upright_deblurred.png")).astype(int)
    run_cli("deblur-run", str(tmp_path / "IMG_0002.heic"), "-m", model, "--compare", check=True)
    out = tmp_path / "IMG_0002_deblurred.heic"
    image, metadata = read_image_and_metadata(out)
    assert image.shape == photo.shape  # upright, not turned again by its EXIF
    assert np.abs(image.astype(int) - expected).mean() < 4  # two HEVC passes apart
    assert metadata.icc == profile and b"Apple" in metadata.exif and exif_orientation(metadata.exif) in (None, 1)
    assert read_image(tmp_path / "IMG_0002_deblurred_compare.heic").shape == (48, 64 * 2 + 8, 3)
    # Into a JPEG: upright pixels, orientation 1, the camera and the profile kept.
    run_cli("deblur-run", str(tmp_path / "IMG_0002.heic"), "-o", str(tmp_path / "out.jpg"), "-m", model, check=True)
    assert cv2.imread(str(tmp_path / "out.jpg")).shape == photo.shape
    jpeg, jpeg_meta = read_image_and_metadata(tmp_path / "out.jpg")
    assert np.abs(jpeg.astype(int) - expected).mean() < 4
    assert jpeg.shape == photo.shape and jpeg_meta.icc == profile and b"Apple" in jpeg_meta.exif
    assert exif_orientation(jpeg_meta.exif) in (None, 1)


def test_a_burst_says_which_picture_is_deblurred(model, tmp_path):
    # "only the first is deblurred" while the primary (the one viewers show) was the second.
    frames = [np.full((16, 24, 3), level, np.uint8) for level in (10, 120, 250)]
    heif = pillow_heif.from_bytes(mode="BGR", size=(24, 16), data=frames[0].tobytes())
    for frame in frames[1:]:
        heif.add_frombytes(mode="BGR", size=(24, 16), data=frame.tobytes())
    heif.save(str(tmp_path / "burst.heic"), quality=-1, primary_index=1)
    assert read_image(tmp_path / "burst.heic")[0, 0, 0] == pytest.approx(120, abs=3)
    result = run_cli("deblur-run", str(tmp_path / "burst.heic"), "-o", str(tmp_path / "b.png"), "-m", model, check=True)
    assert "holds 3 pictures; only its primary one (2 of 3) is deblurred" in result.stderr


def test_a_folder_picks_up_heic_photos(model, tmp_path):
    (tmp_path / "album").mkdir()
    _iphone_like(tmp_path / "album" / "a.HEIC", _photo())
    run_cli("deblur-run", str(tmp_path / "album"), "-m", model, check=True)
    assert (tmp_path / "album_deblurred" / "a.HEIC").exists()


def test_damaged_heic_and_missing_pillow_heif_are_input_errors(tmp_path, monkeypatch):
    _iphone_like(tmp_path / "a.heic", _photo())
    data = (tmp_path / "a.heic").read_bytes()
    (tmp_path / "cut.heic").write_bytes(data[:300])
    with pytest.raises(InputError, match=r"cut.heic: cannot be decoded as HEIF .*truncated"):
        read_image(tmp_path / "cut.heic")
    monkeypatch.setitem(sys.modules, "pillow_heif", None)  # as if not installed
    with pytest.raises(InputError, match=r"a.heic: HEIC/HEIF images need pillow-heif.*pip install '\.\[heif\]'"):
        read_image(tmp_path / "a.heic")
    with pytest.raises(InputError, match="need pillow-heif"):
        write_image(tmp_path / "b.heic", _photo())
    assert not (tmp_path / "b.heic").exists()


def test_training_on_heic_without_pillow_heif_says_what_to_install(tmp_path, monkeypatch):
    # Each HEIC was "unreadable; skipped", then "none of the 2 images could be read".
    pytest.importorskip("torch")
    from deblur.train.data import scan

    (tmp_path / "photos").mkdir()
    for name in ("a.heic", "b.heic"):
        _iphone_like(tmp_path / "photos" / name, _photo())
    monkeypatch.setitem(sys.modules, "pillow_heif", None)
    with pytest.raises(InputError, match="need pillow-heif"):
        scan([str(tmp_path / "photos")], crop=32)


def test_an_avif_is_not_taken_for_heic(tmp_path):
    # AVIF lists HEIF's generic brand too; OpenCV decodes it, pillow-heif cannot.
    from deblur.runtime.heif import is_heif

    avif_head = b"\x00\x00\x00\x20ftypavif\x00\x00\x00\x00avifmif1miafMA1B"
    assert not is_heif(avif_head + bytes(64))
    assert is_heif(b"\x00\x00\x00\x18ftypmif1\x00\x00\x00\x00mif1heic" + bytes(64))


def test_heic_cannot_take_float_pixels(tmp_path):
    with pytest.raises(InputError, match=r"\.heic cannot store float32 pixels"):
        write_image(tmp_path / "f.heic", np.zeros((8, 8, 3), np.float32))


def test_an_hdr_heic_keeps_its_colour_tags(model, tmp_path):
    # A BT.2020 + HLG HEIC without a profile (as some Android phones write) came out tagged sRGB.
    y, x = np.mgrid[0:48, 0:64]
    deep = np.dstack([x * 1000, y * 1300, 65535 - x * 500 - y * 600]).clip(0, 65535).astype(np.uint16)
    heif = pillow_heif.from_bytes(mode="BGR;16", size=(64, 48), data=deep.tobytes())
    heif.save(str(tmp_path / "hlg.heic"), quality=-1, color_primaries=9, transfer_characteristics=18,
              matrix_coefficients=9, full_range_flag=0)
    assert read_image_and_metadata(tmp_path / "hlg.heic")[1].nclx == (9, 18, 9, 0)
    run_cli("deblur-run", str(tmp_path / "hlg.heic"), "-m", model, check=True)
    profile = pillow_heif.open_heif(str(tmp_path / "hlg_deblurred.heic")).info["nclx_profile"]
    assert (profile["color_primaries"], profile["transfer_characteristics"], profile["matrix_coefficients"],
            profile["full_range_flag"]) == (9, 18, 9, 0)
    assert read_image_and_metadata(tmp_path / "hlg_deblurred.heic")[0].dtype == np.uint16
    # Into PNG as its cICP chunk (H.273 for RGB: matrix 0, full range), and from there back.
    result = run_cli("deblur-run", str(tmp_path / "hlg.heic"), "-o", str(tmp_path / "hlg.png"), "-m", model,
                     check=True)
    assert "colour tags" not in result.stderr
    png, png_meta = read_image_and_metadata(tmp_path / "hlg.png")
    assert png.dtype == np.uint16 and png_meta.nclx == (9, 18, 0, 1)
    run_cli("deblur-run", str(tmp_path / "hlg.png"), "-o", str(tmp_path / "again.heic"), "-m", model, check=True)
    again = pillow_heif.open_heif(str(tmp_path / "again.heic")).info["nclx_profile"]
    assert (again["color_primaries"], again["transfer_characteristics"], again["matrix_coefficients"]) == (9, 18, 9)
    result = run_cli("deblur-run", str(tmp_path / "hlg.heic"), "-o", str(tmp_path / "hlg.tif"), "-m", model,
                     check=True)
    assert "colour tags (BT.2020 primaries, HLG transfer) cannot be carried into .tif" in result.stderr


def test_colour_tags_a_viewer_shows_as_srgb_are_not_warned_about(model, tmp_path):
    # "Unspecified" (2) or sRGB with another YUV matrix is sRGB to every viewer: nothing is lost.
    image = _photo()
    for name, tags in (("unspecified.heic", (2, 2, 6, 1)), ("matrix.heic", (1, 13, 1, 0)), ("p5.heic", (5, 13, 6, 1))):
        heif = pillow_heif.from_bytes(mode="BGR", size=(64, 48), data=image.tobytes())
        heif.save(str(tmp_path / name), quality=90, color_primaries=tags[0], transfer_characteristics=tags[1],
                  matrix_coefficients=tags[2], full_range_flag=tags[3])
        result = run_cli("deblur-run", str(tmp_path / name), "-o", str(tmp_path / f"{name}.jpg"), "-m", model,
                         check=True)
        if name == "p5.heic":  # an unnamed value is named by number, the harmless transfer left out
            assert "its colour tags (H.273 primaries 5) cannot be carried" in result.stderr
        else:
            assert "colour tags" not in result.stderr, name


def test_hdr_tags_beside_a_profile_win_and_srgb_like_tags_are_not_written(tmp_path):
    # A PNG with an sRGB profile and a PQ cICP (viewers follow the cICP) lost its PQ into HEIC;
    # sRGB-like HEIF tags were written into PNGs as needless cICP chunks.
    from deblur.runtime.metadata import Metadata, embed_metadata

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    image = np.full((16, 24, 3), 30000, np.uint16)
    encoded = cv2.imencode(".png", image)[1].tobytes()
    (tmp_path / "both.png").write_bytes(embed_metadata(encoded, profile, None, None, (9, 16, 0, 0)))
    pixels, metadata = read_image_and_metadata(tmp_path / "both.png")
    assert metadata.nclx == (9, 16, 0, 0) and metadata.icc == profile
    write_image(tmp_path / "out.png", pixels, icc=metadata.icc, like=metadata)
    assert read_image_and_metadata(tmp_path / "out.png")[1].nclx == (9, 16, 0, 0)  # narrow range kept
    write_image(tmp_path / "out.heic", pixels, icc=metadata.icc, like=metadata)
    assert read_image_and_metadata(tmp_path / "out.heic")[1].nclx[:2] == (9, 16)
    write_image(tmp_path / "srgb.png", pixels, like=Metadata(nclx=(2, 2, 2, 1)))
    assert b"cICP" not in (tmp_path / "srgb.png").read_bytes()
