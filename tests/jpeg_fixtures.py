"""Shared fixtures (re-exported by tests/conftest.py and benchmarks/conftest.py): the sample photos and JPEG variants made with libjpeg-turbo's tools."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

SHARED = Path(os.environ.get("DCTNET_SHARED", Path(__file__).resolve().parents[2] / "shared"))
SAMPLE_DIR = SHARED / "data" / "imagenet-sample"
CLASSES_TSV = SHARED / "data" / "imagenet-classes.tsv"
ONNX_MODEL = SHARED / "models" / "mobilenetv2-12-int8.onnx"


def sample_photos() -> list[Path]:
    photos = sorted(SAMPLE_DIR.glob("*.JPEG"))
    if not photos:
        raise RuntimeError(f"no sample photos under {SAMPLE_DIR} (set DCTNET_SHARED to the shared/ folder)")
    return photos


def run_tool(*args: str, stdin: bytes | None = None) -> bytes:
    """Run cjpeg/djpeg/jpegtran; fail loudly if the tool is missing (scripts/install.sh installs it)."""
    if shutil.which(args[0]) is None:
        raise RuntimeError(f"{args[0]} not found: install Debian's libjpeg-turbo-progs (scripts/install.sh does)")
    return subprocess.run(list(args), input=stdin, stdout=subprocess.PIPE, stderr=subprocess.PIPE, check=True).stdout


def write_ppm(path: Path, rgb: np.ndarray) -> Path:
    h, w = rgb.shape[:2]
    with open(path, "wb") as f:
        f.write(b"P6\n%d %d\n255\n" % (w, h))
        f.write(np.ascontiguousarray(rgb, np.uint8).tobytes())
    return path


def read_pnm(data: bytes) -> np.ndarray:
    """Parse djpeg's binary PGM/PPM output: uint8 (H, W) or (H, W, 3)."""
    magic, rest = data[:2], data[2:]
    fields, pos = [], 0
    while len(fields) < 3:
        while rest[pos:pos + 1].isspace():
            pos += 1
        if rest[pos:pos + 1] == b"#":
            pos = rest.index(b"\n", pos)
            continue
        end = pos
        while not rest[end:end + 1].isspace():
            end += 1
        fields.append(int(rest[pos:end]))
        pos = end
    w, h, _ = fields
    pixels = np.frombuffer(rest[pos + 1:], np.uint8)
    return pixels.reshape(h, w, 3) if magic == b"P6" else pixels.reshape(h, w)


@pytest.fixture(scope="session")
def photos() -> list[Path]:
    return sample_photos()


# Variants made from one real photo: name -> extra cjpeg switches.
CJPEG_VARIANTS = {
    "baseline_444": ["-quality", "90", "-sample", "1x1"],
    "baseline_420": ["-quality", "90", "-sample", "2x2"],
    "baseline_422": ["-quality", "85", "-sample", "2x1"],
    "baseline_440": ["-quality", "85", "-sample", "1x2"],
    "baseline_411": ["-quality", "80", "-sample", "4x1"],
    "progressive_420": ["-quality", "90", "-progressive"],
    "progressive_444": ["-quality", "75", "-progressive", "-sample", "1x1"],
    "restart_rows": ["-quality", "90", "-restart", "1"],
    "restart_blocks": ["-quality", "90", "-restart", "5B"],
    "arithmetic": ["-quality", "90", "-arithmetic"],
    "arithmetic_progressive": ["-quality", "90", "-arithmetic", "-progressive"],
    "optimized": ["-quality", "95", "-optimize"],
    "gray": ["-quality", "90", "-grayscale"],
    "gray_progressive": ["-quality", "70", "-grayscale", "-progressive"],
    "q10": ["-quality", "10"],
}


@pytest.fixture(scope="session")
def variants(tmp_path_factory, photos) -> dict[str, Path]:
    """JPEG variants of two real photos, including odd sizes (225x223, 17x9) and CMYK."""
    from PIL import Image

    out = tmp_path_factory.mktemp("variants")
    made: dict[str, Path] = {}
    src = photos[0]
    rgb = read_pnm(run_tool("djpeg", "-ppm", str(src)))
    sources = {"": rgb, "odd225x223_": rgb[:223, :225], "tiny17x9_": rgb[:9, :17]}
    for prefix, pixels in sources.items():
        ppm = write_ppm(out / f"{prefix}src.ppm", pixels)
        for name, switches in CJPEG_VARIANTS.items():
            if prefix and name.startswith(("arithmetic_", "restart_blocks", "q10")):
                continue
            path = out / f"{prefix}{name}.jpg"
            run_tool("cjpeg", *switches, "-outfile", str(path), str(ppm))
            made[prefix + name] = path
    # CMYK (four planes, Adobe marker) written by Pillow's libjpeg.
    cmyk = out / "cmyk.jpg"
    Image.fromarray(rgb).convert("CMYK").save(cmyk, quality=90)
    made["cmyk"] = cmyk
    # A lossless transform of a real photo keeps its coefficients: flipped/transposed copies.
    for op in (["-flip", "horizontal"], ["-transpose"]):
        path = out / f"jpegtran{'_'.join(op)}.jpg"
        run_tool("jpegtran", *op, "-outfile", str(path), str(photos[1]))
        made[path.stem] = path
    return made


def in_place(result):
    """``read_dct_batch(..., on_error="return")``'s ``(images, errors)`` as one list with each
    failure's exception in its item's place (how the older tests read batch results)."""
    images, errors = result
    assert len(images) == len(errors)
    assert all((img is None) != (err is None) for img, err in zip(images, errors))
    return [img if err is None else err for img, err in zip(images, errors)]
