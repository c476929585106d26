"""The coefficient reader against independent references, on real photos and their variants."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import warnings

import jpeglib
import numpy as np
import pytest

import dctnet
from dctnet.codec import ijg_qtables

from jpeg_fixtures import in_place, read_pnm, run_tool
from jpeg_surgery import sos_data_start, with_precision, with_scan_garbage, with_size, with_zero_qstep

jpeglib.version.set("turbo210")  # the libjpeg-turbo backend: reads progressive and arithmetic files


def reference_planes(path) -> list[np.ndarray]:
    """Coefficients as jpeglib (an independent reader over its own libjpeg-turbo) sees them."""
    ref = jpeglib.read_dct(str(path))
    planes = [ref.Y]
    if ref.has_chrominance:
        planes += [ref.Cb, ref.Cr]
    if ref.has_black:
        planes.append(ref.K)
    return [p.reshape(p.shape[0], p.shape[1], 64) for p in planes], ref


def assert_matches_reference(path) -> dctnet.DCTImage:
    img = dctnet.read_dct(path)
    planes, ref = reference_planes(path)
    assert len(img.planes) == len(planes) == ref.num_components
    for c, (ours, theirs) in enumerate(zip(img.planes, planes)):
        assert ours.dtype == np.int16 and ours.flags.c_contiguous
        assert ours.shape == theirs.shape, f"{path} component {c}"
        assert np.array_equal(ours, theirs), f"{path} component {c}: coefficients differ"
    for c in range(img.num_components):
        qt = ref.qt[ref.quant_tbl_no[c]].reshape(64)
        assert np.array_equal(img.qtables[c], qt), f"{path} component {c}: quantisation table differs"
    assert (img.width, img.height) == (ref.width, ref.height)
    return img


def test_sample_photos_match_jpeglib(photos):
    for path in photos:
        img = assert_matches_reference(path)
        assert img.source == str(path)
        assert not img.progressive and not img.arithmetic


def test_variants_match_jpeglib(variants):
    for name, path in variants.items():
        img = assert_matches_reference(path)
        if "progressive" in name:
            assert img.progressive
        if "arithmetic" in name:
            assert img.arithmetic


@pytest.mark.parametrize("name, sampling, colorspace", [
    ("baseline_444", ((1, 1), (1, 1), (1, 1)), "ycbcr"),
    ("baseline_420", ((2, 2), (1, 1), (1, 1)), "ycbcr"),
    ("baseline_422", ((2, 1), (1, 1), (1, 1)), "ycbcr"),
    ("baseline_440", ((1, 2), (1, 1), (1, 1)), "ycbcr"),
    ("baseline_411", ((4, 1), (1, 1), (1, 1)), "ycbcr"),
    ("gray", ((1, 1),), "gray"),
    ("cmyk", ((1, 1),) * 4, "cmyk"),
])
def test_geometry_and_colorspace(variants, name, sampling, colorspace):
    img = dctnet.read_dct(variants[name])
    assert img.sampling == sampling
    assert img.colorspace == colorspace
    hmax = max(h for h, _ in sampling)
    vmax = max(v for _, v in sampling)
    for (h, v), plane in zip(sampling, img.planes):
        # libjpeg's height_in_blocks / width_in_blocks: ceil(size * factor / (8 * max factor)).
        assert plane.shape[0] == -(-img.height * v // (8 * vmax))
        assert plane.shape[1] == -(-img.width * h // (8 * hmax))


def test_odd_size_geometry(variants):
    img = dctnet.read_dct(variants["odd225x223_baseline_420"])
    assert (img.width, img.height) == (225, 223)
    assert img.block_shapes == ((28, 29), (14, 15), (14, 15))
    tiny = dctnet.read_dct(variants["tiny17x9_baseline_411"])
    assert tiny.block_shapes == ((2, 3), (2, 1), (2, 1))  # 4:1:1: chroma is 1/4 wide, full height


def test_restart_interval_reported(variants):
    assert dctnet.read_dct(variants["restart_blocks"]).restart_interval == 5
    assert dctnet.read_dct(variants["restart_rows"]).restart_interval > 0
    assert dctnet.read_dct(variants["baseline_420"]).restart_interval == 0


def test_coding_variants_hold_the_same_coefficients(variants):
    """Progressive, arithmetic, restart and optimised-Huffman files of one encoding are lossless
    re-codings of the same quantised coefficients."""
    base = dctnet.read_dct(variants["baseline_420"])
    for name in ("progressive_420", "restart_rows", "restart_blocks", "arithmetic", "arithmetic_progressive"):
        other = dctnet.read_dct(variants[name])
        for a, b in zip(base.planes, other.planes):
            assert np.array_equal(a, b), name


def idct_blocks(coefs: np.ndarray) -> np.ndarray:
    """float64 8x8 inverse DCT (JPEG's, orthonormal) of (Hb, Wb, 64) natural-order blocks -> pixels."""
    x = np.arange(8)
    c = np.where(np.arange(8) == 0, 1 / np.sqrt(2), 1.0) / 2
    basis = c[None, :] * np.cos((2 * x[:, None] + 1) * np.arange(8)[None, :] * np.pi / 16)  # [x, u]
    blocks = coefs.reshape(coefs.shape[0], coefs.shape[1], 8, 8).astype(np.float64)  # [.., v, u]
    pix = np.einsum("yv,abvu,xu->abyx", basis, blocks, basis)
    hb, wb = coefs.shape[:2]
    return pix.transpose(0, 2, 1, 3).reshape(hb * 8, wb * 8) + 128.0


@pytest.mark.parametrize("name", ["baseline_420", "baseline_444", "progressive_420", "gray",
                                  "odd225x223_baseline_422", "arithmetic"])
def test_inverse_dct_reproduces_libjpeg_luma(variants, name):
    path = variants[name]
    img = dctnet.read_dct(path)
    y = idct_blocks(img.planes[0].astype(np.float64) * img.qtables[0].astype(np.float64))
    y = np.clip(np.round(y), 0, 255)[:img.height, :img.width]
    ref = read_pnm(run_tool("djpeg", "-grayscale", "-dct", "int", str(path))).astype(np.float64)
    assert ref.shape == y.shape
    assert np.abs(y - ref).max() <= 1.0


def test_real_photo_luma_within_one_grey_level(photos):
    for path in photos[:5]:
        img = dctnet.read_dct(path)
        y = idct_blocks(img.planes[0].astype(np.float64) * img.qtables[0])
        y = np.clip(np.round(y), 0, 255)[:img.height, :img.width]
        ref = read_pnm(run_tool("djpeg", "-grayscale", str(path))).astype(np.float64)
        assert np.abs(y - ref).max() <= 1.0, path


# --- Sources ---------------------------------------------------------------------------------

def test_bytes_bytearray_memoryview_and_path_agree(photos):
    path = photos[3]
    data = path.read_bytes()
    ref = dctnet.read_dct(path)
    for src in (data, bytearray(data), memoryview(data), str(path)):
        img = dctnet.read_dct(src)
        assert all(np.array_equal(a, b) for a, b in zip(img.planes, ref.planes))
    assert dctnet.read_dct(data).source == "<bytes>"


def test_planes_outlive_the_source_buffer(photos):
    data = bytearray(photos[0].read_bytes())
    img = dctnet.read_dct(data)
    expected = img.planes[0].copy()
    data[:] = b"\0" * len(data)
    del data
    assert np.array_equal(img.planes[0], expected)


def test_wrong_source_type():
    with pytest.raises(TypeError, match="path or a bytes-like"):
        dctnet.read_dct(12345)


def test_missing_file_is_oserror(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        dctnet.read_dct(tmp_path / "nope.jpg")
    assert "nope.jpg" in str(e.value)
    with pytest.raises(IsADirectoryError):
        dctnet.read_dct(tmp_path)


# --- Batches ---------------------------------------------------------------------------------

def test_batch_matches_single_reads(photos):
    srcs = [str(p) for p in photos[:12]] + [photos[12].read_bytes()]
    for threads in (1, 2, 5):
        out = dctnet.read_dct_batch(srcs, threads=threads)
        assert len(out) == len(srcs)
        for src, img in zip(srcs, out):
            ref = dctnet.read_dct(src)
            assert all(np.array_equal(a, b) for a, b in zip(img.planes, ref.planes))


def test_batch_returns_errors_in_place(photos, tmp_path):
    good = photos[0].read_bytes()
    srcs = [good, b"not a jpeg", str(photos[1]), good[: len(good) // 2], str(tmp_path / "missing.jpg"), good]
    out = in_place(dctnet.read_dct_batch(srcs, threads=2, on_error="return"))
    assert isinstance(out[0], dctnet.DCTImage) and isinstance(out[2], dctnet.DCTImage)
    assert isinstance(out[5], dctnet.DCTImage)
    assert isinstance(out[1], dctnet.JPEGError) and out[1].source == "<bytes #1>"
    assert isinstance(out[3], dctnet.JPEGError) and "<bytes #3>" in str(out[3])
    assert isinstance(out[4], FileNotFoundError)
    with pytest.raises(dctnet.JPEGError, match="<bytes #1>"):
        dctnet.read_dct_batch(srcs, threads=2)


def test_batch_result_convention(photos):
    """on_error="return": (values, errors) with one entry per source, for the reader and the
    fused read alike (docs/architecture.md §4)."""
    from dctnet.ops import DCTLayout, read_to_tensor

    good = photos[0].read_bytes()
    result = dctnet.read_dct_batch([good, b"junk", good], on_error="return")
    assert isinstance(result, dctnet.codec.BatchResult)
    images, errors = result
    assert images[1] is None and isinstance(errors[1], dctnet.JPEGError) and errors[1].source == "<bytes #1>"
    assert errors[0] is None and errors[2] is None and isinstance(images[0], dctnet.DCTImage)
    assert errors[1].__traceback__ is None
    tensor_result = read_to_tensor([good, b"junk", good], DCTLayout("upsampling", 4), size=64, on_error="return")
    assert isinstance(tensor_result, dctnet.codec.BatchResult)
    x, tensor_errors = tensor_result
    assert [e is None for e in tensor_errors] == [e is None for e in errors]
    assert str(tensor_errors[1]) == str(errors[1]) and not x[1].any() and x[0].any()


def test_batch_arguments():
    assert dctnet.read_dct_batch([]) == []
    with pytest.raises(ValueError, match="on_error"):
        dctnet.read_dct_batch([], on_error="ignore")
    with pytest.raises(ValueError, match="threads"):
        dctnet.read_dct_batch([b"x"], threads=0)


# --- Bad input -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def good_jpeg(variants) -> bytes:
    return variants["baseline_420"].read_bytes()


def bad_inputs(good: bytes) -> dict[str, tuple[bytes, str]]:
    """name -> (data, regex the JPEGError message must match)."""
    from PIL import Image

    png = io.BytesIO()
    Image.new("RGB", (8, 8)).save(png, format="PNG")
    start = sos_data_start(good)
    return {
        "truncated": (good[: len(good) // 2], "Premature end of JPEG file"),
        "corrupt_entropy": (with_scan_garbage(good), "Corrupt JPEG data"),
        "cut_after_sos": (good[: start + 8], "Premature end of JPEG file"),
        "header_only": (good[: start - 14], "Premature end|no image"),
        "png": (png.getvalue(), "Not a JPEG file"),
        "empty": (b"", "empty input"),
        "huge_claim": (with_size(good, 65535, 65535), "Maximum supported image dimension|exceeds the limit"),
        "zero_qtable": (with_zero_qstep(good), "zero step"),
        "twelve_bit": (with_precision(good, 12), "Unsupported JPEG data precision 12"),
    }


def test_bad_inputs_raise_jpeg_error_naming_the_source(good_jpeg, tmp_path):
    for name, (data, pattern) in bad_inputs(good_jpeg).items():
        path = tmp_path / f"{name}.jpg"
        path.write_bytes(data)
        with pytest.raises(dctnet.JPEGError, match=pattern) as e:
            dctnet.read_dct(path)
        assert e.value.source == str(path) and str(path) in str(e.value), name
        assert isinstance(e.value, ValueError)
        with pytest.raises(dctnet.JPEGError, match=pattern):
            dctnet.read_dct(data)


def test_pixel_limit_applies_before_decoding(good_jpeg):
    big = with_size(good_jpeg, 20000, 20000)  # 400 Mpx claimed; the data would not even match
    with pytest.raises(dctnet.JPEGError, match="400000000 pixels exceeds the limit of 100000000"):
        dctnet.read_dct(big)
    with pytest.raises(dctnet.JPEGError, match="exceeds the limit of 1000"):
        dctnet.read_dct(good_jpeg, max_pixels=1000)


def test_lenient_mode_returns_decoded_blocks_with_a_count(good_jpeg):
    full = dctnet.read_dct(good_jpeg)
    cut = good_jpeg[: int(len(good_jpeg) * 0.6)]
    with pytest.warns(dctnet.JPEGWarning, match=r"(\d+) of (\d+) blocks are missing") as rec:
        img = dctnet.read_dct(cut, strict=False)
    message = str(rec[0].message)
    total = sum(p.shape[0] * p.shape[1] for p in full.planes)
    assert f"of {total} blocks" in message
    assert 0 < img.missing_blocks < total
    # Blocks before the damaged iMCU row are exact, blocks after it are zero, and the count is
    # exact at iMCU-row granularity: every differing block is counted, and at most one iMCU
    # row (2 block rows of Y, 1 of each chroma plane for 4:2:0) is counted without differing.
    differing = 0
    for c, (a, b) in enumerate(zip(full.planes, img.planes)):
        rows = np.flatnonzero(np.any(a != b, axis=(1, 2)))
        v = full.sampling[c][1]
        first_row = rows[0] - rows[0] % v
        assert np.array_equal(a[:first_row], b[:first_row])
        assert not b[first_row + v:].any()
        differing += int(np.any(a != b, axis=2).sum())
    y_w, c_w = full.planes[0].shape[1], full.planes[1].shape[1]
    assert differing <= img.missing_blocks <= differing + 2 * y_w + 2 * c_w


def test_lenient_mode_still_rejects_non_jpeg():
    with pytest.raises(dctnet.JPEGError, match="Not a JPEG"):
        dctnet.read_dct(b"\x89PNG\r\n\x1a\n" + b"\0" * 100, strict=False)


def test_error_is_picklable():
    import pickle

    e = pickle.loads(pickle.dumps(dctnet.JPEGError("a.jpg", "bad")))
    assert (e.source, e.reason, str(e)) == ("a.jpg", "bad", "a.jpg: bad")


# --- Quality ---------------------------------------------------------------------------------

@pytest.mark.parametrize("quality", [100, 95, 90, 75, 50, 31, 10, 3])
def test_estimate_quality_inverts_cjpeg(tmp_path, photos, quality):
    ppm = tmp_path / "src.ppm"
    ppm.write_bytes(run_tool("djpeg", "-ppm", str(photos[2])))
    out = tmp_path / "q.jpg"
    run_tool("cjpeg", "-quality", str(quality), "-outfile", str(out), str(ppm))
    img = dctnet.read_header(out)
    assert img.quality == float(quality)
    # cjpeg keeps 16-bit steps (no -baseline) at low qualities.
    assert any(np.array_equal(img.qtables[0], ijg_qtables(quality, baseline=b)[0]) for b in (True, False))


def test_estimate_quality_fractional_and_custom():
    # Tables scaled by a factor between two integer qualities: a fractional estimate.
    scale = 37  # between q=81 (38) and q=82 (36)
    luma = np.clip((ijg_qtables(50)[0].astype(int) * scale + 50) // 100, 1, 255)
    q = dctnet.estimate_quality(np.stack([luma]))
    assert q is not None and 81 < q < 82
    # Flat tables are not IJG-scaled.
    assert dctnet.estimate_quality(np.full((3, 64), 7)) is None
    rng = np.random.default_rng(0)
    assert dctnet.estimate_quality(rng.integers(1, 100, (2, 64))) is None


def test_read_header_matches_read_dct(variants):
    for name in ("baseline_420", "progressive_444", "gray", "cmyk"):
        header = dctnet.read_header(variants[name])
        img = dctnet.read_dct(variants[name])
        assert header.block_shapes == img.block_shapes
        assert np.array_equal(header.qtables, img.qtables)
        assert (header.width, header.height, header.sampling, header.colorspace, header.progressive) == (
            img.width, img.height, img.sampling, img.colorspace, img.progressive)


# --- dctnet inspect -------------------------------------------------------------------------

def test_inspect_cli(variants, tmp_path):
    (tmp_path / "bad.jpg").write_bytes(b"garbage")
    cmd = [sys.executable, "-m", "dctnet", "inspect", "--json", str(variants["progressive_444"]),
           str(variants["arithmetic"]), str(tmp_path / "bad.jpg")]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 1
    lines = [json.loads(line) for line in res.stdout.splitlines()]
    assert lines[0]["coding"] == "progressive" and lines[0]["subsampling"] == "4:4:4"
    assert lines[0]["quality"] == 75
    assert lines[1]["coding"] == "baseline+arithmetic" and lines[1]["quality"] == 90
    assert "bad.jpg" in res.stderr and "Not a JPEG file" in res.stderr
    text = subprocess.run([sys.executable, "-m", "dctnet", "inspect", "--tables", str(variants["restart_blocks"])],
                          capture_output=True, text=True, check=True).stdout
    assert "restart=5" in text and "4:2:0" in text and "quality=90" in text
    assert "component 0 quantisation table" in text


def test_recycled_buffers_never_leak_an_earlier_images_coefficients(tmp_path):
    """Output buffers are recycled from a pool (and libjpeg writes only nonzero coefficients):
    a flat image read right after a busy one of the same size must still have all-zero AC
    coefficients, a truncated one zero blocks where its data ends, on the plain read and on the
    resampling reader's sink alike."""
    from dctnet.imaging import encode_jpeg

    rng = np.random.default_rng(7)
    busy = encode_jpeg(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8), 95, subsampling="444")
    flat = encode_jpeg(np.full((96, 128, 3), 128, np.uint8), 95, subsampling="444")
    other = encode_jpeg(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8), 95, subsampling="444")
    cut = other[: len(other) // 2]
    (tmp_path / "cut.jpg").write_bytes(cut)
    for _ in range(3):
        first = dctnet.read_dct(busy)
        assert all((p[..., 1:] != 0).any() for p in first.planes)
        del first                                  # its buffer goes back to the pool
        img = dctnet.read_dct(flat)
        assert all((p[..., 1:] == 0).all() for p in img.planes)
        del img
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            partial = dctnet.read_dct(cut, strict=False)
        # what libjpeg itself gives for the same truncated file (its decoder leaves the
        # blocks after the end of the data untouched: zero)
        ref, _ = reference_planes(tmp_path / "cut.jpg")
        for ours, theirs in zip(partial.planes, ref):
            assert np.array_equal(ours, theirs)
        assert (partial.planes[0][-1] == 0).all()
        del partial
    layout = dctnet.DCTLayout("upsampling", 16)
    alone = dctnet.read_to_tensor([flat], layout, size=64, resize=96, threads=1)
    after = dctnet.read_to_tensor([busy, flat, busy, flat], layout, size=64, resize=96, threads=1)
    assert torch_equal(after[1], alone[0]) and torch_equal(after[3], alone[0])


def torch_equal(a, b) -> bool:
    return bool((a == b).all())
