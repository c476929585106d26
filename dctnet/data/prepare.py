"""`dctnet prepare`: the papers' preprocessing of a training/validation tree.

Every image under ``src`` is decoded (libjpeg-turbo for JPEG, Pillow for PNG/BMP/WebP/TIFF),
resized so that its shorter side is ``short_side`` pixels (Pillow bilinear, antialiased when
shrinking; the new size is ``(round(w*s), round(h*s))`` as in :func:`dctnet.imaging.resize_shorter`)
and encoded by libjpeg-turbo at each requested quality with the standard (Annex K) tables
scaled by the quality, 4:2:0 sampling, baseline. Grayscale sources are written as colour
JPEGs with neutral chroma (every DCT layout then has chroma to read). With ``progressive``
band groups (e.g. ``(1, 6, 16, 64)``) each file is then rewritten losslessly as a
band-ordered progressive JPEG (:func:`dctnet.codec.transcode_progressive`: the same
coefficients, scans ordered DC, bands 1-5, 6-15, 16-63), from which a model using the n
lowest bands decodes only the first scans, with a restart marker every ``restart_interval``
MCUs, from which :func:`~dctnet.ops.read_to_tensor` decodes only the intervals around its
crop (``docs/architecture.md`` §6).

Output tree: with one quality, ``dst`` mirrors ``src`` (same relative paths, suffix ``.jpg``
for non-JPEG sources); with several, ``dst/qf<Q>/`` mirrors it for each ``Q``. Files are
written to a temporary name and renamed, so a file under its final name is complete: a rerun
skips those (resumable) and redoes only what is missing. A file that cannot be read is
reported with its reason and the run continues.
"""

from __future__ import annotations

import contextlib
import glob
import os
import stat
import sys
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

from ..codec import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, DEFAULT_RESTART_INTERVAL, JPEGError, \
    check_restart_interval, transcode_progressive
from ..imaging import decode_rgb, encode_jpeg, resize_shorter
from .datasets import IMAGE_SUFFIXES

__all__ = ["PrepareReport", "prepare_tree", "find_images", "prepare_image"]

OTHER_SUFFIXES = (".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm")


@dataclass
class PrepareReport:
    """What :func:`prepare_tree` did: counts of outputs written / already present, the
    failed sources with their reasons, and the bytes of the files written (``baseline_bytes``:
    what the same files would have taken as baseline JPEGs, when ``progressive`` was given)."""

    written: int = 0
    bytes_written: int = 0
    baseline_bytes: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)


def find_images(src: str) -> list[str]:
    """Image files under ``src`` (relative paths, sorted; hidden folders and files skipped)."""
    out = []
    for dirpath, dirnames, names in os.walk(src):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for n in sorted(names):
            if not n.startswith(".") and n.lower().endswith(IMAGE_SUFFIXES + OTHER_SUFFIXES):
                out.append(os.path.relpath(os.path.join(dirpath, n), src))
    return out


def _decode(path: str) -> np.ndarray:
    if path.lower().endswith(IMAGE_SUFFIXES):
        return decode_rgb(path)
    try:
        # Other formats go through Pillow: the same limits, checked before decoding.
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise JPEGError(path, "not a regular file")
        if st.st_size > DEFAULT_MAX_BYTES:
            raise JPEGError(path, f"file of {st.st_size} bytes exceeds the limit of {DEFAULT_MAX_BYTES} bytes")
        with Image.open(path) as im:  # reads the header only
            if im.width * im.height > DEFAULT_MAX_PIXELS:
                raise JPEGError(path, f"{im.width}x{im.height} pixels exceeds the limit of {DEFAULT_MAX_PIXELS}")
            return np.asarray(im.convert("RGB"))
    except (UnidentifiedImageError, OSError, ValueError) as e:
        if isinstance(e, JPEGError):
            raise
        raise JPEGError(path, f"cannot decode: {e}") from None


def prepare_image(path: str, short_side: int | None, qfs: Sequence[int],
                  progressive: Sequence[int] | None = None,
                  restart_interval: int = DEFAULT_RESTART_INTERVAL) -> list[bytes]:
    """One source -> its JPEG bytes at each quality (see the module docstring); band-ordered
    progressive with these band groups (and restart intervals) when ``progressive`` is given."""
    return [p for p, _ in _prepare_image(path, short_side, qfs, progressive, restart_interval)]


def _prepare_image(path, short_side, qfs, progressive, restart_interval) -> list[tuple[bytes, int]]:
    """(file bytes, bytes of its baseline version) per quality."""
    rgb = _decode(path)
    if rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise JPEGError(path, "empty image")
    if short_side:
        rgb = resize_shorter(rgb, short_side)
    out = []
    for q in qfs:
        baseline = encode_jpeg(rgb, int(q), subsampling="420")
        out.append((baseline if progressive is None else
                    transcode_progressive(baseline, progressive, restart_interval=restart_interval), len(baseline)))
    return out


def _complete(path: str) -> bool:
    """A finished output: non-empty and ending with the JPEG end-of-image marker."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            if f.tell() < 4:
                return False
            f.seek(-2, os.SEEK_END)
            return f.read(2) == b"\xff\xd9"
    except OSError:
        return False


def prepare_tree(src: str | os.PathLike, dst: str | os.PathLike, *, short_side: int | None = 256,
                 qfs: Sequence[int] = (90,), threads: int | None = None, progress: bool = True,
                 log=None, progressive: Sequence[int] | None = None,
                 restart_interval: int = DEFAULT_RESTART_INTERVAL) -> PrepareReport:
    """Resize and re-encode every image of ``src`` into ``dst`` (see the module docstring).

    Args:
        src, dst: folders (``dst`` may not be inside ``src``).
        short_side: shorter side in pixels after resizing (``None``: keep the size).
        qfs: JPEG qualities 1..100 (one tree per quality when several).
        threads: parallel workers (decoding, resizing and encoding release the GIL).
        progress: tqdm progress bar on stderr.
        log: called with one line per failed file (default: print to stderr).
        progressive: band groups, e.g. ``(1, 6, 16, 64)``: write band-ordered progressive
            JPEGs (lossless against the baseline files otherwise written); ``None``: baseline.
        restart_interval: MCUs between the restart markers of the progressive files (0:
            none); see :func:`~dctnet.codec.transcode_progressive`.

    Returns:
        :class:`PrepareReport`.
    """
    src, dst = os.path.abspath(os.fspath(src)), os.path.abspath(os.fspath(dst))
    qfs = [int(q) for q in qfs]
    if not qfs or any(not 1 <= q <= 100 for q in qfs) or len(set(qfs)) != len(qfs):
        raise ValueError(f"qualities must be distinct integers in 1..100, got {qfs}")
    if progressive is not None:
        groups = [int(b) for b in progressive]
        if not groups or any(not 1 <= b <= 64 for b in groups) or any(a >= b for a, b in zip(groups, groups[1:])):
            raise ValueError(f"progressive band groups must be strictly increasing band counts in 1..64, "
                             f"got {list(progressive)}")
    restart_interval = check_restart_interval(restart_interval)
    if short_side is not None and short_side < 1:
        raise ValueError(f"short side must be a positive number of pixels, got {short_side}")
    if not os.path.isdir(src):
        raise ValueError(f"{src}: not a folder")
    if dst == src or dst.startswith(src + os.sep):
        raise ValueError(f"{dst}: the output folder must not be inside the source folder {src}")
    log = log or (lambda line: print(line, file=sys.stderr))
    rels = find_images(src)
    if not rels:
        raise ValueError(f"{src}: no images ({', '.join(IMAGE_SUFFIXES + OTHER_SUFFIXES)})")
    roots = [dst] if len(qfs) == 1 else [os.path.join(dst, f"qf{q}") for q in qfs]
    report = PrepareReport()

    def target(root: str, rel: str) -> str:
        base = rel if rel.lower().endswith(IMAGE_SUFFIXES) else os.path.splitext(rel)[0] + ".jpg"
        return os.path.join(root, base)

    todo = []
    for rel in rels:
        outs = [target(r, rel) for r in roots]
        report.outputs.extend(outs)
        missing = [i for i, o in enumerate(outs) if not _complete(o)]
        report.skipped += len(outs) - len(missing)
        if missing:
            todo.append((rel, [(qfs[i], outs[i]) for i in missing]))

    def work(item) -> tuple[int, int, int]:
        rel, jobs = item
        data = _prepare_image(os.path.join(src, rel), short_side, [q for q, _ in jobs], progressive,
                              restart_interval)
        for (blob, _), (_, out) in zip(data, jobs):
            os.makedirs(os.path.dirname(out), exist_ok=True)
            tmp = f"{out}.part{os.getpid()}"
            for stale in glob.glob(glob.escape(out) + ".part*"):  # left by a killed run
                if stale != tmp:
                    with contextlib.suppress(OSError):
                        os.remove(stale)
            with open(tmp, "wb") as f:
                f.write(blob)
            os.replace(tmp, out)
        return len(jobs), sum(len(b) for b, _ in data), sum(n for _, n in data)

    bar = tqdm(total=len(rels), initial=len(rels) - len(todo), unit="img", disable=not progress,
               desc="prepare", dynamic_ncols=True)
    with ThreadPoolExecutor(threads or os.cpu_count() or 1) as pool:
        futures = {pool.submit(work, item): item[0] for item in todo}
        for fut in as_completed(futures):
            rel = futures[fut]
            try:
                written, size, baseline = fut.result()
                report.written += written
                report.bytes_written += size
                report.baseline_bytes += baseline
            except (JPEGError, OSError, ValueError) as e:
                reason = e.reason if isinstance(e, JPEGError) else str(e)
                report.failed.append((os.path.join(src, rel), reason))
                line = f"{os.path.join(src, rel)}: {reason}"
                if progress:
                    bar.write(line, file=sys.stderr)
                else:
                    log(line)
            bar.update(1)
    bar.close()
    report.failed.sort()
    return report
