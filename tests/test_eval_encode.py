"""Re-encoded versions: libjpeg-turbo at the asked quality, 4:2:0, standard tables."""

from __future__ import annotations

import numpy as np
import pytest

import dctnet
from jpeg_fixtures import sample_photos
from dctnet.codec import ijg_qtables
from dctnet.data.encode import DEFAULT_QFS, Setting, encode_setting, make_settings, parse_setting, reference_pixels
from dctnet.imaging import decode_rgb
from dctnet.evaluate.metrics import psnr


@pytest.fixture(scope="module")
def original() -> bytes:
    return sample_photos()[0].read_bytes()


@pytest.mark.parametrize("qf", DEFAULT_QFS)
def test_reencoding_has_the_standard_tables_at_the_quality(original, qf):
    data = encode_setting(original, Setting(qf))
    img = dctnet.read_dct(data)
    src = dctnet.read_header(original)
    assert (img.width, img.height) == (src.width, src.height)
    assert img.subsampling == "4:2:0" and img.num_components == 3
    ref = ijg_qtables(qf)
    assert np.array_equal(img.qtables[0], ref[0])
    assert np.array_equal(img.qtables[1], ref[1]) and np.array_equal(img.qtables[2], ref[1])
    assert dctnet.estimate_quality(img.qtables) == qf


def test_gray_and_downscaled_versions(original):
    rgb = decode_rgb(original)
    h, w = rgb.shape[:2]
    gray = dctnet.read_dct(encode_setting(original, Setting(50, gray=True)))
    assert gray.num_components == 1 and np.array_equal(gray.qtables[0], ijg_qtables(50)[0])
    for f in (2, 4, 8):
        small = dctnet.read_dct(encode_setting(original, Setting(70, downscale=f)))
        assert (small.width, small.height) == (-(-w // f), -(-h // f))
        # Box filter: a full cell of the reference is the rounded mean of the original's cell.
        ref = reference_pixels(rgb, Setting(70, downscale=f))
        cell = rgb[:f, :f].reshape(-1, 3).astype(np.float64).mean(axis=0)
        assert np.all(np.abs(ref[0, 0].astype(np.float64) - cell) <= 0.5 + 1e-9)
    # The versions decode close to their references, and quality falls with QF.
    errs = [psnr(reference_pixels(rgb, Setting(q)), decode_rgb(encode_setting(original, Setting(q))))
            for q in (100, 50, 10)]
    assert errs[0] > 38 and errs[0] > errs[1] > errs[2] > 20


def test_original_is_passed_through_and_settings_round_trip(original):
    assert encode_setting(original, Setting()) == original
    settings = make_settings((10, 90, 90), gray=True, downscales=[4, 2])
    names = [s.name for s in settings]
    assert names[:3] == ["original", "qf90", "qf10"]
    assert "gray-down4-qf10" in names and "down2-qf90" in names and len(names) == 1 + 2 * 3 * 2
    assert all(parse_setting(n) == s for n, s in zip(names, settings))
    for bad in (lambda: Setting(0), lambda: Setting(None, gray=True), lambda: Setting(50, downscale=3),
                lambda: parse_setting("q50")):
        with pytest.raises(ValueError):
            bad()


def test_bad_original_names_the_file():
    with pytest.raises(dctnet.JPEGError, match="broken.jpg"):
        encode_setting(b"\xff\xd8\xff\xe0garbage", Setting(50), name="broken.jpg")


@pytest.mark.parametrize("index", [0, 3, 7])
def test_reencoding_is_byte_identical_to_cjpeg(photos, tmp_path, index):
    """Faithful settings: the accurate forward DCT, standard tables scaled by QF, 4:2:0,
    standard Huffman tables, baseline: cjpeg's file from the same pixels, at every QF."""
    from dctnet.data.encode import DEFAULT_QFS, Setting, encode_setting
    from jpeg_fixtures import run_tool, write_ppm

    original = photos[index].read_bytes()
    pixels = decode_rgb(original)
    ppm = write_ppm(tmp_path / "src.ppm", pixels)
    for qf in DEFAULT_QFS:
        ours = encode_setting(original, Setting(qf), original_rgb=pixels)
        theirs = run_tool("cjpeg", "-quality", str(qf), "-sample", "2x2", "-dct", "int", "-baseline", str(ppm))
        assert ours == theirs, qf


def test_results_of_another_encoder_are_refused(tmp_path):
    from dctnet.evaluate.store import ResultStore, StaleResultsError
    from dctnet.imaging import ENCODER

    with ResultStore(tmp_path / "r.sqlite") as store:   # a 0.1 database: versions, no encoder recorded
        store.add_versions([("a.jpg", "qf50", 10, 8, 8, 30.0, 0.9, None)])
        store.commit()
        with pytest.raises(StaleResultsError, match="unrecorded encoder settings"):
            store.register_encoder(ENCODER)
    with ResultStore(tmp_path / "new.sqlite") as store:
        store.register_encoder(ENCODER)
        store.register_encoder(ENCODER)                  # the same settings: fine
        with pytest.raises(StaleResultsError, match="other encoder settings"):
            store.register_encoder({**ENCODER, "dct": "fast"})


@pytest.mark.parametrize("index", [1, 5])
def test_reencoding_matches_an_independent_pillow_pipeline(photos, index):
    """The issue's independent pipeline: decode with Pillow, re-encode with Pillow at the same QF
    (4:2:0). Same quantised coefficients and tables as dctnet's versions at every QF (so the
    per-QF accuracy table is the same), sizes within 5% (headers may differ)."""
    import io

    from PIL import Image

    from dctnet.data.encode import DEFAULT_QFS, Setting, encode_setting

    original = photos[index].read_bytes()
    pixels = Image.open(io.BytesIO(original)).convert("RGB")
    for qf in DEFAULT_QFS:
        buf = io.BytesIO()
        pixels.save(buf, "JPEG", quality=qf, subsampling=2)
        theirs, ours_bytes = buf.getvalue(), encode_setting(original, Setting(qf))
        ours, ref = dctnet.read_dct(ours_bytes), dctnet.read_dct(theirs)
        assert np.array_equal(ours.qtables, ref.qtables), qf
        assert all(np.array_equal(a, b) for a, b in zip(ours.planes, ref.planes)), qf
        assert abs(len(ours_bytes) - len(theirs)) <= 0.05 * len(theirs), (qf, len(ours_bytes), len(theirs))
