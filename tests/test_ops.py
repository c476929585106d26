"""dctnet.ops: geometry (crop, flip, chroma alignment), to_tensor backends, compute_stats.

References: a float64 pixel-domain path written from the JPEG spec's DCT formula (T.81
A.3.3), libjpeg-turbo's own lossless transforms (jpegtran -flip / -crop), libjpeg's
4:2:0 encoder (cjpeg -sample 2x2) and plain NumPy formulas.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import dctnet
from dctnet.codec import DCTImage
from dctnet.ops import (BlockBatch, DCTLayout, align_blocks, blocks_to_tensor_torch, compute_stats, output_shapes,
                        to_tensor)

from jpeg_fixtures import in_place, read_pnm, run_tool, write_ppm

# --- float64 references written from the spec -------------------------------------------------

_X = np.arange(8)
# T.81 A.3.3: F(u) = C(u)/2 * sum_x f(x) cos((2x+1) u pi / 16), C(0) = 1/sqrt(2): 1-D factor of the 2-D FDCT.
_BASIS = np.array([[(np.sqrt(0.5) if u == 0 else 1.0) / 2 * np.cos((2 * x + 1) * u * np.pi / 16) for x in _X]
                   for u in _X])


def spec_idct(coefs: np.ndarray) -> np.ndarray:
    """(Hb, Wb, 64) natural-order coefficients -> (8Hb, 8Wb) pixels (float64)."""
    hb, wb = coefs.shape[:2]
    c = coefs.reshape(hb, wb, 8, 8).astype(np.float64)
    px = np.einsum("vy,hwvu,ux->hywx", _BASIS, c, _BASIS)
    return px.reshape(8 * hb, 8 * wb)


def spec_fdct(px: np.ndarray) -> np.ndarray:
    h, w = px.shape
    blocks = px.reshape(h // 8, 8, w // 8, 8)
    c = np.einsum("vy,hywx,ux->hwvu", _BASIS, blocks, _BASIS)
    return c.reshape(h // 8, w // 8, 64)


def pixel_resample(px: np.ndarray, axis: int, factor: int) -> np.ndarray:
    if factor == 1:
        return px
    if factor == 2:                                  # nearest neighbour
        return np.repeat(px, 2, axis=axis)
    moved = np.moveaxis(px, axis, 0)                 # box average of pairs
    out = 0.5 * (moved[0::2] + moved[1::2])
    return np.moveaxis(out, 0, axis)


def synthetic_image(rng, y_blocks, sampling, q=None, source="<synthetic>") -> DCTImage:
    hy, wy = y_blocks
    (h0, v0) = sampling[0]
    planes = [rng.integers(-60, 60, (hy, wy, 64)).astype(np.int16)]
    for h, v in sampling[1:]:
        planes.append(rng.integers(-60, 60, (-(-hy * v // v0), -(-wy * h // h0), 64)).astype(np.int16))
    qt = np.stack([rng.integers(1, 40, 64) for _ in planes]).astype(np.uint16) if q is None else q
    return DCTImage(planes=tuple(planes), qtables=qt, width=8 * wy, height=8 * hy, sampling=tuple(sampling),
                    colorspace="ycbcr" if len(planes) == 3 else "gray", source=source)


SAMPLINGS = {"4:4:4": (1, 1), "4:2:2": (2, 1), "4:4:0": (1, 2), "4:1:1": (4, 1), "4:1:0": (4, 2), "4:2:0": (2, 2)}


@pytest.mark.parametrize("name", list(SAMPLINGS))
@pytest.mark.parametrize("flip", [False, True])
def test_chroma_alignment_matches_pixel_domain(name, flip):
    """Every supported sampling lands on the 4:2:0 grid as the float64 pixel path says."""
    rng = np.random.default_rng(len(name) + 7 * flip)
    h, v = SAMPLINGS[name]
    img = synthetic_image(rng, (14, 20), [(h, v), (1, 1), (1, 1)])
    layout = DCTLayout("late_concat", 64)
    bb = align_blocks([img], layout, crop="center", size=(64, 96), flip=flip)
    assert bb.y.shape == (1, 8, 12, 64) and bb.cb.shape == (1, 4, 6, 64)
    top, left = 2 * 8 * ((14 - 8) // 2 // 2), 2 * 8 * ((20 - 12) // 2 // 2)   # Y pixels, 16-px steps
    for c, got in ((1, bb.cb), (2, bb.cr)):
        px = spec_idct(img.planes[c].astype(np.float64) * img.qtables[c])
        px = pixel_resample(px, 0, {1: -2, 2: 1, 4: 2}[v])   # to half the Y resolution
        px = pixel_resample(px, 1, {1: -2, 2: 1, 4: 2}[h])
        px = px[top // 2: top // 2 + 32, left // 2: left // 2 + 48]
        if flip:
            px = px[:, ::-1]
        ref = spec_fdct(px)
        out = got[0].double().numpy() * bb.qsteps[0, c].double().numpy()
        scale = np.abs(ref).max()
        assert np.abs(out - ref).max() <= 1e-3 * scale, name
    y_ref = img.planes[0][top // 8: top // 8 + 8, left // 8: left // 8 + 12]
    if flip:
        y_ref = y_ref[:, ::-1] * np.where(np.arange(64) % 2, -1, 1).astype(np.int16)
    assert bb.y.dtype == torch.int16 and np.array_equal(bb.y[0].numpy(), y_ref)
    assert (bb.cb.dtype == torch.int16) == (name == "4:2:0")


def test_flip_matches_pixel_domain():
    rng = np.random.default_rng(3)
    img = synthetic_image(rng, (4, 6), [(2, 2), (1, 1), (1, 1)])
    bb = align_blocks([img], DCTLayout("upsampling", 64), flip=True)
    for plane, got in ((img.planes[0], bb.y), (img.planes[1], bb.cb)):
        ref = spec_fdct(spec_idct(plane.astype(np.float64))[:, ::-1])
        assert np.abs(got[0].numpy() - ref).max() < 1e-9


# --- real files -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def files(tmp_path_factory, photos) -> dict[str, Path]:
    """Variants of two real photos: every sampling, gray, odd size, and lossless jpegtran transforms."""
    out = tmp_path_factory.mktemp("ops")
    made = {}
    rgb = read_pnm(run_tool("djpeg", "-ppm", str(photos[0])))
    for key, pixels in {"": rgb[:240, :320], "odd_": rgb[:223, :225]}.items():
        ppm = write_ppm(out / f"{key}src.ppm", pixels)
        for name, switches in {"420": ["-sample", "2x2"], "444": ["-sample", "1x1"], "422": ["-sample", "2x1"],
                               "440": ["-sample", "1x2"], "411": ["-sample", "4x1"], "gray": ["-grayscale"]}.items():
            path = out / f"{key}{name}.jpg"
            run_tool("cjpeg", "-quality", "100" if name in ("420", "444", "422", "440") else "85", *switches,
                     "-outfile", str(path), str(ppm))
            made[key + name] = path
    for op in (["-flip", "horizontal"], ["-crop", "160x96+80+64"]):
        path = out / f"jpegtran_{op[0][1:]}.jpg"
        run_tool("jpegtran", *op, "-outfile", str(path), str(made["420"]))
        made[path.stem] = path
    other = read_pnm(run_tool("djpeg", "-ppm", str(photos[1])))
    made["other420"] = out / "other420.jpg"
    run_tool("cjpeg", "-quality", "75", "-sample", "2x2", "-outfile", str(made["other420"]),
             str(write_ppm(out / "other.ppm", other[:200, :272])))
    return made


def test_flip_equals_jpegtran(files):
    """DCT-domain flip == libjpeg-turbo's lossless horizontal flip (whole MCUs: 320 = 20 x 16)."""
    layout = DCTLayout("late_concat", 64)
    ours = align_blocks([dctnet.read_dct(files["420"])], layout, flip=True)
    theirs = align_blocks([dctnet.read_dct(files["jpegtran_flip"])], layout)
    for a, b in zip((ours.y, ours.cb, ours.cr), (theirs.y, theirs.cb, theirs.cr)):
        assert a.dtype == torch.int16 and torch.equal(a, b)


def test_center_crop_equals_jpegtran(files):
    """Centre crop 160x96 of the 320x240 file starts at (x=80, y=64) px: jpegtran's lossless crop there."""
    layout = DCTLayout("upsampling", 64)
    ours = align_blocks([dctnet.read_dct(files["420"])], layout, crop="center", size=(96, 160))
    theirs = align_blocks([dctnet.read_dct(files["jpegtran_crop"])], layout)
    assert ours.y.shape == (1, 12, 20, 64)
    for a, b in zip((ours.y, ours.cb, ours.cr), (theirs.y, theirs.cb, theirs.cr)):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["444", "422", "440"])
def test_downsampled_chroma_lands_near_libjpeg_420(files, name):
    """A q100 4:4:4 / 4:2:2 / 4:4:0 file aligned in the DCT domain is close to cjpeg's own 4:2:0
    encoding of the same pixels (libjpeg rounds each pixel average to an integer and colour-
    converts per pixel, so not bit-equal): DC within half a grey level, all bands within 7% RMS."""
    layout = DCTLayout("late_concat", 64)
    ref = align_blocks([dctnet.read_dct(files["420"])], layout)
    got = align_blocks([dctnet.read_dct(files[name])], layout)
    assert got.cb.dtype == torch.float32 and got.cb.shape == ref.cb.shape == (1, 15, 20, 64)
    for c, a, r in ((1, got.cb, ref.cb), (2, got.cr, ref.cr)):
        a = a[0].double() * got.qsteps[0, c]
        r = r[0].double() * ref.qsteps[0, c]
        assert (a[..., 0] - r[..., 0]).abs().max() <= 4.0          # DC = 8 x mean level
        assert ((a - r).pow(2).mean() / r.pow(2).mean()).sqrt() < 0.07


@pytest.mark.parametrize("name", ["odd_444", "odd_422", "odd_440", "odd_411"])
def test_real_files_match_pixel_domain(files, name):
    """Real 225x223 files of every sampling: DCT-domain alignment == float64 pixel path."""
    img = dctnet.read_dct(files[name])
    bb = align_blocks([img], DCTLayout("late_concat", 64), flip=True)
    (hy, vy), (hc, vc) = img.sampling[0], img.sampling[1]
    factor = {1: -2, 2: 1, 4: 2}
    for c, got in ((1, bb.cb), (2, bb.cr)):
        px = spec_idct(img.planes[c].astype(np.float64) * img.qtables[c])
        px = pixel_resample(pixel_resample(px, 0, factor[vy // vc]), 1, factor[hy // hc])
        ref = spec_fdct(px[:112, :112][:, ::-1])
        out = got[0].double().numpy() * bb.qsteps[0, c].double().numpy()
        assert out.shape == ref.shape == (14, 14, 64)
        assert np.abs(out - ref).max() <= 1e-3 * np.abs(ref).max()


def test_odd_block_counts_geometry(files):
    """225x223 4:2:0: Y 29x28 blocks, chroma 15x14 -> the layout's grid is Y 28x28, chroma 14x14."""
    img = dctnet.read_dct(files["odd_420"])
    assert img.block_shapes == ((28, 29), (14, 15), (14, 15))
    bb = align_blocks([img], DCTLayout("upsampling", 64))
    assert bb.y.shape == (1, 28, 28, 64) and bb.cb.shape == (1, 14, 14, 64)
    assert np.array_equal(bb.y[0].numpy(), img.planes[0][:28, :28])
    assert np.array_equal(bb.cr[0].numpy(), img.planes[2][:14, :14])
    y_only = align_blocks([img], DCTLayout("y_only", 64))
    assert y_only.y.shape == (1, 28, 29, 64) and y_only.cb is None
    for name in ("odd_444", "odd_422", "odd_440", "odd_411", "odd_gray"):
        other = align_blocks([dctnet.read_dct(files[name])], DCTLayout("late_concat", 64))
        assert other.y.shape == (1, 28, 28, 64) and other.cb.shape == (1, 14, 14, 64), name


def test_gray_gets_zero_chroma_and_flag(files):
    layout = DCTLayout("upsampling", 16)
    imgs = [dctnet.read_dct(files["gray"]), dctnet.read_dct(files["420"])]
    bb = align_blocks(imgs, layout)
    assert bb.has_chroma.tolist() == [False, True]
    assert not bb.cb[0].any() and not bb.cr[0].any() and bb.cb[1].any()
    x = to_tensor(imgs, layout, backend="numba")
    assert not x[0, 16:].any() and x[1, 16:].any()


def test_mixed_geometry(files):
    imgs = [dctnet.read_dct(files["420"]), dctnet.read_dct(files["other420"]), dctnet.read_dct(files["odd_444"])]
    layout = DCTLayout("upsampling", 8)
    with pytest.raises(ValueError, match="different block geometry"):
        to_tensor(imgs, layout)
    x = to_tensor(imgs, layout, crop="center")              # the largest grid all cover
    assert x.shape == (3, 24, 2 * (200 // 16), 2 * (225 // 16))
    x = to_tensor(imgs, layout, crop="center", size=(112, 208))
    assert x.shape == (3, 24, 14, 26)
    with pytest.raises(ValueError, match="other420.jpg.*smaller than"):
        to_tensor(imgs, layout, crop="center", size=(224, 224))
    with pytest.raises(ValueError, match="multiples of 16"):
        to_tensor(imgs, layout, crop="center", size=120)
    # y_only crops in 8-pixel steps
    assert to_tensor(imgs, DCTLayout("y_only", 4), crop="center", size=(120, 8)).shape == (3, 4, 15, 1)


def test_random_crop_and_flip_are_reproducible(files):
    img = dctnet.read_dct(files["420"])                    # 40x30 Y blocks
    layout = DCTLayout("late_concat", 64)
    seen = set()
    for seed in range(12):
        g = torch.Generator().manual_seed(seed)
        bb = align_blocks([img] * 4, layout, crop="random", size=(128, 128), flip="random", generator=g)
        again = align_blocks([img] * 4, layout, crop="random", size=(128, 128), flip="random",
                             generator=torch.Generator().manual_seed(seed))
        assert torch.equal(bb.y, again.y)
        for i in range(4):
            # find where the crop came from: search the (possibly flipped) plane
            y = bb.y[i].numpy()
            for flipped in (False, True):
                src = img.planes[0][:, ::-1] * np.where(np.arange(64) % 2, -1, 1).astype(np.int16) \
                    if flipped else img.planes[0]
                hits = [(r, c) for r in range(0, 30 - 16 + 1) for c in range(0, 40 - 16 + 1)
                        if np.array_equal(src[r:r + 16, c:c + 16], y)]
                if hits:
                    r, c = hits[0]
                    assert r % 2 == 0 and c % 2 == 0          # 16-pixel steps
                    seen.add((r, c, flipped))
                    break
            else:
                raise AssertionError("random crop is not a block-aligned window of the image")
    assert len(seen) > 8 and {f for *_, f in seen} == {False, True}


# --- backends -----------------------------------------------------------------------------

LAYOUTS = [
    DCTLayout("upsampling", 64),
    DCTLayout("upsampling", 5),
    DCTLayout("late_concat", 13),
    DCTLayout("y_only", 16),
    # Xu et al. 2020 static selection: 24 channels
    DCTLayout("upsampling", ([0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27], [0, 1, 8, 9], [0, 1, 8, 9])),
]


def _as_tuple(x):
    return x if isinstance(x, tuple) else (x,)


@pytest.fixture(scope="module")
def mixed_batch(files):
    names = ["odd_420", "odd_444", "odd_422", "odd_440", "odd_411", "odd_gray", "other420", "420"]
    return [dctnet.read_dct(files[n]) for n in names]


@pytest.mark.parametrize("layout", LAYOUTS, ids=lambda l: f"{l.kind}-{l.num_channels}")
def test_numba_matches_torch_reference(mixed_batch, layout):
    flips = [i % 3 == 0 for i in range(len(mixed_batch))]
    stats = layout.with_stats(np.linspace(-5, 5, layout.num_channels), np.linspace(0.5, 40, layout.num_channels))
    for lay in (layout, stats):
        ref = _as_tuple(to_tensor(mixed_batch, lay, crop="center", size=(96, 208), flip=flips, backend="torch"))
        got = _as_tuple(to_tensor(mixed_batch, lay, crop="center", size=(96, 208), flip=flips, backend="numba"))
        for r, g in zip(ref, got):
            assert r.shape == g.shape and r.dtype == g.dtype == torch.float32
            torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-5 * float(r.abs().max()))


def test_integer_steps_are_bit_exact(mixed_batch):
    """Without dequantisation and normalisation, native-sampling images give the stored integers
    in every backend, bit for bit."""
    native = [img for img in mixed_batch if img.subsampling in ("4:2:0", "gray")]
    assert len(native) == 4
    layout = DCTLayout("late_concat", 21, dequantize=False)
    flips = [True, False, True, True]
    ref = to_tensor(native, layout, crop="center", size=(96, 192), flip=flips, backend="torch")
    got = to_tensor(native, layout, crop="center", size=(96, 192), flip=flips, backend="numba")
    for r, g in zip(ref, got):
        assert torch.equal(r, g) and torch.equal(r, r.round())


def test_to_tensor_values_by_hand(files):
    """One 4:2:0 image, written out with NumPy: band selection, dequantisation, upsampling, order."""
    img = dctnet.read_dct(files["420"])
    layout = DCTLayout("upsampling", 6).with_stats(range(18), np.arange(1, 19) * 2.0)
    x = to_tensor([img], layout, backend="numba")[0].numpy()
    bands = [0, 1, 8, 16, 9, 2]
    for c in range(3):
        deq = img.planes[c][..., bands].astype(np.float32) * img.qtables[c][bands].astype(np.float32)
        deq = deq.transpose(2, 0, 1)
        if c:
            deq = deq.repeat(2, axis=1).repeat(2, axis=2)
        ref = (deq - np.arange(6 * c, 6 * c + 6, dtype=np.float32)[:, None, None]) \
            / (np.arange(6 * c + 1, 6 * c + 7, dtype=np.float32)[:, None, None] * 2)
        np.testing.assert_allclose(x[6 * c:6 * c + 6], ref, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_low_precision_outputs(mixed_batch, dtype):
    layout = DCTLayout("upsampling", 10)
    ref = to_tensor(mixed_batch, layout, crop="center", size=96, backend="torch")
    for backend in ("torch", "numba"):
        got = to_tensor(mixed_batch, layout, crop="center", size=96, backend=backend, dtype=dtype)
        assert got.dtype == dtype
        assert torch.equal(got, ref.to(dtype))


def test_out_buffer_is_written_in_place(mixed_batch):
    layout = DCTLayout("late_concat", 7)
    shapes = output_shapes(layout, len(mixed_batch), 12, 26)
    buffers = tuple(torch.full(s, float("nan")) for s in shapes)
    ptrs = [b.data_ptr() for b in buffers]
    result = to_tensor(mixed_batch, layout, crop="center", size=(96, 208), out=buffers, backend="numba")
    assert result is buffers and [b.data_ptr() for b in buffers] == ptrs
    ref = to_tensor(mixed_batch, layout, crop="center", size=(96, 208), backend="torch")
    for b, r in zip(buffers, ref):
        assert torch.equal(b, r)
    with pytest.raises(ValueError, match="expected torch.float32"):
        to_tensor(mixed_batch, layout, crop="center", size=(96, 192), out=buffers)


def test_backend_errors(mixed_batch, monkeypatch):
    layout = DCTLayout("upsampling", 4)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    with pytest.raises(RuntimeError, match="needs a CUDA device"):
        to_tensor(mixed_batch, layout, crop="center", backend="triton")
    with pytest.raises(ValueError, match="numba backend writes CPU tensors"):
        to_tensor(mixed_batch, layout, crop="center", backend="numba", device="meta")
    with pytest.raises(ValueError, match="backend must be one of"):
        to_tensor(mixed_batch, layout, crop="center", backend="cuda")
    # auto: Triton for CUDA outputs, numba for CPU ones (the decision, testable without a GPU)
    from dctnet.ops.rearrange import _choose_backend
    assert _choose_backend("auto", torch.device("cuda", 0)) == "triton"
    assert _choose_backend("auto", torch.device("cpu")) == "numba"


def test_bad_inputs(files, tmp_path, photos):
    layout = DCTLayout("upsampling", 4)
    from PIL import Image
    cmyk = tmp_path / "cmyk.jpg"
    Image.open(photos[0]).convert("CMYK").save(cmyk, quality=90)
    with pytest.raises(ValueError, match="cmyk.jpg.*cmyk JPEG with 4 components"):
        to_tensor([dctnet.read_dct(cmyk)], layout)
    err = in_place(dctnet.read_dct_batch([b"not a jpeg"], on_error="return"))
    with pytest.raises(TypeError, match=r"images\[0\] is JPEGError"):
        to_tensor(err, layout)
    with pytest.raises(ValueError, match="empty batch"):
        to_tensor([], layout)
    with pytest.raises(ValueError, match="crop must be"):
        to_tensor([dctnet.read_dct(files["420"])], layout, crop="middle")
    tiny = synthetic_image(np.random.default_rng(0), (1, 1), [(2, 2), (1, 1), (1, 1)], source="tiny.jpg")
    with pytest.raises(ValueError, match="tiny.jpg: too small"):
        to_tensor([tiny], layout)


# --- statistics -----------------------------------------------------------------------------

def test_compute_stats(files, mixed_batch):
    imgs = [dctnet.read_dct(files[n]) for n in ("420", "gray", "jpegtran_flip")]
    layout = DCTLayout("upsampling", 3)
    stats = compute_stats(imgs, layout)
    # NumPy formula: Y over all three images, chroma over the two colour ones, 4:2:0 planes as stored.
    bands = [0, 1, 8]
    ys = np.concatenate([im.dequantized(0)[:30, :40][..., bands].reshape(-1, 3) for im in imgs]).astype(np.float64)
    cbs = np.concatenate([imgs[i].dequantized(1)[:15, :20][..., bands].reshape(-1, 3) for i in (0, 2)]).astype(np.float64)
    np.testing.assert_allclose(stats.mean[:3], ys.mean(0), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(stats.std[:3], ys.std(0), rtol=1e-6)
    np.testing.assert_allclose(stats.mean[3:6], cbs.mean(0), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(stats.std[3:6], cbs.std(0), rtol=1e-6)
    # Normalised inputs of the colour images have zero mean / unit std in Y over the set.
    again = DCTLayout.from_dict(json.loads(json.dumps(stats.to_dict())))
    assert again == stats and DCTLayout.from_json(stats.to_json()) == stats
    x = to_tensor(imgs, again)
    assert x[:, :3].mean(dim=(0, 2, 3)).abs().max() < 1e-4
    assert (x[:, :3].std(dim=(0, 2, 3), unbiased=False) - 1).abs().max() < 1e-4
    # Mixed geometry without a crop: grouped by geometry, same result as one image at a time.
    mixed = compute_stats(mixed_batch[:3], DCTLayout("late_concat", 2))
    parts = [compute_stats([im], DCTLayout("late_concat", 2)) for im in mixed_batch[:3]]
    assert len(mixed.mean) == 6 and all(s > 0 for s in mixed.std)
    assert mixed.mean[0] == pytest.approx(np.mean([p.mean[0] for p in parts]), rel=1e-6)


def test_block_batch_contract(mixed_batch):
    bb = align_blocks(mixed_batch, DCTLayout("upsampling", 64), crop="center", size=96)
    assert isinstance(bb, BlockBatch)
    assert bb.y.dtype == torch.int16 and bb.cb.dtype == torch.float32      # some chroma was resampled
    assert bb.qsteps.shape == (8, 3, 64) and bb.qsteps.dtype == torch.float32
    assert bb.has_chroma.tolist() == [True] * 5 + [False, True, True]
    resampled = [i for i, im in enumerate(mixed_batch) if im.subsampling not in ("4:2:0", "gray")]
    assert all((bb.qsteps[i, 1:] == 1).all() for i in resampled)
    native = mixed_batch[0]
    assert torch.equal(bb.qsteps[0], torch.from_numpy(native.qtables.astype(np.float32)))
    x = blocks_to_tensor_torch(bb, DCTLayout("upsampling", 64))
    assert torch.equal(x, to_tensor(mixed_batch, DCTLayout("upsampling", 64), crop="center", size=96,
                                    backend="torch"))


def test_numba_backend_from_many_threads(mixed_batch):
    """A thread-pool loader may call to_tensor concurrently (numba's workqueue layer would abort)."""
    from concurrent.futures import ThreadPoolExecutor
    layout = DCTLayout("upsampling", 6)
    ref = to_tensor(mixed_batch, layout, crop="center", size=96, backend="torch")
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: to_tensor(mixed_batch, layout, crop="center", size=96, backend="numba"),
                                range(8)))
    assert all(torch.equal(r, ref) for r in results)
