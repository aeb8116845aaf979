"""deblur-run through its entry point: files, folders, videos, errors, atomic outputs."""

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from conftest import run_cli
from deblur.runtime import read_image_and_metadata
from deblur.runtime.video import probe_video
from local_models import LOCAL_METADATA, local_conv_model
from video_fixtures import audio_summary, make_clip, make_deep_clip


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return str(local_conv_model(tmp_path_factory.mktemp("m") / "local.onnx", metadata=LOCAL_METADATA))


def _img(path: Path, shape=(40, 56, 3)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.random.default_rng(len(str(path))).integers(0, 256, shape, dtype=np.uint8))
    return path


def _leftovers(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob(".*") if ".tmp" in p.name]


def test_single_image_default_output_and_compare(model, tmp_path):
    src = _img(tmp_path / "photo é 1.png")
    result = run_cli("deblur-run", str(src), "-m", model, "--compare", check=True)
    out = tmp_path / "photo é 1_deblurred.png"
    assert cv2.imdecode(np.fromfile(out, np.uint8), cv2.IMREAD_UNCHANGED).shape == (40, 56, 3)
    compare = cv2.imdecode(np.fromfile(tmp_path / "photo é 1_deblurred_compare.png", np.uint8), cv2.IMREAD_UNCHANGED)
    assert compare.shape == (40, 56 * 2 + 8, 3)
    assert "1 done, 0 failed" in result.stderr


def test_explicit_output_file_and_refusal_to_overwrite(model, tmp_path):
    src, out = _img(tmp_path / "a.jpg"), tmp_path / "res" / "b.png"
    run_cli("deblur-run", str(src), "-o", str(out), "-m", model, check=True)
    before = out.stat().st_mtime_ns
    again = run_cli("deblur-run", str(src), "-o", str(out), "-m", model)
    assert again.returncode == 2 and "--overwrite" in again.stderr and out.stat().st_mtime_ns == before
    run_cli("deblur-run", str(src), "-o", str(out), "-m", model, "--overwrite", check=True)


def test_input_is_never_overwritten(model, tmp_path):
    src = _img(tmp_path / "a.png")
    data = src.read_bytes()
    result = run_cli("deblur-run", str(src), "-o", str(src), "-m", model, "--overwrite")
    assert result.returncode == 2 and "refusing to overwrite an input" in result.stderr
    assert src.read_bytes() == data


def test_folder_is_mirrored_and_bad_files_are_skipped(model, tmp_path):
    root = tmp_path / "shots"
    _img(root / "one.png")
    _img(root / "sub" / "two.jpg", (33, 21, 3))
    (root / "sub" / "broken.jpg").write_text("not a jpeg")
    (root / "notes.txt").write_text("ignored: not an image")
    result = run_cli("deblur-run", str(root), "-m", model, "--tile", "32", "--blend", "8")
    out = tmp_path / "shots_deblurred"
    assert result.returncode == 2  # something failed, and the rest was still done
    assert (out / "one.png").exists() and (out / "sub" / "two.jpg").exists()
    assert not (out / "sub" / "broken.jpg").exists()
    assert "broken.jpg" in result.stderr and "2 done, 1 failed" in result.stderr
    assert not _leftovers(out)


def test_several_inputs_into_an_output_folder(model, tmp_path):
    a, b = _img(tmp_path / "a.png"), _img(tmp_path / "b.bmp")
    run_cli("deblur-run", str(a), str(b), "-o", str(tmp_path / "out"), "-m", model, check=True)
    assert {p.name for p in (tmp_path / "out").iterdir()} == {"a.png", "b.bmp"}


@pytest.mark.parametrize("case", ["missing", "empty", "text_as_jpg", "truncated_png", "unknown_suffix"])
def test_bad_inputs_exit_2_with_one_line(model, tmp_path, case):
    src = tmp_path / {"missing": "nope.png", "empty": "e.png", "text_as_jpg": "t.jpg",
                      "truncated_png": "tr.png", "unknown_suffix": "x.xyz"}[case]
    if case == "empty":
        src.write_bytes(b"")
    elif case == "text_as_jpg":
        src.write_text("hello")
    elif case == "truncated_png":
        full = _img(tmp_path / "full.png", (64, 64, 3)).read_bytes()
        src.write_bytes(full[: len(full) // 3])
    elif case == "unknown_suffix":
        src.write_text("x")
    result = run_cli("deblur-run", str(src), "-m", model)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and src.name in errors[0]
    assert not list(tmp_path.glob("*_deblurred*")) and not _leftovers(tmp_path)


@pytest.mark.parametrize("option, value", [("--tile-batch", "0"), ("--self-ensemble", "3"), ("--threads", "-2"),
                                           ("--blend", "-1")])
def test_bad_option_values_are_refused_by_their_flag_name(model, tmp_path, option, value):
    src = _img(tmp_path / "a.png")
    result = run_cli("deblur-run", str(src), "-m", model, option, value)
    assert result.returncode == 2 and f"Invalid value for '{option}'" in result.stderr
    assert "Traceback" not in result.stderr and not list(tmp_path.glob("*_deblurred*"))


def test_bad_model_and_missing_provider_exit_2(model, tmp_path):
    src = _img(tmp_path / "a.png")
    (tmp_path / "m.onnx").write_text("nope")
    r = run_cli("deblur-run", str(src), "-m", str(tmp_path / "m.onnx"))
    assert r.returncode == 2 and "not a loadable ONNX model" in r.stderr and "Traceback" not in r.stderr
    r = run_cli("deblur-run", str(src), "-m", model, "--provider", "cuda")
    assert r.returncode == 2 and "available:" in r.stderr


def test_help_and_version():
    assert "--tile" in run_cli("deblur-run", "--help", check=True).stdout
    assert "deblur-run, version" in run_cli("deblur-run", "--version", check=True).stdout


def test_video_keeps_every_frame_rate_size_and_audio(model, tmp_path):
    src = make_clip(tmp_path / "clip.mp4", w=64, h=48, n=20, audio="aac")
    run_cli("deblur-run", str(src), "-m", model, "--compare", check=True)
    out = tmp_path / "clip_deblurred.mp4"
    src_info, out_info = probe_video(src), probe_video(out)
    assert (out_info.width, out_info.height, out_info.fps) == (src_info.width, src_info.height, src_info.fps)
    assert out_info.frame_count == src_info.frame_count == 20
    assert out_info.has_audio and audio_summary(out)[0] == "aac"
    assert (tmp_path / "clip_deblurred_compare_mp4.png").exists()


def test_deep_video_is_deblurred_in_16_bits(model, tmp_path):
    # An HDR phone clip: 10 bits in, 10 bits out, through the model's 16-bit route.
    src = make_deep_clip(tmp_path / "hdr.mov", "yuv420p10le", hdr=True, frames=3)
    run_cli("deblur-run", str(src), "-o", str(tmp_path / "out.mp4"), "-m", model, "--compare", check=True)
    with av.open(str(tmp_path / "out.mp4")) as c:
        stream = c.streams.video[0]
        assert (stream.codec_context.name, stream.format.name, stream.frames) == ("hevc", "yuv420p10le", 3)
    assert cv2.imread(str(tmp_path / "out_compare_mp4.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    # PQ code values in BT.2020: tagged as such (cICP), or viewers show them washed out.
    assert read_image_and_metadata(tmp_path / "out_compare_mp4.png")[1].nclx == (9, 16, 0, 1)
    # --video-codec h264 keeps the depth, but says few players take it; --video-depth 8 is what they take.
    result = run_cli("deblur-run", str(src), "-o", str(tmp_path / "h264.mp4"), "-m", model, "--video-codec", "h264",
                     check=True)
    assert "H.264 at 10 bits 4:2:0 plays in few players" in result.stderr and "--video-depth 8" in result.stderr
    result = run_cli("deblur-run", str(src), "-o", str(tmp_path / "eight.mp4"), "-m", model, "--video-depth", "8",
                     check=True)
    assert "plays in few players" not in result.stderr
    assert "10-bit PQ HDR video written with 8 bits per channel, as asked: it will show banding" in result.stderr
    with av.open(str(tmp_path / "eight.mp4")) as c:
        assert (c.streams.video[0].codec_context.name, c.streams.video[0].format.name) == ("h264", "yuv420p")


def test_video_codec_and_quality_can_be_chosen(model, tmp_path):
    src = make_clip(tmp_path / "clip.mp4", w=64, h=48, n=8, audio=None)
    run_cli("deblur-run", str(src), "-o", str(tmp_path / "vp9.mkv"), "-m", model, "--video-codec", "vp9", check=True)
    assert probe_video(tmp_path / "vp9.mkv").codec == "vp9"
    sizes = {}
    for crf in (10, 35):
        run_cli("deblur-run", str(src), "-o", str(tmp_path / f"q{crf}.mp4"), "-m", model, "--crf", str(crf), check=True)
        sizes[crf] = (tmp_path / f"q{crf}.mp4").stat().st_size
    assert sizes[35] < sizes[10]
    bad = run_cli("deblur-run", str(src), "-o", str(tmp_path / "x.webm"), "-m", model, "--video-codec", "h264")
    assert bad.returncode == 2 and "clip.mp4 -> " in bad.stderr and "webm files cannot hold h264" in bad.stderr


def test_sigterm_mid_video_leaves_no_partial_output(model, tmp_path):
    src = make_clip(tmp_path / "long.mp4", w=320, h=240, n=40, audio=None)
    exe = Path(sys.executable).parent / "deblur-run"
    # A slow frame: tile 16 with overlap 4 means many model calls per frame.
    proc = subprocess.Popen([str(exe), str(src), "-m", model, "--tile", "16", "--overlap", "2", "--blend", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:  # wait until the model is loaded and the handlers are about to be set
        if "deblurring with" in line:
            break
    time.sleep(1.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    if proc.returncode == 0:
        pytest.skip("the video finished before the signal arrived")
    assert proc.returncode == 130, err
    assert "interrupted" in err and "frames" in err
    assert not (tmp_path / "long_deblurred.mp4").exists() and not _leftovers(tmp_path)


def test_a_second_signal_stops_a_slow_image_at_once(tmp_path):
    src = _img(tmp_path / "big.png", shape=(900, 1200, 3))
    exe = Path(sys.executable).parent / "deblur-run"
    # The shipped model (the local one is too fast), ~7500 tiles of 16 px: ~20 s, where one
    # signal would wait for the image to finish.
    proc = subprocess.Popen([str(exe), str(src), "--tile", "16", "--overlap", "2", "--blend", "2", "--threads", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if "deblurring with" in line:
            break
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    started = time.monotonic()
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err  # 0: the signals waited for the whole image
    assert time.monotonic() - started < 5, "the second signal should stop within a tile or two"
    assert "send it again to stop at once" in err and "stopped at once" in err and "Traceback" not in err
    assert not (tmp_path / "big_deblurred.png").exists() and not _leftovers(tmp_path)


def test_compare_files_are_outputs_too(model, tmp_path):
    src = _img(tmp_path / "a.png")
    taken = _img(tmp_path / "b_compare.png")
    data = taken.read_bytes()
    result = run_cli("deblur-run", str(src), "-o", str(tmp_path / "b.png"), "-m", model, "--compare")
    assert result.returncode == 2 and "b_compare.png: exists; pass --overwrite" in result.stderr
    assert taken.read_bytes() == data and not (tmp_path / "b.png").exists()
    # Given beside a.png, a_deblurred_compare.png is a.png's compare picture from an earlier run
    # (`deblur-run *.png` again): not deblurred itself, and replaced by --overwrite.
    other = _img(tmp_path / "a_deblurred_compare.png")
    data = other.read_bytes()
    result = run_cli("deblur-run", str(src), str(other), "-m", model, "--compare", "--overwrite", check=True)
    assert "a_deblurred_compare.png: " in result.stderr and "result from an earlier run; not deblurred again" in \
        result.stderr and "1 done, 0 failed" in result.stderr
    assert other.read_bytes() != data and (tmp_path / "a_deblurred.png").exists()


@pytest.mark.parametrize("arg, cwd", [(".", "fold"), ("", "fold"), ("..", "fold/sub"), ("fold", ".")])
def test_dot_folders_write_beside_the_folder_they_name(model, tmp_path, arg, cwd):
    _img(tmp_path / "fold" / "sub" / "x.png")
    result = run_cli("deblur-run", arg, "-m", model, "-q", cwd=tmp_path / cwd)
    assert result.returncode == 0, result.stderr
    produced = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file())
    assert produced == ["fold/sub/x.png", "fold_deblurred/sub/x.png"], produced


def test_a_symlinked_folder_writes_beside_the_link(model, tmp_path):
    _img(tmp_path / "real" / "photos" / "x.png")
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "mine").symlink_to(tmp_path / "real" / "photos")
    result = run_cli("deblur-run", "mine", "-m", model, "-q", cwd=tmp_path / "work")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "work" / "mine_deblurred" / "x.png").is_file()
    assert not (tmp_path / "real" / "photos_deblurred").exists()


def test_folder_with_a_video_in_a_subfolder_creates_the_output_folders(model, tmp_path):
    root = tmp_path / "trip"
    (root / "day1").mkdir(parents=True)
    make_clip(root / "day1" / "clip.mp4", w=64, h=48, n=8, audio=None)
    _img(root / "cover.png")
    run_cli("deblur-run", str(root), "-m", model, check=True)
    assert probe_video(tmp_path / "trip_deblurred" / "day1" / "clip.mp4").frame_count == 8


def test_two_inputs_with_one_output_name_are_refused(model, tmp_path):
    a, b = _img(tmp_path / "a" / "x.png"), _img(tmp_path / "b" / "x.png")
    result = run_cli("deblur-run", str(a), str(b), "-o", str(tmp_path / "out"), "-m", model)
    assert result.returncode == 2 and "already writes there" in result.stderr
    assert (tmp_path / "out" / "x.png").exists()  # the first one still ran


def test_unwritable_output_folder_is_a_one_line_error(model, tmp_path):
    # A file where the output folder should be: fails for root too, unlike permissions.
    src = _img(tmp_path / "a.png")
    (tmp_path / "blocker").write_text("a file, not a folder")
    result = run_cli("deblur-run", str(src), "-o", str(tmp_path / "blocker" / "out.png"), "-m", model)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "blocker is a file, not a folder" in result.stderr


def test_sixteen_bit_result_into_an_eight_bit_format_is_written_with_8_bits(model, tmp_path):
    # A 10-bit HEIC or a 16-bit scan asked for as JPEG/WebP was refused ("cannot store uint16").
    src = tmp_path / "deep.png"
    cv2.imwrite(str(src), np.full((20, 20, 3), 30000, np.uint16))
    result = run_cli("deblur-run", str(src), "-o", str(tmp_path / "out.webp"), "-m", model, "--compare", check=True)
    assert "written with 8 bits per channel, all .webp holds (write .png or .tif to keep its depth" in result.stderr
    run_cli("deblur-run", str(src), "-o", str(tmp_path / "ref.tif"), "-m", model, check=True)
    deep = cv2.imread(str(tmp_path / "ref.tif"), cv2.IMREAD_UNCHANGED)
    assert deep.dtype == np.uint16
    for name in ("out.webp", "out_compare.webp"):
        assert cv2.imread(str(tmp_path / name), cv2.IMREAD_UNCHANGED).dtype == np.uint8
    # the same picture, rounded to 8 bits (lossless WebP from a lossless source)
    assert np.abs(cv2.imread(str(tmp_path / "out.webp")).astype(int) - np.round(deep / 257)).max() <= 1


@pytest.mark.parametrize("order, kind", [("II", 3), ("MM", 3), ("MM", 4)])
def test_exif_orientation_of_jpegs_is_applied(model, tmp_path, order, kind):
    from deblur.runtime import read_image

    # A 40x20 (WxH) JPEG whose EXIF says "rotate 90 degrees": viewers show it 20x40, in either
    # byte order, SHORT as the standard says or LONG (which OpenCV's own reading misses).
    ok, data = cv2.imencode(".jpg", np.zeros((20, 40, 3), np.uint8))
    end = "little" if order == "II" else "big"
    value = (6).to_bytes(2 if kind == 3 else 4, end).ljust(4, b"\x00")
    entry = (0x0112).to_bytes(2, end) + kind.to_bytes(2, end) + (1).to_bytes(4, end) + value
    exif = b"Exif\x00\x00" + order.encode() + (42).to_bytes(2, end) + (8).to_bytes(4, end) + (1).to_bytes(2, end) \
        + entry + bytes(4)
    app1 = b"\xff\xe1" + (len(exif) + 2).to_bytes(2, "big") + exif
    path = tmp_path / "rotated.jpg"
    path.write_bytes(data.tobytes()[:2] + app1 + data.tobytes()[2:])
    assert read_image(path).shape[:2] == (40, 20)
    run_cli("deblur-run", str(path), "-o", str(tmp_path / "out.jpg"), "-m", model, check=True)
    Image = pytest.importorskip("PIL.Image")
    with Image.open(tmp_path / "out.jpg") as written:  # upright pixels, upright tag
        assert written.size == (20, 40) and written.getexif().get(0x0112) == 1


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_exif_orientation_of_pngs_and_webps_is_applied_like_opencv_does(tmp_path, fmt):
    import io

    Image = pytest.importorskip("PIL.Image")
    from deblur.runtime import read_image

    rgba = np.random.default_rng(0).integers(0, 256, (20, 30, 4), dtype=np.uint8)
    for orientation in range(1, 9):
        exif = Image.Exif()
        exif[0x0112] = orientation
        read = {}
        for mode in ("RGB", "RGBA"):
            buffer = io.BytesIO()
            Image.fromarray(rgba[:, :, :len(mode)]).save(buffer, fmt, exif=exif.tobytes(), lossless=True, exact=True)
            path = tmp_path / f"{mode}.{fmt.lower()}"
            path.write_bytes(buffer.getvalue())
            read[mode] = read_image(path)
            if mode == "RGB":  # OpenCV's colour mode applies the orientation (and would drop alpha)
                assert np.array_equal(read[mode], cv2.imread(str(path), cv2.IMREAD_COLOR)), orientation
        # Alpha is kept, and turned with the colours.
        assert read["RGBA"].shape[2] == 4 and np.array_equal(read["RGBA"][:, :, :3], read["RGB"]), orientation


def test_alpha_is_kept_where_the_format_can_hold_it_and_its_loss_is_said_elsewhere(model, tmp_path):
    src = _img(tmp_path / "a.png", shape=(40, 56, 4))
    result = run_cli("deblur-run", str(src), "-o", str(tmp_path / "a.webp"), "-m", model, check=True)
    assert "alpha" not in result.stderr
    assert cv2.imread(str(tmp_path / "a.webp"), cv2.IMREAD_UNCHANGED).shape == (40, 56, 4)
    result = run_cli("deblur-run", str(src), "-o", str(tmp_path / "a.jpg"), "-m", model, check=True)
    assert "alpha channel is dropped: .jpg cannot store one" in result.stderr


@pytest.mark.parametrize("order, kind, prefix", [("II", 3, b""), ("MM", 3, b""), ("MM", 4, b""), ("II", 3, b"Exif\x00\x00")])
def test_exif_orientation_in_either_byte_order_and_type(order, kind, prefix):
    from deblur.runtime.metadata import exif_orientation

    end = "little" if order == "II" else "big"
    value = (6).to_bytes(2 if kind == 3 else 4, end).ljust(4, b"\x00")
    entry = (0x0112).to_bytes(2, end) + kind.to_bytes(2, end) + (1).to_bytes(4, end) + value
    tiff = order.encode() + (42).to_bytes(2, end) + (8).to_bytes(4, end) + (1).to_bytes(2, end) + entry + bytes(4)
    assert exif_orientation(prefix + tiff) == 6
    assert exif_orientation(prefix + tiff[:12]) == 1  # truncated: upright, never an exception


def test_the_colour_profile_travels_to_jpeg_png_webp_and_tiff_outputs(model, tmp_path):
    Image = pytest.importorskip("PIL.Image")
    ImageCms = pytest.importorskip("PIL.ImageCms")
    # Any profile will do (Pillow can make sRGB); a phone photo would carry Display P3.
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    src = tmp_path / "p3.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(
        src, icc_profile=profile)
    for out in ("a.jpg", "a.png", "a.webp", "a.tif"):
        result = run_cli("deblur-run", str(src), "-o", str(tmp_path / out), "-m", model, "--compare", check=True)
        assert "profile" not in result.stderr
        for path in (tmp_path / out, tmp_path / out.replace("a.", "a_compare.")):
            with Image.open(path) as written:
                assert written.info.get("icc_profile") == profile, path
            assert cv2.imread(str(path)).shape[0] == 40  # still a plain image to OpenCV
    result = run_cli("deblur-run", str(src), "-o", str(tmp_path / "a.bmp"), "-m", model, check=True)
    assert "ICC colour profile is dropped" in result.stderr
    # And from tagged WebP and TIFF files (what the outputs above now are), 16-bit TIFF too.
    for src, out in (("a.webp", "b.jpg"), ("a.tif", "b.png")):
        run_cli("deblur-run", str(tmp_path / src), "-o", str(tmp_path / out), "-m", model, check=True)
        with Image.open(tmp_path / out) as written:
            assert written.info.get("icc_profile") == profile, src
    deep = cv2.imread(str(tmp_path / "a.tif"), cv2.IMREAD_UNCHANGED).astype(np.uint16) * 257
    cv2.imwrite(str(tmp_path / "deep.tif"), deep)
    from deblur.runtime.metadata import embed_metadata, read_icc

    (tmp_path / "deep.tif").write_bytes(embed_metadata((tmp_path / "deep.tif").read_bytes(), profile))
    run_cli("deblur-run", str(tmp_path / "deep.tif"), "-o", str(tmp_path / "deep_out.tif"), "-m", model, check=True)
    assert read_icc((tmp_path / "deep_out.tif").read_bytes()) == profile
    assert cv2.imread(str(tmp_path / "deep_out.tif"), cv2.IMREAD_UNCHANGED).dtype == np.uint16


def test_profile_reading_never_fails_on_damaged_files():
    import io
    import random

    Image = pytest.importorskip("PIL.Image")
    ImageCms = pytest.importorskip("PIL.ImageCms")
    from deblur.runtime.metadata import exif_orientation, read_icc, read_metadata, upright_exif

    # A real header, padded to 150 kB (three APP2 segments in a JPEG), its size field updated.
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes() + bytes(150_000)
    profile = len(profile).to_bytes(4, "big") + profile[4:]
    exif = Image.Exif()
    exif[0x0112], exif[0x010F] = 3, "Deblur Cam"
    exif.get_ifd(0x8769).update({0xA002: 8, 0xA003: 8})
    rng = random.Random(0)
    for fmt in ("JPEG", "PNG", "WEBP", "TIFF"):
        buffer = io.BytesIO()
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buffer, fmt, icc_profile=profile, exif=exif.tobytes())
        data = buffer.getvalue()
        assert read_icc(data) == profile
        assert exif_orientation(read_metadata(data).exif) == 3
        for _ in range(2000):
            damaged = bytearray(data[:rng.randrange(len(data))] if rng.random() < 0.5 else data)
            for _ in range(rng.randrange(4)):
                damaged[rng.randrange(len(damaged))] = rng.randrange(256)
            # Never an exception: damaged metadata is no metadata, and what is found can be edited.
            found = read_metadata(bytes(damaged))
            assert found.icc is None or (isinstance(found.icc, bytes) and found.icc[36:40] == b"acsp")
            if found.exif is not None:
                assert exif_orientation(upright_exif(found.exif)) == 1
        # Bytes appended after a file are not part of it: its metadata is still found.
        assert read_metadata(data + bytes(9)) == read_metadata(data)
        # A JPEG missing one of its profile's segments gives no profile, not a shorter one.
        if fmt == "JPEG":
            first = data.rindex(b"ICC_PROFILE\x00") - 4  # the last segment: only the count tells
            length = int.from_bytes(data[first + 2:first + 4], "big")
            assert read_icc(data[:first] + data[first + 2 + length:]) is None


def test_a_profile_bomb_and_foreign_colour_spaces_are_not_carried(model, tmp_path):
    import zlib

    from deblur.runtime.metadata import MAX_ICC_BYTES, read_icc

    ok, png = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    body = b"icc\x00\x00" + zlib.compress(bytes(MAX_ICC_BYTES + 10))  # inflates past the cap
    chunk = len(body).to_bytes(4, "big") + b"iCCP" + body + zlib.crc32(b"iCCP" + body).to_bytes(4, "big")
    png = png.tobytes()
    assert read_icc(png[:33] + chunk + png[33:]) is None
    # A CMYK-profiled JPEG decodes to BGR pixels: the CMYK tag must not follow them.
    ImageCms = pytest.importorskip("PIL.ImageCms")
    Image = pytest.importorskip("PIL.Image")
    cmyk = bytearray(ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    cmyk[16:20] = b"CMYK"
    Image.new("CMYK", (16, 16), (10, 20, 30, 40)).save(tmp_path / "c.jpg", icc_profile=bytes(cmyk))
    result = run_cli("deblur-run", str(tmp_path / "c.jpg"), "-m", model, check=True)
    assert "CMYK ICC profile does not describe the decoded colour pixels" in result.stderr
    with Image.open(tmp_path / "c_deblurred.jpg") as written:
        assert "icc_profile" not in written.info


def test_exif_travels_upright_to_jpeg_png_and_webp_outputs(model, tmp_path):
    Image = pytest.importorskip("PIL.Image")
    ImageCms = pytest.importorskip("PIL.ImageCms")
    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    # A phone photo stored 56x40 with "rotate 90 degrees": shown, and deblurred, as 40x56.
    exif = Image.Exif()
    exif[0x0112], exif[0x010F], exif[0x0110] = 6, "Deblur Cam", "Model 1"
    exif.get_ifd(0x8769).update({0x9003: "2026:11:27 10:00:00", 0xA002: 56, 0xA003: 40})
    src = tmp_path / "phone.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(
        src, exif=exif.tobytes(), icc_profile=profile)
    for out in ("a.jpg", "a.png", "a.webp"):
        result = run_cli("deblur-run", str(src), "-o", str(tmp_path / out), "-m", model, "--compare", check=True)
        assert "EXIF" not in result.stderr
        with Image.open(tmp_path / out) as written:
            got = written.getexif()
            assert written.info.get("icc_profile") == profile, out  # both kinds of metadata, side by side
            assert written.size == (40, 56)
        assert (got[0x010F], got[0x0110], got.get(0x0112)) == ("Deblur Cam", "Model 1", 1), out
        sub = got.get_ifd(0x8769)
        assert (sub[0x9003], sub[0xA002], sub[0xA003]) == ("2026:11:27 10:00:00", 40, 56), out
        # Upright pixels, upright tag: OpenCV (which applies the tag) sees what was written.
        assert cv2.imread(str(tmp_path / out)).shape[:2] == (56, 40)
        with Image.open(tmp_path / out.replace("a.", "a_compare.")) as compare:
            assert not compare.getexif()  # two pictures side by side: not the photo the EXIF describes
    result = run_cli("deblur-run", str(src), "-o", str(tmp_path / "a.bmp"), "-m", model, check=True)
    assert "EXIF data (date, camera, place) is dropped" in result.stderr


def _exif_with_sub_ifds(endian="<"):
    Image = pytest.importorskip("PIL.Image")
    exif = Image.Exif()
    exif.endian = endian
    exif[0x0112], exif[0x010F], exif[0x0110] = 6, "Deblur Cam", "Model 1"
    exif.get_ifd(0x8769).update({0x9003: "2026:11:27 10:00:00", 0xA002: 56, 0xA003: 40, 0x829A: (1, 250)})
    exif.get_ifd(0x8825).update({1: "N", 2: (52.0, 13.0, 30.5)})
    return exif.tobytes()


def _assert_upright_exif(path, sizes=(40, 56)):
    Image = pytest.importorskip("PIL.Image")
    with Image.open(path) as written:  # a TIFF's sub-IFDs are read from the open file
        got = written.getexif()
        assert written.size == sizes, path
        sub, gps = got.get_ifd(0x8769), dict(got.get_ifd(0x8825))
    assert (got[0x010F], got[0x0110], got.get(0x0112)) == ("Deblur Cam", "Model 1", 1), path
    assert (sub[0x9003], sub[0xA002], sub[0xA003], tuple(sub[0x829A])) == ("2026:11:27 10:00:00", 40, 56, (1, 250)), path
    assert gps == {1: "N", 2: (52.0, 13.0, 30.5)}, path


def test_tiff_exif_travels_out_of_and_into_tiffs(model, tmp_path):
    """A TIFF keeps its EXIF in its own IFD0 (offsets into the whole file): it is lifted out into
    JPEG/PNG/WebP outputs and written into TIFF outputs, in either byte order, upright."""
    Image = pytest.importorskip("PIL.Image")
    pixels = np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    src = tmp_path / "scan.tif"  # stored 56x40, "rotate 90 degrees": shown as 40x56
    Image.fromarray(pixels).save(src, exif=_exif_with_sub_ifds())
    for out in ("a.png", "a.jpg", "a.webp", "a.tif"):
        result = run_cli("deblur-run", str(src), "-o", str(tmp_path / out), "-m", model, check=True)
        assert "EXIF" not in result.stderr
        _assert_upright_exif(tmp_path / out)
        # turned once: OpenCV's TIFF decoder applies the TIFF's own tag, the runtime does not again
        assert cv2.imread(str(tmp_path / out)).shape[:2] == (56, 40)
    # A big-endian EXIF block (JPEG) into OpenCV's little-endian TIFF: every value re-ordered.
    Image.fromarray(pixels).save(tmp_path / "be.jpg", exif=_exif_with_sub_ifds(">"))
    run_cli("deblur-run", str(tmp_path / "be.jpg"), "-o", str(tmp_path / "be.tif"), "-m", model, check=True)
    _assert_upright_exif(tmp_path / "be.tif")
    run_cli("deblur-run", str(tmp_path / "be.tif"), "-o", str(tmp_path / "be.png"), "-m", model, check=True)
    _assert_upright_exif(tmp_path / "be.png")


def test_tiff_exif_survives_damage_entry_by_entry():
    from deblur.runtime.metadata import read_metadata

    tiff = cv2.imencode(".tif", np.zeros((4, 6, 3), np.uint8))[1].tobytes()
    order = "little"

    def with_entries(entries):  # OpenCV's TIFF with extra IFD0 entries (tag, type, count, value)
        ifd = int.from_bytes(tiff[4:8], order)
        count = int.from_bytes(tiff[ifd:ifd + 2], order)
        own = [tiff[ifd + 2 + 12 * i:ifd + 14 + 12 * i] for i in range(count)]
        extra = [t.to_bytes(2, order) + k.to_bytes(2, order) + n.to_bytes(4, order) + v.to_bytes(4, order)
                 for t, k, n, v in entries]
        body = sorted(own + extra, key=lambda e: int.from_bytes(e[:2], order))
        at = len(tiff) + (len(tiff) & 1)
        out = tiff.ljust(at, b"\x00") + len(body).to_bytes(2, order) + b"".join(body) + bytes(4)
        return out[:4] + at.to_bytes(4, order) + out[8:]

    # Make: ASCII past the end of the file (dropped); Model: fine; an Exif IFD pointing at IFD0
    # itself (a loop: followed once, never forever); an unknown field type (dropped).
    damaged = with_entries([(0x010F, 2, 50, 10 ** 6), (0x0110, 2, 3, int.from_bytes(b"AB\x00\x00", order)),
                            (0x8769, 4, 1, 0), (0x013B, 99, 1, 0)])
    ifd0 = int.from_bytes(damaged[4:8], order)
    damaged = damaged.replace((0x8769).to_bytes(2, order) + (4).to_bytes(2, order) + (1).to_bytes(4, order)
                              + bytes(4), (0x8769).to_bytes(2, order) + (4).to_bytes(2, order)
                              + (1).to_bytes(4, order) + ifd0.to_bytes(4, order))
    exif = read_metadata(damaged).exif
    Image = pytest.importorskip("PIL.Image")
    parsed = Image.Exif()
    parsed.load(b"Exif\x00\x00" + exif)
    assert parsed[0x0110] == "AB" and 0x010F not in parsed and 0x013B not in parsed
    assert read_metadata(tiff).exif is None  # layout tags only: no EXIF block
    cut = Image.Exif()  # IFD0 cut short: its complete entries still count, never an exception
    cut.load(b"Exif\x00\x00" + read_metadata(damaged[:len(damaged) - 30]).exif)
    assert dict(cut) == {0x0110: "AB"}


def test_a_crafted_tiff_cannot_blow_its_exif_up():
    # 500 tags pointing at one 100 kB blob, and an Exif IFD pointing back at itself: a 106 kB
    # file became a 150 MB EXIF block (and past 4 GiB an OverflowError).
    from deblur.runtime.metadata import _MAX_EXIF_BYTES, read_metadata

    order = "little"
    base = bytearray(cv2.imencode(".tif", np.zeros((8, 8, 3), np.uint8))[1].tobytes())
    base += b"\x00" * (len(base) & 1)
    blob_at = len(base)
    base += b"x" * 100_000
    exif_at = len(base)
    entries = sorted([(0x1000 + i, 7, 100_000, blob_at) for i in range(500)] + [(0x8769, 4, 1, exif_at),
                                                                                 (0xA005, 4, 1, exif_at)])
    base += len(entries).to_bytes(2, order) + b"".join(
        t.to_bytes(2, order) + k.to_bytes(2, order) + n.to_bytes(4, order) + v.to_bytes(4, order)
        for t, k, n, v in entries) + bytes(4)
    ifd0 = int.from_bytes(base[4:8], order)
    count = int.from_bytes(base[ifd0:ifd0 + 2], order)
    own = [bytes(base[ifd0 + 2 + 12 * i:ifd0 + 14 + 12 * i]) for i in range(count)]
    own.append((0x8769).to_bytes(2, order) + (4).to_bytes(2, order) + (1).to_bytes(4, order)
               + exif_at.to_bytes(4, order))
    own.sort(key=lambda e: int.from_bytes(e[:2], order))
    base += b"\x00" * (len(base) & 1)
    base[4:8] = len(base).to_bytes(4, order)
    base += len(own).to_bytes(2, order) + b"".join(own) + bytes(4)
    exif = read_metadata(bytes(base)).exif
    assert exif is not None and len(exif) <= _MAX_EXIF_BYTES + 100_000


def test_upright_exif_edits_only_orientation_dimensions_and_the_thumbnail_link():
    from deblur.runtime.metadata import exif_orientation, read_metadata, upright_exif

    def ifd(order, entries, next_ifd):
        out = len(entries).to_bytes(2, order)
        for tag, kind, value in entries:
            size = 2 if kind == 3 else 4
            out += tag.to_bytes(2, order) + kind.to_bytes(2, order) + (1).to_bytes(4, order) \
                + value.to_bytes(size, order).ljust(4, b"\x00")
        return out + next_ifd.to_bytes(4, order)

    for order, magic in (("little", b"II"), ("big", b"MM")):
        # IFD0 at 8: orientation 8 (LONG), a pointer to the Exif IFD at 50; IFD1 (a thumbnail) at 80.
        head = magic + (42).to_bytes(2, order) + (8).to_bytes(4, order)
        tiff = head + ifd(order, [(0x0112, 4, 8), (0x8769, 4, 50)], 80)
        tiff = tiff.ljust(50, b"\x00") + ifd(order, [(0xA002, 3, 640), (0xA003, 4, 480)], 0)
        tiff = tiff.ljust(80, b"\x00") + ifd(order, [(0x0201, 4, 0)], 0)
        fixed = upright_exif(tiff)
        assert exif_orientation(tiff) == 8 and exif_orientation(fixed) == 1
        assert len(fixed) == len(tiff)
        assert int.from_bytes(fixed[8 + 2 + 24:8 + 2 + 28], order) == 0  # no IFD1: no stale thumbnail
        def entry(at):  # (tag, type, value) of the 12-byte IFD entry at ``at``
            kind = int.from_bytes(fixed[at + 2:at + 4], order)
            return (int.from_bytes(fixed[at:at + 2], order), kind,
                    int.from_bytes(fixed[at + 8:at + 8 + (2 if kind == 3 else 4)], order))

        # SHORT 640 x LONG 480 becomes LONG 480 x SHORT 640: type, count and value trade places.
        assert entry(52) == (0xA002, 4, 480) and entry(64) == (0xA003, 3, 640)
        changed = [i for i in range(len(tiff)) if tiff[i] != fixed[i]]
        assert all(i in range(18, 22) or i in range(34, 38) or i in range(54, 56) or i in range(60, 64)
                   or i in range(66, 68) or i in range(72, 76) for i in changed), changed
        assert upright_exif(tiff[:30]) is not None  # truncated: edited where possible, never an exception
    assert read_metadata(b"RIFF\x00\x00\x00\x00WEBPEXIF\xff\xff\x00\x00").exif is None
    # PNG: eXIf may follow the image data (libpng writes it there), and a damaged iCCP costs only itself.
    import zlib

    def chunk(kind, body, crc_ok=True):
        crc = zlib.crc32(kind + body) ^ (0 if crc_ok else 1)
        return len(body).to_bytes(4, "big") + kind + body + crc.to_bytes(4, "big")

    png = cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1].tobytes()
    iend = png.rindex(b"IEND") - 4
    png = png[:33] + chunk(b"iCCP", b"icc\x00\x00" + zlib.compress(b"x" * 200), crc_ok=False) + png[33:iend] \
        + chunk(b"eXIf", tiff) + png[iend:]
    assert read_metadata(png).exif == tiff and read_metadata(png).icc is None


def test_float_tiff_keeps_float_pixels(model, tmp_path):
    from deblur.runtime import Deblurrer

    rng = np.random.default_rng(0)
    pixels = rng.random((24, 32, 3), dtype=np.float32)
    src = tmp_path / "linear.tif"
    cv2.imwrite(str(src), pixels)
    result = run_cli("deblur-run", str(src), "-o", str(tmp_path / "out.png"), "-m", model)
    assert result.returncode == 2 and "out.png: .png cannot store float32 pixels; write the result as .tif or .tiff" \
        in result.stderr
    run_cli("deblur-run", str(src), "-o", str(tmp_path / "out.tif"), "-m", model, check=True)
    out = cv2.imread(str(tmp_path / "out.tif"), cv2.IMREAD_UNCHANGED)
    assert out.dtype == np.float32 and out.shape == pixels.shape
    np.testing.assert_allclose(out, Deblurrer(model, "cpu")(pixels), atol=1e-6)
    # HDR highlights a little over 1 are processed, with a warning that they clip.
    cv2.imwrite(str(src), pixels * 1.5)
    bright = run_cli("deblur-run", str(src), "-o", str(tmp_path / "bright.tif"), "-m", model, check=True)
    assert re.search(r"float pixels span \[0\.000\d+, 1\.5\]", bright.stderr) and "clipped" in bright.stderr
    # Floats stored as 0..255 (as ImageJ writes them) are another scale: refused, not saturated.
    cv2.imwrite(str(src), pixels * 255)
    scaled = run_cli("deblur-run", str(src), "-o", str(tmp_path / "scaled.tif"), "-m", model)
    assert scaled.returncode == 2 and re.search(r"linear.tif: float pixels span \[0\.0\d+, 25\d\.?\d*\]", scaled.stderr)
    assert "8-bit data / 255" in scaled.stderr and not (tmp_path / "scaled.tif").exists()


def test_outputs_get_the_usual_file_mode_and_overwrites_keep_theirs(model, tmp_path):
    # Atomic writes go through a temporary file: made with mkstemp (0600), every result would be private.
    src = _img(tmp_path / "a.png")
    exe = Path(sys.executable).parent / "deblur-run"
    out = tmp_path / "out.png"
    subprocess.run(["bash", "-c", f"umask 027 && exec {exe} {src} -o {out} -m {model}"], check=True, capture_output=True)
    assert out.stat().st_mode & 0o777 == 0o640
    out.chmod(0o604)
    subprocess.run(["bash", "-c", f"umask 077 && exec {exe} {src} -o {out} -m {model} --overwrite"], check=True,
                   capture_output=True)
    assert out.stat().st_mode & 0o777 == 0o604


def test_an_output_folder_inside_the_input_folder_is_not_read_again(model, tmp_path):
    # A second run with -o nest/out would deblur the first run's results (into nest/out/out).
    from deblur.runtime.jobs import plan_jobs

    _img(tmp_path / "nest" / "a.jpg")
    run_cli("deblur-run", str(tmp_path / "nest"), "-o", str(tmp_path / "nest" / "out"), "-m", model, check=True)
    jobs, problems = plan_jobs([tmp_path / "nest"], tmp_path / "nest" / "out")
    assert [j.src.name for j in jobs] == ["a.jpg"] and not problems
    again = run_cli("deblur-run", str(tmp_path / "nest"), "-o", str(tmp_path / "nest" / "out"), "-m", model,
                    "--overwrite", check=True)
    assert "1 done, 0 failed" in again.stderr and not (tmp_path / "nest" / "out" / "out").exists()


def test_several_inputs_and_an_output_named_like_a_file_are_refused(model, tmp_path):
    a, b = _img(tmp_path / "a.jpg"), _img(tmp_path / "b.png")
    result = run_cli("deblur-run", str(a), str(b), "-o", str(tmp_path / "single.jpg"), "-m", model)
    assert result.returncode == 2 and "several inputs need an output folder" in result.stderr
    assert f"{tmp_path / 'single'}/" in result.stderr and not (tmp_path / "single.jpg").exists()
    one = run_cli("deblur-run", str(a), "-o", str(tmp_path / "newdir"), "-m", model)
    assert one.returncode == 2 and f"end it with /: {tmp_path / 'newdir'}/" in one.stderr


def test_an_unwritable_output_is_refused_before_the_work_and_the_rest_still_runs(tmp_path):
    from deblur.runtime.jobs import Job, run_jobs

    (tmp_path / "afile").write_text("a file where a folder should be")
    calls = []
    deblur = lambda image: calls.append(image.shape) or image  # noqa: E731
    src = _img(tmp_path / "a.png")
    jobs = [Job(src, tmp_path / "afile" / "a.png", "image"), Job(src, tmp_path / "ok" / "a.png", "image")]
    summary = run_jobs(deblur, jobs)
    assert len(calls) == 1 and [j.dst for j in summary.done] == [tmp_path / "ok" / "a.png"]
    assert "afile is a file, not a folder" in summary.failed[0][1]


def test_a_video_temporary_file_that_cannot_be_made_is_a_video_error(tmp_path):
    from deblur.runtime.video.errors import VideoError
    from deblur.runtime.video.pipeline import _temp_path

    with pytest.raises(VideoError, match=r"out\.mp4: cannot write here .*write somewhere else"):
        _temp_path(str(tmp_path / "gone" / "out.mp4"))


def test_a_folder_into_an_existing_file_is_one_planning_error(model, tmp_path):
    for name in ("a.png", "b.png", "c.jpg"):
        _img(tmp_path / "shots" / name)
    _img(tmp_path / "taken.jpg")
    result = run_cli("deblur-run", str(tmp_path / "shots"), "-o", str(tmp_path / "taken.jpg"), "-m", model)
    assert result.returncode == 2
    assert result.stderr.count("is a file; a folder's results need an output folder") == 1, result.stderr


def test_skip_existing_finishes_an_interrupted_batch(model, tmp_path):
    for name in ("a.png", "b.png"):
        _img(tmp_path / "shots" / name)
    out = tmp_path / "shots_deblurred"
    _img(out / "a.png")  # as if an earlier run had finished it
    before = (out / "a.png").read_bytes()
    result = run_cli("deblur-run", str(tmp_path / "shots"), "-m", model, "--skip-existing", check=True)
    assert "1 done, 1 skipped (exist), 0 failed" in result.stderr
    assert (out / "a.png").read_bytes() == before and (out / "b.png").exists()
    again = run_cli("deblur-run", str(tmp_path / "shots"), "-m", model)
    assert again.returncode == 2 and "exists; pass --overwrite to replace it (or --skip-existing)" in again.stderr
    both = run_cli("deblur-run", str(tmp_path / "shots"), "-m", model, "--skip-existing", "--overwrite")
    assert both.returncode == 2 and "pass one" in both.stderr


def test_a_failed_file_leaves_no_empty_output_folders_and_a_repeated_input_runs_once(model, tmp_path):
    root = tmp_path / "in"
    (root / "deep" / "er").mkdir(parents=True)
    (root / "deep" / "er" / "broken.jpg").write_text("not a jpeg")
    _img(root / "ok.png")
    result = run_cli("deblur-run", str(root), "-m", model)
    assert result.returncode == 2 and "1 done, 1 failed" in result.stderr
    assert not (tmp_path / "in_deblurred" / "deep").exists() and (tmp_path / "in_deblurred" / "ok.png").exists()
    twice = run_cli("deblur-run", str(root / "ok.png"), str(root / "ok.png"), "-o", str(tmp_path / "o") + "/",
                    "-m", model, check=True)
    assert "ok.png: given twice (the same file as " in twice.stderr and "1 done, 0 failed" in twice.stderr


def test_a_linked_folder_inside_an_input_folder_is_said_not_followed(model, tmp_path):
    _img(tmp_path / "other" / "x.png")
    _img(tmp_path / "in" / "a.png")
    (tmp_path / "in" / "link").symlink_to(tmp_path / "other", target_is_directory=True)
    result = run_cli("deblur-run", str(tmp_path / "in"), "-m", model, check=True)
    assert "link: a linked folder, not followed" in result.stderr and "1 done" in result.stderr


def test_planning_keeps_linked_copies_and_skips_every_output_inside_an_input(tmp_path):
    from deblur.runtime.jobs import plan_jobs

    _img(tmp_path / "s" / "x.png")
    (tmp_path / "s" / "sub").mkdir()
    (tmp_path / "s" / "sub" / "x.png").symlink_to(tmp_path / "s" / "x.png")
    jobs, problems = plan_jobs([tmp_path / "s"], tmp_path / "out")
    assert sorted(str(j.dst.relative_to(tmp_path / "out")) for j in jobs) == ["sub/x.png", "x.png"] and not problems
    # Two inputs into a folder inside the first: the second's results are no input next time.
    _img(tmp_path / "more" / "b.png")
    _img(tmp_path / "s" / "res" / "more" / "b.png")  # what the first run wrote
    jobs, _ = plan_jobs([tmp_path / "s", tmp_path / "more"], tmp_path / "s" / "res")
    assert not any("res" in j.src.parts for j in jobs) and len(jobs) == 3


def test_skip_existing_with_compare_keeps_an_output_whose_picture_is_missing(tmp_path, caplog):
    from deblur.runtime.jobs import Job, run_jobs

    src = _img(tmp_path / "a.png")
    job = Job(src, _img(tmp_path / "out" / "a.png"), "image")  # the stop came before the picture
    with caplog.at_level("WARNING"):
        summary = run_jobs(lambda image: image, [job], skip_existing=True, compare=True)
    assert summary.skipped == [job] and not summary.failed
    assert "exists without its compare picture; pass --overwrite to make both" in caplog.text


def test_skip_existing_with_compare_redoes_an_output_whose_picture_was_kept(tmp_path):
    # The user deleted one result to redo it; its compare picture stayed. "pass --skip-existing"
    # (which was given) was the error.
    from deblur.runtime.jobs import Job, run_jobs

    src = _img(tmp_path / "a.png")
    job = Job(src, tmp_path / "out" / "a.png", "image")
    _img(job.compare_path)
    summary = run_jobs(lambda image: image, [job], skip_existing=True, compare=True)
    assert summary.done == [job] and not summary.failed and job.dst.exists()


def test_a_video_compare_picture_has_its_container_in_the_name(tmp_path):
    # Beside a poster clip.png (or clip.mov) "clip_compare.png" would be taken, by this run or a later one.
    from deblur.runtime.jobs import plan_jobs

    for name in ("clip.mp4", "clip.png", "take.mkv", "take.mov", "solo.mp4"):
        (tmp_path / "m" / name).parent.mkdir(exist_ok=True)
        (tmp_path / "m" / name).write_bytes(b"x")
    jobs, problems = plan_jobs([tmp_path / "m"], tmp_path / "o", compare=True)
    assert not problems and len(jobs) == 5
    assert sorted(j.compare_path.name for j in jobs) == [
        "clip_compare.png", "clip_compare_mp4.png", "solo_compare_mp4.png", "take_compare_mkv.png",
        "take_compare_mov.png"]


@pytest.mark.parametrize("out", ["same", "same/", "./same"])
def test_the_input_folder_as_output_folder_is_named_as_the_problem(tmp_path, monkeypatch, out):
    from deblur.runtime.jobs import plan_jobs

    monkeypatch.chdir(tmp_path)
    _img(tmp_path / "same" / "a.png")
    jobs, problems = plan_jobs([Path("same")], Path(out))
    assert not jobs and "is the input folder: the results would land on the inputs" in problems[0][1]


def _srgb_profile() -> bytes:
    ImageCms = pytest.importorskip("PIL.ImageCms")
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_a_grey_alpha_png_comes_back_grey_alpha(model, tmp_path, dtype):
    # OpenCV decodes grey+alpha to BGRA and cannot write it back: the runtime writes PNG colour
    # type 4 itself (not RGBA: 2.6x the file on camera.png), EXIF embedded as usual.
    from deblur.runtime.image_io import encode_image
    from deblur.runtime.metadata import Metadata, read_metadata

    rng = np.random.default_rng(3)
    top = np.iinfo(dtype).max
    grey = rng.integers(0, top + 1, (40, 56), dtype=dtype)
    alpha = np.where(np.arange(56) < 20, 0, top).astype(dtype)[None].repeat(40, axis=0)
    pixels = np.dstack([grey, grey, grey, alpha])
    data = encode_image(pixels, ".png", Metadata(grey_alpha=True))
    assert data[25] == 4 and np.array_equal(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED), pixels)
    assert encode_image(pixels, ".png")[25] == 6  # asked for nothing: RGBA, as OpenCV writes it
    # A grey profile (an sRGB header relabelled: the runtime reads only the colour space) travels
    # with the grey + alpha PNG it describes, and is dropped, said, from a colour TIFF.
    from deblur.runtime.metadata import embed_metadata, read_icc

    grey_icc = bytearray(_srgb_profile())
    grey_icc[16:20] = b"GRAY"
    src = tmp_path / "ga.png"
    src.write_bytes(embed_metadata(data, icc=bytes(grey_icc)))
    run_cli("deblur-run", str(src), "-o", str(tmp_path / "out.png"), "-m", model, "--compare", check=True)
    for written in (tmp_path / "out.png", tmp_path / "out_compare.png"):
        raw = written.read_bytes()
        assert raw[25] == 4 and raw[24] == 8 * np.dtype(dtype).itemsize, written  # grey + alpha, same depth
        back = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED)
        assert back.dtype == dtype and np.array_equal(back[:, :56, 3], alpha)  # alpha passed through
        assert read_icc(raw) == bytes(grey_icc)
    tif = run_cli("deblur-run", str(src), "-o", str(tmp_path / "out.tif"), "-m", model, check=True)
    assert "GRAY ICC profile does not describe the decoded colour pixels" in tif.stderr
    assert read_icc((tmp_path / "out.tif").read_bytes()) is None
    from deblur.runtime.image_io import write_image

    exif = b"II*\x00\x08\x00\x00\x00\x00\x00\x00\x00\x00\x00"  # an empty IFD0
    write_image(tmp_path / "tagged.png", pixels, exif=exif)
    assert read_metadata((tmp_path / "tagged.png").read_bytes()).exif == exif


def test_progress_without_a_terminal_is_a_line_now_and_then(caplog, monkeypatch):
    # CI logs, nohup, job schedulers: tqdm's bars are off there, and an hour-long video was silent.
    from deblur.runtime.jobs import Job
    from deblur.runtime.progress import Progress

    monkeypatch.setattr(sys.stderr, "isatty", lambda: False, raising=False)
    jobs = [Job(Path(f"clip{i}.mp4"), Path(f"out{i}.mp4"), "video") for i in range(2)]
    with caplog.at_level("INFO", logger="deblur.runtime.progress"):
        with Progress(jobs, interval_s=0.0) as progress:
            assert progress.lines and not progress.bars
            progress.frames(jobs[0], 10, 40)
            progress.file_done(jobs[0])
            progress.frames(jobs[1], 5, None)
    assert "clip0.mp4: 10 of 40 frames" in caplog.text and "1 of 2 files done" in caplog.text
    assert "clip1.mp4: 5 frames" in caplog.text
    with caplog.at_level("INFO", logger="deblur.runtime.progress"):
        caplog.clear()
        with Progress(jobs, interval_s=3600.0) as progress:
            progress.frames(jobs[0], 10, 40)
        assert not caplog.text  # not before the interval


def test_tiff_alpha_comes_back_straight_and_cmyk_gets_no_made_up_alpha(tmp_path):
    # OpenCV reads 8-bit TIFFs through libtiff's RGBA reader: straight alpha came back
    # premultiplied (200 at alpha 32 as 25), a CMYK file with an opaque alpha it never had.
    tifffile = pytest.importorskip("tifffile")
    from deblur.runtime import read_image, write_image

    rgba = np.zeros((4, 64, 4), np.uint8)
    rgba[..., :3] = (200, 150, 100)
    rgba[..., 3] = np.linspace(0, 255, 64).astype(np.uint8)[None]
    tifffile.imwrite(tmp_path / "straight.tif", rgba, photometric="rgb", extrasamples=["unassalpha"])
    got = read_image(tmp_path / "straight.tif")  # BGRA
    seen = rgba[..., 3] >= 32
    assert np.array_equal(got[..., 3], rgba[..., 3])
    assert np.abs(got[..., :3][seen].astype(int) - [100, 150, 200]).max() <= 4  # 8 bits under low alpha
    write_image(tmp_path / "out.tif", got)
    with tifffile.TiffFile(tmp_path / "out.tif") as written:  # marked as straight alpha, readable back
        assert [int(e) for e in written.pages[0].extrasamples] == [2]
    assert np.array_equal(read_image(tmp_path / "out.tif"), got)
    tifffile.imwrite(tmp_path / "cmyk.tif", rgba, photometric="separated")
    assert read_image(tmp_path / "cmyk.tif").shape == (4, 64, 3)


def test_a_picture_past_opencvs_size_limit_is_one_files_error_and_the_batch_goes_on(tmp_path):
    # cv2.imdecode raises (not None) past 2^30 pixels: a traceback, exit 1, the rest not run.
    import zlib

    from deblur.runtime.jobs import Job, run_jobs

    def chunk(kind, body):
        return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")

    header = (40000).to_bytes(4, "big") + (30000).to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    (tmp_path / "pano.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
                                        + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))
    jobs = [Job(tmp_path / "pano.png", tmp_path / "out" / "pano.png", "image"),
            Job(_img(tmp_path / "a.png"), tmp_path / "out" / "a.png", "image"),
            Job(_img(tmp_path / "b.png", shape=(30, 30, 3)), tmp_path / "out" / "b.png", "image")]

    def deblur(image):
        if image.shape[0] == 30:  # b.png: this machine runs out of memory on it
            raise MemoryError
        return image
    summary = run_jobs(deblur, jobs)
    assert summary.done == [jobs[1]]
    assert "more pixels than OpenCV decodes" in summary.failed[0][1]
    assert "out of memory; use a smaller --tile" in summary.failed[1][1]


def test_a_glob_run_again_does_not_take_earlier_results_for_inputs(tmp_path):
    # `deblur-run *.jpg` twice: a_deblurred.jpg became an input (a_deblurred_deblurred.jpg), and
    # the run ended "refusing to overwrite an input", --skip-existing or not.
    from deblur.runtime.jobs import plan_jobs

    names = ["a.png", "a_deblurred.png", "a_deblurred_compare.png", "b.png", "c_deblurred.png"]
    for name in names:
        _img(tmp_path / name)
    jobs, problems = plan_jobs([tmp_path / name for name in names], None)
    # c_deblurred.png has no c.png beside it in this run: a photo of its own.
    assert not problems and sorted(j.src.name for j in jobs) == ["a.png", "b.png", "c_deblurred.png"]


def test_a_panorama_too_wide_for_webp_is_refused_first_and_its_compare_picture_shrunk(tmp_path):
    # The result was written, then the twice-as-wide compare picture failed "write .png" (it
    # takes the output's suffix); a too-wide output failed only after the deblurring.
    from deblur.runtime.jobs import Job, run_jobs

    wide = _img(tmp_path / "wide.png", shape=(20, 9000, 3))
    job = Job(wide, tmp_path / "wide.webp", "image")
    assert run_jobs(lambda image: image, [job], compare=True).done == [job]
    assert cv2.imread(str(job.compare_path)).shape == (18, 16383, 3)  # 20 x 18008 scaled to fit
    calls = []
    too_wide = Job(_img(tmp_path / "pano.png", shape=(8, 17000, 3)), tmp_path / "pano.webp", "image")
    summary = run_jobs(lambda image: calls.append(1) or image, [too_wide])
    assert not calls and ".webp holds at most 16383 px a side, and this picture is 17000x8" in summary.failed[0][1]


def test_output_names_that_cannot_be_meant_are_named(tmp_path):
    from deblur.runtime.jobs import plan_jobs

    _img(tmp_path / "in" / "a.png")
    jobs, problems = plan_jobs([tmp_path / "in"], tmp_path / "result.jpg")  # made a folder called result.jpg
    assert not jobs and "a folder's results need an output folder, and this names an image file" in problems[0][1]
    jobs, problems = plan_jobs([tmp_path / "in" / "a.png"], tmp_path / "x.gif")
    assert not jobs and "unknown output type '.gif'" in problems[0][1]


def test_animations_and_multi_page_tiffs_say_only_the_first_picture_is_deblurred(tmp_path, caplog):
    Image = pytest.importorskip("PIL.Image")
    tifffile = pytest.importorskip("tifffile")
    from deblur.runtime.jobs import Job, run_jobs

    frames = [Image.fromarray(np.full((16, 16, 3), 50 * i, np.uint8)) for i in range(3)]
    frames[0].save(tmp_path / "anim.png", save_all=True, append_images=frames[1:])
    frames[0].save(tmp_path / "anim.webp", save_all=True, append_images=frames[1:])
    frames[0].save(tmp_path / "still.webp")
    tifffile.imwrite(tmp_path / "scan.tif", np.zeros((3, 16, 16, 3), np.uint8))
    jobs = [Job(tmp_path / name, tmp_path / "out" / name, "image") for name in
            ("anim.png", "anim.webp", "still.webp", "scan.tif")]
    with caplog.at_level("WARNING"):
        assert run_jobs(lambda image: image, jobs).done == jobs
    assert "anim.png: holds 3 frames; only the first is deblurred" in caplog.text
    assert "anim.webp: holds 3 frames" in caplog.text and "scan.tif: holds 3 pages" in caplog.text
    assert "still.webp" not in caplog.text


def test_a_grey_png_with_a_transparent_value_keeps_its_transparency(tmp_path):
    # OpenCV ignores a grey PNG's tRNS: the result came back fully opaque.
    Image = pytest.importorskip("PIL.Image")
    from deblur.runtime.jobs import Job, run_jobs

    grey = np.arange(64, dtype=np.uint8).reshape(8, 8)
    Image.fromarray(grey, "L").save(tmp_path / "key.png", transparency=0)
    job = Job(tmp_path / "key.png", tmp_path / "out.png", "image")
    assert run_jobs(lambda image: image, [job]).done == [job]
    with Image.open(job.dst) as written:
        assert written.mode == "LA"
        pixels = np.asarray(written)
    assert pixels[0, 0, 1] == 0 and (pixels[..., 1] == 255).sum() == 63
    assert np.array_equal(pixels[..., 0], grey)


def test_outputs_are_encoded_like_their_source(tmp_path):
    # Every JPEG came out 4:2:0 at quality 95 (a 4:4:4 q98 photo lost its colour resolution), and
    # a lossy WebP came back lossless (7x the file).
    from deblur.runtime.jobs import Job, run_jobs
    from deblur.runtime.metadata import read_metadata

    photo = np.random.default_rng(4).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    sources = {
        "fine.jpg": [cv2.IMWRITE_JPEG_QUALITY, 98, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444],
        "web.jpg": [cv2.IMWRITE_JPEG_QUALITY, 75],
        "lossy.webp": [cv2.IMWRITE_WEBP_QUALITY, 80],
        "lossless.webp": [cv2.IMWRITE_WEBP_QUALITY, 101],
    }
    for name, params in sources.items():
        cv2.imwrite(str(tmp_path / name), photo, params)
    jobs = [Job(tmp_path / name, tmp_path / "out" / name, "image") for name in sources]
    jobs.append(Job(tmp_path / "web.jpg", tmp_path / "out" / "web_as.webp", "image"))
    assert run_jobs(lambda image: image, jobs).done == jobs
    out = {name: read_metadata((tmp_path / "out" / name).read_bytes()) for name in [*sources, "web_as.webp"]}
    assert (out["fine.jpg"].jpeg_quality, out["fine.jpg"].jpeg_sampling) == (98, "444")
    assert (out["web.jpg"].jpeg_quality, out["web.jpg"].jpeg_sampling) == (95, "420")
    assert out["lossy.webp"].lossy and out["web_as.webp"].lossy and not out["lossless.webp"].lossy


@pytest.mark.parametrize("source", ["jpg", "png", "tif"])
def test_print_resolution_travels(tmp_path, source):
    # A 300-dpi scan came back 72 dpi or none: its print size changed.
    Image = pytest.importorskip("PIL.Image")
    from deblur.runtime.jobs import Job, run_jobs

    photo = np.random.default_rng(5).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / f"scan.{source}", dpi=(300, 150))
    jobs = [Job(tmp_path / f"scan.{source}", tmp_path / "out" / f"scan.{ext}", "image") for ext in ("jpg", "png", "tif")]
    assert run_jobs(lambda image: image, jobs).done == jobs
    for job in jobs:
        with Image.open(job.dst) as written:
            assert tuple(round(v) for v in written.info["dpi"]) == (300, 150), job.dst


def test_with_o_an_input_a_result_would_land_on_is_refused_in_either_order(tmp_path):
    from deblur.runtime.jobs import plan_jobs

    for name in ("y/a.png", "x/a.png"):
        _img(tmp_path / name)
    for inputs in (["y/a.png", "x/a.png"], ["x/a.png", "y/a.png"]):  # x/a.png's result replaced y/a.png
        jobs, problems = plan_jobs([tmp_path / name for name in inputs], tmp_path / "y")
        assert not jobs and all("refusing to overwrite an input" in message for _, message in problems)


def test_an_opencv_rgba_tiff_round_trips_exactly_and_a_key_only_changes_png_outputs(tmp_path):
    from deblur.runtime.jobs import Job, run_jobs

    rgba = np.random.default_rng(6).integers(0, 256, (8, 16, 4), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "cv.tif"), rgba)  # no ExtraSamples, as OpenCV writes them
    job = Job(tmp_path / "cv.tif", tmp_path / "out" / "cv.tif", "image")
    assert run_jobs(lambda image: image, [job]).done == [job]
    assert np.array_equal(cv2.imread(str(job.dst), cv2.IMREAD_UNCHANGED), rgba)  # still exact for OpenCV
    Image = pytest.importorskip("PIL.Image")
    Image.fromarray(np.arange(64, dtype=np.uint8).reshape(8, 8), "L").save(tmp_path / "key.png", transparency=0)
    job = Job(tmp_path / "key.png", tmp_path / "out" / "key.tif", "image")
    assert run_jobs(lambda image: image, [job]).done == [job]
    assert cv2.imread(str(job.dst), cv2.IMREAD_UNCHANGED).ndim == 2  # grey stays grey outside PNG


def test_new_metadata_parsers_never_raise_and_read_what_they_should():
    import io

    Image = pytest.importorskip("PIL.Image")
    from deblur.runtime.metadata import read_metadata

    assert read_metadata(b"\xff\xd8\xff\xc0\x00\x05\x08\x00\x01\xff\xd9").jpeg_sampling is None  # a cut SOF
    frames = [Image.fromarray(np.full((16, 16, 3), 50 * i, np.uint8)) for i in range(2)]
    lossy, lossless = io.BytesIO(), io.BytesIO()
    frames[0].save(lossy, "WEBP", save_all=True, append_images=frames[1:], lossless=False, quality=80)
    frames[0].save(lossless, "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    assert read_metadata(lossy.getvalue()).lossy and not read_metadata(lossless.getvalue()).lossy
    png = io.BytesIO()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(png, "PNG", dpi=(150, 72))
    assert read_metadata(png.getvalue()).dpi == (150.0, 72.0)  # not 150.0114


def test_jfif_is_jpeg(tmp_path):
    # What browsers on Windows save photos as: refused as "unknown file type".
    from deblur.runtime.jobs import Job, plan_jobs, run_jobs
    from deblur.runtime.metadata import read_metadata

    photo = tmp_path / "saved.jfif"
    photo.write_bytes(cv2.imencode(".jpg", np.zeros((16, 16, 3), np.uint8))[1].tobytes())
    jobs, problems = plan_jobs([photo], None)
    assert not problems and jobs == [Job(photo, tmp_path / "saved_deblurred.jfif", "image")]
    assert run_jobs(lambda image: image, jobs).done == jobs
    assert read_metadata(jobs[0].dst.read_bytes()).jpeg_quality == 95  # a JPEG, as named
