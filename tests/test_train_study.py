"""The synthetic set (deterministic; each class's detail at its stated frequency / in colour)
and the `dctnet study` pipeline end to end at a tiny size."""

from __future__ import annotations

import numpy as np
import pytest

from dctnet import read_header
from dctnet.cli import main as cli_main
from dctnet.data.synthetic import CLASSES, SyntheticSpec, make_synthetic_dataset, render


def _ycbcr(rgb: np.ndarray):
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    y = 0.299 * r + 0.587 * g + 0.114 * b
    return y, 128 - 0.168736 * r - 0.331264 * g + 0.5 * b, 128 + 0.5 * r - 0.418688 * g - 0.081312 * b


def _axis_peak(plane: np.ndarray) -> int:
    """Frequency (cycles per image) of the strongest horizontal or vertical component above 3."""
    spec = np.abs(np.fft.fft2(plane - plane.mean()))
    n = plane.shape[0]
    along = np.maximum(spec[0, : n // 2], spec[: n // 2, 0])   # pure vertical / horizontal stripes
    along[:4] = 0
    return int(np.argmax(along))


def test_render_is_deterministic():
    a = render(5, np.random.default_rng([0, 0, 5, 1]))
    b = render(5, np.random.default_rng([0, 0, 5, 1]))
    c = render(5, np.random.default_rng([0, 0, 5, 2]))
    assert a.shape == (128, 128, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and not np.array_equal(a, c)


@pytest.mark.parametrize("label,period", [(3, 16), (4, 8), (5, 4), (6, 8 / 3)])
def test_stripe_classes_put_their_detail_at_the_stated_frequency(label, period):
    for seed in range(4):
        y, _, _ = _ycbcr(render(label, np.random.default_rng([9, label, seed])))
        assert abs(_axis_peak(y) - 128 / period) <= 1, (label, seed)


def test_colour_classes():
    for seed in range(4):
        rng = np.random.default_rng([7, seed])
        # Chroma stripes: the detail is in Cb - Cr at 128/8 = 16 cycles, not in luma.
        y, cb, cr = _ycbcr(render(7, rng))
        assert abs(_axis_peak(cb - cr) - 16) <= 1
        spec_y = np.abs(np.fft.fft2(y - y.mean()))
        spec_c = np.abs(np.fft.fft2(cb - cr - (cb - cr).mean()))
        assert max(spec_y[0, 16], spec_y[16, 0]) < 0.1 * max(spec_c[0, 16], spec_c[16, 0])
        # Red / blue discs: the disc's Cr / Cb stands out from the background.
        for label, plane in ((1, 2), (2, 1)):
            planes = _ycbcr(render(label, np.random.default_rng([8, label, seed])))
            c = planes[plane]
            assert np.percentile(c, 99) - np.median(c) > 20


def test_make_synthetic_dataset_layout_and_resume(tmp_path):
    spec = SyntheticSpec(train_per_class=2, val_per_class=1, size=48, quality=80)
    paths = make_synthetic_dataset(tmp_path, spec)
    files = sorted((tmp_path / "train").rglob("*.jpg"))
    assert len(files) == 2 * len(CLASSES) and len(list((tmp_path / "val").rglob("*.jpg"))) == len(CLASSES)
    h = read_header(files[0])
    assert (h.width, h.height, h.subsampling, h.quality) == (48, 48, "4:2:0", 80)
    with open(paths["classes"], encoding="utf-8") as f:
        assert [line.split("\t")[0] for line in f.read().splitlines()] == [c for c, _ in CLASSES]
    before = files[0].read_bytes()
    files[0].unlink()
    make_synthetic_dataset(tmp_path, spec)
    assert files[0].read_bytes() == before   # regenerated bit for bit


def test_study_command_end_to_end(tmp_path, capsys):
    code = cli_main(["study", "--out", str(tmp_path), "--models", "small_resnet_rgb,small_resnet_dct_fbs8",
                     "--train-per-class", "2", "--val-per-class", "1", "--epochs", "1", "-b", "8", "-j", "0",
                     "--qf", "50", "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0
    assert "small_resnet_rgb" in out and "small_resnet_dct_fbs8" in out and "qf50" in out
    assert (tmp_path / "runs" / "small_resnet_dct_fbs8" / "last.pt").exists()
    assert (tmp_path / "eval" / "summary.json").exists()
