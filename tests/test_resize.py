"""DCT-domain resizing (dctnet.ops.resize) against independent references:

* the resampling matrix against Pillow's own ``BILINEAR`` resize of float images;
* the coefficient-domain operator against a float64 pipeline through pixels
  (dequantise -> per-block inverse DCT -> pixel resize with the same filter -> crop -> per-block
  DCT), on down- and upscaling, odd sizes, windows off the block grid, flips;
* the banded numba kernel against the dense NumPy map.
"""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dctnet.ops.dct_domain import DCT8
from dctnet.ops.resize import _block_dct, axis_operator, bilinear_weights, resize_geometry, resize_plane


def _pillow(img: np.ndarray, new_w: int, new_h: int) -> np.ndarray:
    return np.asarray(Image.fromarray(img.astype(np.float32), mode="F").resize((new_w, new_h), Image.BILINEAR),
                      dtype=np.float64)


@pytest.mark.parametrize("w, h, nw, nh", [(500, 375, 341, 256), (375, 500, 256, 341), (100, 80, 256, 205),
                                          (17, 9, 30, 16), (225, 223, 258, 256), (1, 1, 8, 8), (64, 64, 64, 64),
                                          (640, 427, 96, 64)])
def test_bilinear_weights_are_pillows(w, h, nw, nh):
    img = np.random.default_rng(w * h).random((h, w)) * 255
    got = bilinear_weights(h, nh, 0, nh) @ img @ bilinear_weights(w, nw, 0, nw).T
    ref = _pillow(img, nw, nh)
    assert np.abs(got - ref).max() <= 2e-5 * 255  # Pillow works in float32


def test_resize_geometry_is_the_rgb_pipelines():
    from dctnet.imaging import center_crop, resize_shorter

    for w, h in [(500, 375), (375, 500), (225, 223), (100, 80), (1000, 17)]:
        img = np.random.default_rng(w).integers(0, 255, (h, w, 3), dtype=np.uint8)
        new_w, new_h, left, top = resize_geometry(w, h, 256, 224)
        resized = resize_shorter(img, 256)
        assert resized.shape[:2] == (new_h, new_w)
        if new_w >= 224 and new_h >= 224:
            assert np.array_equal(center_crop(resized, 224), resized[top:top + 224, left:left + 224])


def _pixels(coefs: np.ndarray, qstep: np.ndarray) -> np.ndarray:
    """float64 level-shifted pixels of a plane (independent of dctnet's helpers)."""
    hb, wb = coefs.shape[:2]
    x = coefs.astype(np.float64).reshape(hb, wb, 8, 8) * qstep.reshape(8, 8)
    return np.einsum("kv,hwku,uj->hvwj", DCT8, x, DCT8).reshape(8 * hb, 8 * wb)


def _blocks(pixels: np.ndarray) -> np.ndarray:
    h, w = pixels.shape
    return np.einsum("kv,hvwj,uj->hwku", DCT8, pixels.reshape(h // 8, 8, w // 8, 8), DCT8).reshape(h // 8, w // 8, 64)


def _reference(coefs, qstep, length, total, start, out_blocks, flip=(False, False)):
    """Through pixels: the plane's real ``length = (h, w)`` pixels resized to ``total`` (h', w')
    with Pillow's filter, the window at ``start`` of ``8 * out_blocks`` pixels, then the DCT."""
    px = _pixels(coefs, qstep)[:length[0], :length[1]]
    rv = bilinear_weights(length[0], 1, start[0], 8 * out_blocks[0], scale=length[0] / total[0], flip=flip[0])
    rh = bilinear_weights(length[1], 1, start[1], 8 * out_blocks[1], scale=length[1] / total[1], flip=flip[1])
    return _blocks(rv @ px @ rh.T)


CASES = [
    # (h, w) pixels, blocks, resized (h', w'), window start, output blocks, flips
    ((375, 500), (47, 63), (256, 341), (16, 58), (28, 28), (False, False)),   # a typical photo, down
    ((375, 500), (47, 63), (256, 341), (16, 58), (28, 28), (False, True)),    # flipped
    ((223, 225), (28, 29), (256, 258), (16, 17), (28, 28), (False, False)),   # odd size, up, off-grid
    ((9, 17), (2, 3), (256, 483), (16, 129), (28, 28), (False, True)),        # tiny, far up
    ((1, 1), (1, 1), (256, 256), (16, 16), (28, 28), (False, False)),         # one pixel
    ((188, 250), (24, 32), (128.0, 170.5), (8.0, 29.0), (14, 14), (True, False)),  # chroma at half scale
    ((600, 800), (75, 100), (96, 128), (-16, 0), (14, 16), (False, False)),   # window past the image
]


@pytest.mark.parametrize("case", CASES)
def test_operator_equals_the_pixel_pipeline(case):
    (h, w), (hb, wb), total, start, out_blocks, flip = case
    rng = np.random.default_rng(h * w)
    coefs = (rng.normal(0, 1, (hb, wb, 64)) * np.linspace(40, 2, 64)).astype(np.int16)
    qstep = rng.integers(1, 20, 64).astype(np.uint16)
    rows = axis_operator(h, hb, total[0], start[0], out_blocks[0], flip[0])
    cols = axis_operator(w, wb, total[1], start[1], out_blocks[1], flip[1])
    ref = _reference(coefs, qstep, (h, w), total, start, out_blocks, flip)
    got = resize_plane(coefs, qstep, rows, cols)
    assert got.shape == ref.shape == (out_blocks[0], out_blocks[1], 64)
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()


@pytest.mark.parametrize("flip", [False, True])
@pytest.mark.parametrize("in_len,in_blocks,total,start,out_blocks", [
    (500, 63, 341.0, 58.0, 28),      # downscale, centre crop
    (375, 47, 256.0, 16.0, 28),
    (250, 32, 170.5, 29.0, 14),      # chroma grid: fractional size
    (17, 3, 256.0, 16.0, 28),        # upscale
    (1, 1, 224.0, 0.0, 28),          # a single sample
    (225, 29, 223.0, -3.0, 28),      # window starts before the image
    (100, 13, 300.0, 37.5, 28),
    (9, 2, 5.0, 4.0, 1),             # window past the end: edge replication
    (4000, 500, 341.0, 58.0, 28),    # a large photo: wide filter support
])
def test_operator_equals_the_dense_product(in_len, in_blocks, total, start, out_blocks, flip):
    """The banded construction against ``C_out · R · C_inᵀ`` computed densely, and its block
    ranges against the input blocks where ``R`` is nonzero."""
    op = axis_operator(in_len, in_blocks, total, start, out_blocks, flip)
    r = np.zeros((8 * out_blocks, 8 * in_blocks))
    r[:, :in_len] = bilinear_weights(in_len, 1, start, 8 * out_blocks, scale=in_len / total, flip=flip)
    dense = _block_dct(out_blocks) @ r @ _block_dct(in_blocks).T
    used = np.abs(r).reshape(out_blocks, 8, in_blocks, 8).max(axis=(1, 3)) > 0
    assert (op.lo == np.argmax(used, axis=1)).all()
    assert (op.hi == in_blocks - np.argmax(used[:, ::-1], axis=1)).all()
    assert op.matrix.shape == dense.shape
    assert np.abs(op.matrix - dense).max() <= 1e-6
    # the horizontal pass's copy and the sink's addresses describe the same arrays
    assert op.packed_t.flags.c_contiguous and np.array_equal(op.packed_t, op.packed.transpose(0, 2, 1))
    assert op.sink_fields == (op.packed.ctypes.data, op.lo.ctypes.data, op.hi.ctypes.data, op.packed_t.ctypes.data,
                              out_blocks, op.packed.shape[2])


def test_uncached_operator_costs_no_dense_product():
    """Planning works on the output, not on the axis: a 200,000-sample axis (a dense
    ``C_out · R · C_inᵀ`` over it would need 320 GB) plans at once, and each output block's
    band spans only what its 8 pixels' filters cover (8 + 2 output pixels' worth of input)."""
    axis_operator.cache_clear()
    op = axis_operator(200_000, 25_000, 341.0, 58.0, 28)
    scale = 200_000 / 341
    assert op.packed.shape[0] == 28 and ((op.hi - op.lo) <= (8 + 2) * scale / 8 + 2).all()
    # a constant image stays constant: output DC = sum of the input DCs' weights times the input DC
    assert np.allclose(op.packed[:, 0, 0::8].sum(axis=1), 1.0, atol=1e-4)


def test_operator_is_banded():
    op = axis_operator(500, 63, 341, 58, 28)
    m = op.matrix.reshape(28, 8, 63, 8)
    for j in range(28):
        outside = np.concatenate([m[j, :, :op.lo[j]].ravel(), m[j, :, op.hi[j]:].ravel()])
        assert not outside.any()
        assert op.hi[j] - op.lo[j] <= 4   # a 1.46x downscale touches at most 4 input blocks


@pytest.mark.parametrize("name", ["baseline_420", "baseline_444", "baseline_422", "baseline_440", "baseline_411",
                                  "gray", "odd225x223_baseline_420", "tiny17x9_baseline_444", "tiny17x9_gray"])
@pytest.mark.parametrize("kind", ["upsampling", "late_concat", "y_only"])
def test_resize_to_tensor_equals_the_dense_map_per_plane(variants, name, kind):
    """The banded numba kernel (bands, normalisation, chroma grid, upsampling, flip) against the
    dense operator applied plane by plane and gathered by hand."""
    import dctnet
    from dctnet.ops import DCTLayout
    from dctnet.ops.resize import _plane_samples, resize_to_tensor

    img = dctnet.read_dct(str(variants[name]))
    bands = ((0, 1, 8, 9, 2, 63), (0, 1, 8), (0, 16, 9)) if kind != "y_only" else ((0, 1, 8, 9, 2, 63),)
    n = sum(len(b) for b in bands)
    rng = np.random.default_rng(0)
    layout = DCTLayout(kind, bands, mean=tuple(rng.normal(0, 5, n)), std=tuple(rng.uniform(1, 9, n)))
    size, resize = 64, 72
    for flip in (False, True):
        got = resize_to_tensor([img], layout, size=size, resize=resize, flip=np.array([flip]))
        got = got if isinstance(got, tuple) else (got,)
        new_w, new_h, left, top = resize_geometry(img.width, img.height, resize, size)
        channel = 0
        for c, comp_bands in enumerate(layout.band_indices()):
            if c == 0:
                ro = axis_operator(img.height if img.num_components == 1 else _plane_samples(img, 0)[0],
                                   img.planes[0].shape[0], float(new_h), float(top), size // 8)
                co = axis_operator(_plane_samples(img, 0)[1], img.planes[0].shape[1], float(new_w), float(left),
                                   size // 8, flip)
            else:
                rows, cols = _plane_samples(img, c) if c < img.num_components else (1, 1)
                ro = axis_operator(rows, max(1, -(-rows // 8)), new_h / 2, top / 2, size // 16)
                co = axis_operator(cols, max(1, -(-cols // 8)), new_w / 2, left / 2, size // 16, flip)
            for j, k in enumerate(comp_bands):
                ch = channel + j
                if c < img.num_components:
                    plane = resize_plane(img.planes[c], img.qtables[c], ro, co)[..., k].astype(np.float64)
                else:
                    plane = np.zeros((size // 16, size // 16))
                want = (plane - layout.mean[ch]) / layout.std[ch]
                if kind == "upsampling" and c > 0:
                    want = want.repeat(2, 0).repeat(2, 1)
                tensor, local = (got[1], ch - len(layout.band_indices()[0])) if kind == "late_concat" and c > 0 \
                    else (got[0], ch)
                have = tensor[0, local].numpy().astype(np.float64)
                scale = max(1.0, np.abs(want).max())
                assert np.abs(have - want).max() <= 1e-4 * scale, (name, kind, flip, c, k)
            channel += len(comp_bands)


def test_resize_to_tensor_matches_the_rgb_pipeline_on_photos():
    """The real thing: libjpeg-turbo's decode + Pillow's resize + crop, then a float64 DCT of the
    Y plane, against the DCT path's Y band 0 and 1 (within the decoder's and Pillow's 8-bit
    rounding)."""
    import dctnet
    from dctnet.imaging import center_crop, decode_rgb, resize_shorter
    from dctnet.ops import DCTLayout
    from dctnet.ops.resize import resize_to_tensor
    from jpeg_fixtures import sample_photos

    layout = DCTLayout("y_only", (tuple(range(64)),))
    for photo in sample_photos()[:6]:
        img = dctnet.read_dct(str(photo))
        got = resize_to_tensor([img], layout, size=224, resize=256)[0].numpy()          # (64, 28, 28)
        rgb = center_crop(resize_shorter(decode_rgb(str(photo)), 256), 224).astype(np.float64)
        y = rgb @ np.array([0.299, 0.587, 0.114]) - 128.0
        want = _blocks(y).transpose(2, 0, 1)                                                  # (64, 28, 28)
        err = np.abs(got - want)
        assert err[0].mean() < 8.0 and np.median(err[0]) < 8.0   # DC: 8x the mean level; rounding ~1 level
        assert np.corrcoef(got[1:10].ravel(), want[1:10].ravel())[0, 1] > 0.995


def test_read_to_tensor_with_resize_equals_to_tensor_and_names_bad_files(variants):
    import torch

    import dctnet
    from dctnet.ops import DCTLayout, read_to_tensor, to_tensor

    names = ["baseline_444", "baseline_420", "tiny17x9_baseline_422", "gray", "cmyk"]
    srcs = [str(variants[n]) for n in names] + [b"junk"]
    layout = DCTLayout("upsampling", 10)
    x, errors = read_to_tensor(srcs, layout, size=96, resize=112, on_error="return", threads=2,
                               flip="random", generator=torch.Generator().manual_seed(3))
    assert [e is None for e in errors] == [True, True, True, True, False, False]
    assert "cmyk.jpg" in str(errors[4]) and isinstance(errors[4], dctnet.JPEGError)
    assert errors[5].source == "<bytes #5>" and not x[4:].any()
    images = dctnet.read_dct_batch(srcs[:4])
    ref = to_tensor(images, layout, size=96, resize=112, crop="center", flip="random",
                    generator=torch.Generator().manual_seed(3))
    assert torch.equal(x[:4], ref)
    with pytest.raises(dctnet.JPEGError, match="cmyk"):
        read_to_tensor(srcs[:5], layout, size=96, resize=112)
    with pytest.raises(ValueError, match="on the CPU with the numba backend or on CUDA with Triton"):
        to_tensor(images, layout, size=96, resize=112, backend="torch")


def test_pretrained_rgb_network_fed_through_the_dct_resize_agrees_with_the_rgb_path():
    """The fp32 EfficientNet-Lite0 (ONNX) on the 100 shared originals: RGB preprocessing (decode,
    resize 256, crop 224) against the DCT path (read_to_tensor with resize=256, n = 64, then the
    exact decode path of the conversion in float). 97/100 top-1 agree here; the test holds 95."""
    import dctnet
    from dctnet.imaging import RGBPreprocess
    from dctnet.models.decode_path import DCTFrontEnd, converted_layout
    from dctnet.models.onnx import OnnxModel
    from dctnet.ops import read_to_tensor
    from jpeg_fixtures import SHARED, sample_photos

    import torch

    files = [str(p) for p in sample_photos()]
    onnx = OnnxModel(SHARED / "models" / "efficientnet-lite0-fp32.onnx", threads=2)
    rgb, errors = RGBPreprocess().batch(files, threads=2)
    assert not any(errors)
    layout = converted_layout(64)
    y, cbcr = read_to_tensor(files, layout, size=224, resize=256, threads=2)
    with torch.no_grad():
        dct = DCTFrontEnd(layout, clamp="clamp").eval()(y, cbcr).numpy()
    assert np.abs(dct - rgb).mean() < 0.05          # normalised units: about 3 levels of 255
    agree = np.mean([onnx(rgb[i:i + 25]).argmax(1) == onnx(dct[i:i + 25]).argmax(1) for i in range(0, 100, 25)])
    assert agree >= 0.95, agree


# --- the reader's sink and the training crops --------------------------------------------------

SINK_FILES = ["baseline_444", "baseline_420", "baseline_422", "baseline_440", "baseline_411", "progressive_444",
              "gray", "odd225x223_baseline_444", "odd225x223_baseline_420", "tiny17x9_baseline_422",
              "tiny17x9_gray", "restart_rows", "arithmetic", "jpegtran-transpose"]


def _sink_layouts():
    from dctnet.ops import DCTLayout

    rng = np.random.default_rng(4)
    lists = ((0, 1, 8, 9, 2, 63), (0, 1, 8), (0, 16, 9))
    return {
        "upsampling16": DCTLayout("upsampling", 16, mean=tuple(rng.normal(0, 5, 48)), std=tuple(rng.uniform(1, 9, 48))),
        "late_concat_lists": DCTLayout("late_concat", lists, mean=tuple(rng.normal(0, 5, 12)),
                                       std=tuple(rng.uniform(1, 9, 12))),
        "y_only": DCTLayout("y_only", (tuple(range(0, 64, 3)),)),
        "upsampling64_raw": DCTLayout("upsampling", 64, dequantize=False),
    }


@pytest.mark.parametrize("layout_name", ["upsampling16", "late_concat_lists", "y_only", "upsampling64_raw"])
@pytest.mark.parametrize("crop, resize", [("center", 112), ("random", 128), ("random-resized", None)])
def test_read_to_tensor_resamples_every_sampling_on_the_reader_threads(variants, layout_name, crop, resize):
    """The sink (resampling on the reader's threads, planned from each file's header) writes
    what the Python route writes, bit for bit, for every sampling, odd sizes, crops and flips;
    and it really takes every image (the native read hands none back)."""
    import torch

    import dctnet
    from dctnet.codec import read_batch_with_sink
    from dctnet.ops import read_to_tensor, to_tensor
    from dctnet.ops.resize import SinkPlan, crop_draws, image_window, resize_sink_address

    layout = _sink_layouts()[layout_name]
    srcs = [str(variants[n]) for n in SINK_FILES]
    for threads in (1, 2):
        got = read_to_tensor(srcs, layout, size=96, resize=resize, crop=crop, flip="random", threads=threads,
                             generator=torch.Generator().manual_seed(5))
        ref = to_tensor(dctnet.read_dct_batch(srcs), layout, size=96, resize=resize, crop=crop, flip="random",
                        generator=torch.Generator().manual_seed(5))
        for a, b in zip(got if isinstance(got, tuple) else (got,), ref if isinstance(ref, tuple) else (ref,)):
            assert torch.equal(a, b)
    # at the native interface: every item consumed by the sink
    outs = tuple(torch.zeros(s) for s in dctnet.ops.output_shapes(layout, len(srcs), 12, 12))
    plan = SinkPlan(layout, 96, outs, len(srcs))
    draws = crop_draws(crop, len(srcs), torch.Generator().manual_seed(1))
    for i, src in enumerate(srcs):
        header = dctnet.read_header(src)
        plan.add(i, header, image_window(header, layout, 96, resize, crop, draws[i]), False)
    results = read_batch_with_sink(srcs, resize_sink_address(), plan.context.ctypes.data, threads=2)
    assert results == [None] * len(srcs)


def test_read_to_tensor_resampling_hands_back_what_its_plan_does_not_fit(variants, monkeypatch):
    """A file whose header the plan was made from is not the file read (it changed in between):
    the sink hands it back and the Python route resamples the image actually read."""
    import torch

    import dctnet
    from dctnet import codec
    from dctnet.ops import DCTLayout, read_to_tensor, to_tensor

    srcs = [str(variants[n]) for n in ("baseline_444", "odd225x223_baseline_444", "gray")]
    real = codec.read_header
    swapped = {srcs[0]: srcs[1], srcs[1]: srcs[0], srcs[2]: srcs[0]}
    monkeypatch.setattr(codec, "read_header", lambda src, **kw: real(swapped[src], **kw))
    layout = DCTLayout("upsampling", 6)
    got = read_to_tensor(srcs, layout, size=64, resize=80, threads=2)
    ref = to_tensor(dctnet.read_dct_batch(srcs), layout, size=64, resize=80, crop="center")
    assert torch.equal(got, ref)


@pytest.mark.parametrize("w, h, seed", [(500, 375, 0), (375, 500, 1), (225, 223, 2), (40, 30, 3), (1000, 120, 4)])
def test_random_resized_window_is_pillows_box_resize(w, h, seed):
    """crop_window('random-resized') = torchvision's box (same generator draws), resized with
    Pillow's ``resize((size, size), BILINEAR, box=...)``: the weights against Pillow's own."""
    import torch

    from dctnet.ops import crop_window, random_resized_crop_box

    size = 64
    total_w, total_h, left, top = crop_window(w, h, size=size, resize=None, crop="random-resized",
                                              generator=torch.Generator().manual_seed(seed))
    y0, x0, bh, bw = random_resized_crop_box(h, w, torch.Generator().manual_seed(seed))
    assert (total_w, total_h) == pytest.approx((w * size / bw, h * size / bh))
    img = np.random.default_rng(seed).random((h, w)) * 255
    got = bilinear_weights(h, total_h, top, size) @ img @ bilinear_weights(w, total_w, left, size).T
    ref = np.asarray(Image.fromarray(img.astype(np.float32), mode="F").resize(
        (size, size), Image.BILINEAR, box=(x0, y0, x0 + bw, y0 + bh)), dtype=np.float64)
    assert np.abs(got - ref).max() <= 2e-5 * 255


def test_random_crop_of_the_resized_image_is_the_rgb_random_crop():
    from dctnet.ops import crop_window

    new_w, new_h, _, _ = resize_geometry(500, 375, 256, 224)
    assert crop_window(500, 375, size=224, resize=256, crop="random", draw=(0.0, 0.0))[2:] == (0.0, 0.0)
    assert crop_window(500, 375, size=224, resize=256, crop="random", draw=(0.999, 0.999))[2:] == \
        (float(new_w - 224), float(new_h - 224))
    for bad in [dict(crop="random-resized", resize=256), dict(crop="middle", resize=256), dict(crop="random", resize=None)]:
        with pytest.raises(ValueError):
            crop_window(500, 375, size=224, **bad)


def test_dct_training_batches_use_random_resized_crops(tmp_path):
    """DCTDataset's default training crop: RandomResizedCrop + flips resampled in the DCT domain,
    seeded per batch; images smaller than the crop are upscaled, not errors."""
    import torch

    from dctnet.data.datasets import open_dataset
    from dctnet.data.loaders import BatchRequest, DCTDataset
    from dctnet.ops import DCTLayout, to_tensor
    from jpeg_fixtures import read_pnm, run_tool, sample_photos, write_ppm

    rgb = read_pnm(run_tool("djpeg", "-ppm", str(sample_photos()[2])))
    for k, cls in enumerate(("a", "b")):
        (tmp_path / cls).mkdir()
        for j, crop in enumerate((rgb, rgb[:40, :60])):            # one photo, one smaller than the crop
            ppm = write_ppm(tmp_path / f"{cls}{j}.ppm", crop[:, ::k + 1])
            run_tool("cjpeg", "-quality", "90", "-sample", "1x1", "-outfile", str(tmp_path / cls / f"{j}.jpg"), str(ppm))
    ds = open_dataset(str(tmp_path))
    layout = DCTLayout("upsampling", 6)
    data = DCTDataset(ds, layout, 64, train=True, threads=2)
    req = BatchRequest(tuple(range(len(ds))), seed=3)
    x, y = data[req]
    assert x.shape == (4, 18, 8, 8) and torch.isfinite(x).all()
    again, _ = data[req]
    assert torch.equal(again, x)
    other, _ = data[BatchRequest(req.indices, seed=4)]
    assert not torch.equal(other, x)
    import dctnet

    g = torch.Generator().manual_seed(3)
    ref = to_tensor(dctnet.read_dct_batch(ds.paths), layout, size=64, crop="random-resized", flip="random", generator=g)
    assert torch.equal(x, ref)


def test_sink_rows_are_shared_by_same_sized_photos_and_keep_their_operators_alive(photos):
    """SinkPlan memoises a table row per (layout, size, geometry, window, flip): a photo of a
    size seen before gets the same row, the row keeps the operators it points to alive after
    axis_operator's cache forgets them, and the memo stays bounded."""
    import gc

    import torch

    import dctnet
    from dctnet import codec
    from dctnet.ops import resize as rz

    layout = dctnet.DCTLayout("upsampling", 16)
    data = [p.read_bytes() for p in photos[:6]]
    rz.clear_plan_caches()
    first = dctnet.read_to_tensor(data, layout, size=224, resize=256, threads=1)
    assert len(rz._PLAN_ROWS) >= 1
    outs = (torch.empty(2, 48, 28, 28),)
    header = codec.read_header(data[0])
    window = rz.image_window(header, layout, 224, 256, "center", (0.0, 0.0))
    plan = rz.SinkPlan(layout, 224, outs, 2)
    plan.add(0, header, window, False)
    plan.add(1, header, window, False)
    assert np.array_equal(plan.table[0], plan.table[1]) and plan.table[0, 0, rz.P_MODE] == rz.MODE_RESIZE
    fresh, _ = plan._rows(header, window, False)
    assert np.array_equal(fresh, plan.table[0])          # the memo gives what planning gives
    rz.axis_operator.cache_clear()
    gc.collect()
    again = dctnet.read_to_tensor(data, layout, size=224, resize=256, threads=1)
    assert torch.equal(first, again)                    # rows from the memo, operators still alive
    for k in range(rz._PLAN_ROWS_MAX + 10):             # distinct windows: the memo stays bounded
        plan.add(0, header, (window[0], window[1], window[2] + k, window[3]), False)
    assert len(rz._PLAN_ROWS) <= rz._PLAN_ROWS_MAX
    other = rz.SinkPlan(dctnet.DCTLayout("upsampling", 64), 224, (torch.empty(1, 192, 28, 28),), 1)
    other.add(0, header, window, False)                 # the same photo for another layout: its own row
    assert other.table[0, 0, rz.P_NB] == 64 and plan.table[0, 0, rz.P_NB] == 16
    rz.clear_plan_caches()
    assert not rz._PLAN_ROWS
    again_plan = rz.SinkPlan(layout, 224, outs, 2)      # numbers are never reused after a clear
    assert again_plan._memo not in (plan._memo, other._memo)
