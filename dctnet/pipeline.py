"""Input pipelines: JPEG sources in, one batch of model inputs and per-item errors out.

This file answers "where is the code that turns a JPEG into the tensor for model X":
a model's :class:`~dctnet.models.ModelBundle` says what its input is (a
:class:`~dctnet.ops.DCTLayout` or an :class:`~dctnet.imaging.RGBPreprocess`) and
``bundle.pipeline(...)`` builds one of the pipelines below. The Classifier, `dctnet eval`,
the training loaders and `dctnet bench throughput` all feed models through them.

* :class:`DCTPipeline`: coefficients, never pixels. On CPU (numba backend) each file is read
  and gathered into the batch by the reader thread that decoded it
  (:func:`dctnet.ops.read_to_tensor`); files that route cannot take (chroma other than
  4:2:0, which needs DCT-domain resampling; given ``DCTImage`` s; CUDA outputs) go through
  :func:`dctnet.read_dct_batch` + :func:`dctnet.ops.to_tensor`, the same numbers. Either way
  only the bands the layout uses are decoded when a file allows it (band-ordered progressive
  files, :meth:`dctnet.ops.DCTLayout.read_bands`), except when resizing. Crops are
  centred (evaluation) or random with random flips (training, seeded), on block boundaries.
  With ``resize=`` (every registered DCT model's evaluation), images are resampled in the DCT
  domain like the RGB pipeline (:mod:`dctnet.ops.resize`), any size. Without it (exact block
  crops, e.g. prepared data), an image smaller than the crop is, for evaluation only,
  resampled in the DCT domain with its shorter side to the crop (``small="resize"``; no
  decode, no re-encode; the item's ``path`` is then ``"dct-resized"``), or an error
  (``small="error"``). Training crops are RandomResizedCrop resampled in the DCT domain, or
  exact block crops (``train_crop="random"``).
* :class:`RGBPipeline`: decode, resize, centre crop, normalise (:class:`RGBPreprocess`).

Either pipeline can first re-encode each file as the papers prepare their data
(``prepared=(resize, crop)``: :func:`dctnet.imaging.prepare_jpeg`, shorter side ``resize``,
a ``crop`` centre crop on 16-pixel boundaries, 4:2:0): what the exact conversion's ONNX
front end is evaluated on, so that the RGB network and its DCT twin see the same pixels.
Such items are named ``"dct-prepared"`` / ``"rgb-prepared"`` in :attr:`Batch.paths`.

A model that takes several versions of each file (``multiqf``, :mod:`dctnet.models.multiqf`)
is fed by :class:`VersionsPipeline` around its backbone's pipeline: each file is decoded and
re-encoded at each of its qualities by :func:`dctnet.imaging.encode_jpeg` (4:2:0, the encoder
of `dctnet eval`'s versions), and the original and its versions go through the backbone's
pipeline as JPEG files (coefficients for DCT backbones, pixels for RGB ones).

The batch-result convention (``docs/architecture.md``): a pipeline returns a :class:`Batch`
whose ``inputs`` have one row per source, ``errors[i]`` is ``None`` or the
:class:`~dctnet.JPEGError` (a ``ValueError``) naming source i, and a failed item's rows are
zero, never stale. Bytes sources are named ``<bytes #i>`` by their position ``offset + i``
in the caller's request.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, NamedTuple, Sequence, Union

import numpy as np
import torch

from .codec import DCTImage, JPEGError, JPEGSource, read_dct_batch
from .imaging import RGBPreprocess, decode_rgb, encode_jpeg, prepare_jpeg, read_bytes
from .ops import DCTLayout, read_to_tensor, to_tensor, usable_size

__all__ = ["Batch", "DCTPipeline", "Pipeline", "RGBPipeline", "Source", "VersionsPipeline", "jpeg_versions",
           "source_name"]

#: What pipelines take: JPEG paths or bytes, DCTImages (DCT pipelines), decoded ``uint8 (H, W, 3)``
#: images (RGB pipelines without ``prepared``: another codec's decode in `dctnet eval`).
Source = Union[JPEGSource, DCTImage, np.ndarray]
Inputs = Union[torch.Tensor, tuple, np.ndarray]


class Batch(NamedTuple):
    """One prepared batch.

    Attributes:
        inputs: the model's input, one row per source: ``float32`` tensor ``(B, C, h, w)``, a
            ``(y, cbcr)`` tuple for late-concat DCT layouts, or a NumPy ``float32
            (B, 3, crop, crop)`` array for ONNX models. ``None`` when every item failed.
        errors: per source, ``None`` or the exception naming it (rows zero).
        paths: per source, how its input was made (``"dct"``, ``"dct-resized"``, ``"rgb"``),
            ``None`` on error.
    """

    inputs: Inputs | None
    errors: list[Exception | None]
    paths: list[str | None]

    @property
    def ok(self) -> list[int]:
        """Positions of the items that have an input."""
        return [i for i, e in enumerate(self.errors) if e is None]


def source_name(src: Source, index: int) -> str:
    """A source's name in results and errors: its path, a DCTImage's source, ``<bytes #index>``
    or ``<pixels #index>`` (a decoded image, which only RGB pipelines take)."""
    if isinstance(src, DCTImage):
        return src.source
    if isinstance(src, np.ndarray):
        return f"<pixels #{index}>"
    if isinstance(src, (str, os.PathLike)):
        return os.fsdecode(src)
    return f"<bytes #{index}>"


def _renamed(errors: list, offset: int) -> list:
    """Byte inputs named by their position in the whole request (the reader numbers them per call)."""
    out = list(errors)
    for i, e in enumerate(out):
        if isinstance(e, JPEGError) and e.source.startswith("<bytes"):
            out[i] = JPEGError(f"<bytes #{offset + i}>", e.reason)
    return out


def _as_jpeg_error(e: Exception, name: str) -> JPEGError:
    if isinstance(e, JPEGError):
        return e
    return JPEGError(name, str(e).removeprefix(f"{name}: "))


@functools.lru_cache(maxsize=512)
def _prepared_jpeg(data: bytes, resize: int, crop: int, name: str) -> bytes:
    # cached: `dctnet eval` hands the same version to several models in a row
    return prepare_jpeg(data, resize=resize, crop=crop, name=name)


def _prepare_all(srcs: Sequence[Source], prepared: tuple[int, int], offset: int) -> tuple[list, list]:
    """Re-encode each source as the papers prepare data; ``(sources, errors)`` (failed: ``b""``)."""
    out, errors = [], []
    for i, src in enumerate(srcs):
        name = source_name(src, offset + i)
        try:
            if isinstance(src, DCTImage):
                raise JPEGError(name, "a prepared pipeline re-encodes JPEG files; pass the file, not a DCTImage")
            if isinstance(src, np.ndarray):
                raise JPEGError(name, "a prepared pipeline re-encodes JPEG files, not decoded pixels")
            data, _ = read_bytes(src, name)
            out.append(_prepared_jpeg(bytes(data), prepared[0], prepared[1], name))
            errors.append(None)
        except (JPEGError, OSError, ValueError) as e:
            out.append(b"")
            errors.append(_as_jpeg_error(e, name))
    return out, errors


def _merge_errors(batch: "Batch", errors: list, names: list[str], suffix: str) -> "Batch":
    """A prepared batch: the preparation's errors first, then the inner batch's (named after
    the original sources), paths tagged ``-prepared``."""
    errs = [e0 if e0 is not None else (None if e is None else JPEGError(name, getattr(e, "reason", str(e))))
            for e0, e, name in zip(errors, batch.errors, names)]
    paths = [None if e is not None else (p and f"{p}-{suffix}") for p, e in zip(batch.paths, errs)]
    inputs = batch.inputs if any(e is None for e in errs) else None
    return Batch(inputs, errs, paths)


class Pipeline:
    """What every pipeline offers: ``pipeline(srcs, offset=0) -> Batch`` (see the module docstring)."""

    kind: str

    def __call__(self, srcs: Sequence[Source], *, offset: int = 0, seed: int | None = None) -> Batch:
        raise NotImplementedError


class RGBPipeline(Pipeline):
    """JPEG -> decode -> resize -> centre crop -> normalise, on a thread pool.

    Args:
        preprocess: the model's :class:`~dctnet.imaging.RGBPreprocess`.
        threads: decoding threads (default: all cores).
        output: ``"torch"`` (a CPU tensor) or ``"numpy"`` (ONNX models).
        path: the name of this route in :attr:`Batch.paths` (``"rgb"`` or ``"onnx"``).
        prepared: ``(resize, crop)``: re-encode every file as the papers prepare data first
            (see the module docstring); ``preprocess`` then usually has ``resize=None``.

    ``pipeline(srcs)`` gives ``Batch(inputs float32 (B, 3, crop, crop), errors, paths)``.
    """

    kind = "rgb"

    def __init__(self, preprocess: RGBPreprocess, *, threads: int | None = None,
                 output: Literal["torch", "numpy"] = "torch", path: str = "rgb",
                 prepared: tuple[int, int] | None = None):
        self.preprocess = preprocess
        self.threads = threads or os.cpu_count() or 1
        self.output, self.path, self.prepared = output, path, prepared

    def __repr__(self) -> str:
        return f"RGBPipeline({self.preprocess!r})"

    def __call__(self, srcs: Sequence[Source], *, offset: int = 0, seed: int | None = None) -> Batch:
        names = [source_name(s, offset + i) for i, s in enumerate(srcs)]
        if self.prepared is not None:
            data, errors = _prepare_all(srcs, self.prepared, offset)
            plain = RGBPipeline(self.preprocess, threads=self.threads, output=self.output, path=self.path)
            return _merge_errors(plain(data, offset=offset), errors, names, "prepared")
        for i, s in enumerate(srcs):
            if isinstance(s, DCTImage):
                raise TypeError(f"{names[i]}: RGB models take JPEG paths or bytes, not DCTImages")
        x, errors = self.preprocess.batch(list(srcs), threads=self.threads, names=names)
        paths = [self.path if e is None else None for e in errors]
        inputs = torch.from_numpy(x) if self.output == "torch" else x
        return Batch(inputs if any(e is None for e in errors) else None, errors, paths)


class DCTPipeline(Pipeline):
    """JPEG coefficients -> crop / flip / chroma alignment / bands / dequantise / normalise.

    Args:
        layout: the model's :class:`~dctnet.ops.DCTLayout` (with its statistics).
        size: crop side in pixels (the model's input size; multiple of 16 for 4:2:0 layouts).
        train: random crop + random flip, seeded per batch (``pipeline(srcs, seed=s)``), or a
            centre crop (evaluation).
        train_crop: the training crop: ``"random-resized"`` (torchvision's RandomResizedCrop,
            resampled in the DCT domain: any image size, the geometry RGB training uses) or
            ``"random"`` (exact block-aligned crops of the original, no resampling; images
            smaller than the crop are errors).
        threads: reader threads (default: all cores).
        device: where the inputs go; on CUDA the rearrangement runs there (Triton).
        backend: :func:`~dctnet.ops.to_tensor` backend (``"auto"``: numba on CPU, Triton on CUDA).
        small: images smaller than the crop, without ``resize``: ``"resize"`` (resampled in the
            DCT domain, shorter side to the crop, named ``"dct-resized"``; evaluation only) or
            ``"error"``.
        prepared: ``(resize, crop)``: re-encode every file as the papers prepare data first
            (see the module docstring; evaluation only, ``crop == size``).
        resize: resize in the DCT domain as the RGB pipeline does (shorter side to ``resize``,
            then the centre crop of ``size``; :mod:`dctnet.ops.resize`), for every sampling and
            image size (small images are upscaled by the same operator, so ``small`` does not
            apply); evaluation only. ``None``: exact block crops of the original.
        out: caller-owned output buffer(s) (e.g. pinned memory), used when shapes match.

    ``pipeline(srcs, seed=None)`` gives ``Batch(inputs, errors, paths)``: inputs
    ``float32 (B, C, size/8, size/8)`` (``(y, cbcr)`` for late-concat layouts).
    """

    kind = "dct"

    def __init__(self, layout: DCTLayout, size: int, *, train: bool = False, threads: int | None = None,
                 device: str | torch.device = "cpu", backend: str = "auto",
                 small: Literal["resize", "error"] = "resize", prepared: tuple[int, int] | None = None,
                 resize: int | None = None, train_crop: Literal["random-resized", "random"] = "random-resized"):
        if small not in ("resize", "error"):
            raise ValueError(f"small must be 'resize' or 'error', not {small!r}")
        if train and small == "resize":
            small = "error"  # training never re-encodes: prepare the set instead
        self.layout, self.size, self.train = layout, int(size), bool(train)
        self.threads = threads or os.cpu_count() or 1
        self.device = torch.device(device)
        self.backend, self.small, self.prepared, self.resize = backend, small, prepared, resize
        if train_crop not in ("random-resized", "random"):
            raise ValueError(f"train_crop must be 'random-resized' or 'random', not {train_crop!r}")
        self.train_crop = train_crop
        # resampled in the DCT domain (any image size; mixes bands, so files are read whole)
        self.resamples = resize is not None or (self.train and train_crop == "random-resized")
        if resize is not None and (train or prepared is not None):
            raise ValueError("resize= is the evaluation geometry (centre crop of the resized image); training "
                             "crops and prepared files do not take it")
        if prepared is not None and (train or prepared[1] != self.size):
            raise ValueError(f"a prepared pipeline evaluates at its crop ({prepared[1]}), not {self.size} / training")

    def __repr__(self) -> str:
        crop = f", crop={self.train_crop}" if self.train else ""
        return (f"DCTPipeline({self.layout.kind}, bands={self.layout.bands}, size={self.size}, resize={self.resize}, "
                f"train={self.train}{crop})")

    @property
    def fused(self) -> bool:
        """Whether files go through :func:`~dctnet.ops.read_to_tensor` (gathered by the reader's
        threads, or read and resized on the CPU)."""
        return self.device.type == "cpu" and self.backend in ("auto", "numba")

    def _geometry(self, seed: int | None) -> dict:
        if not self.train:
            return {"crop": "center", "flip": False, "generator": None}
        g = torch.Generator()
        if seed is not None:
            g.manual_seed(int(seed))
        return {"crop": self.train_crop, "flip": "random", "generator": g}

    def __call__(self, srcs: Sequence[Source], *, offset: int = 0, seed: int | None = None,
                 out: Inputs | None = None) -> Batch:
        srcs = list(srcs)
        for i, s in enumerate(srcs):
            if isinstance(s, np.ndarray):
                raise TypeError(f"{source_name(s, offset + i)}: DCT models take JPEG files or DCTImages, "
                                "not decoded pixels")
        if self.prepared is not None:
            data, errors = _prepare_all(srcs, self.prepared, offset)
            plain = DCTPipeline(self.layout, self.size, threads=self.threads, device=self.device,
                                backend=self.backend, small="error")
            names = [source_name(s, offset + i) for i, s in enumerate(srcs)]
            return _merge_errors(plain(data, offset=offset, out=out), errors, names, "prepared")
        if self.fused and not any(isinstance(s, DCTImage) for s in srcs):
            batch = self._fused(srcs, seed, out)
        else:
            batch = self._general(srcs, seed)
        return batch._replace(errors=_renamed(batch.errors, offset))

    # --- the two routes ------------------------------------------------------------------

    def _fused(self, srcs: list, seed: int | None, out) -> Batch:
        if self.train and self.train_crop == "random-resized":
            x, errs = read_to_tensor(srcs, self.layout, size=self.size, threads=self.threads, out=out,
                                     on_error="return", **self._geometry(seed))
            errors = list(errs)
            return Batch(x if any(e is None for e in errors) else None, errors,
                         ["dct" if e is None else None for e in errors])
        if self.resize is not None:
            x, errs = read_to_tensor(srcs, self.layout, size=self.size, threads=self.threads, out=out,
                                     on_error="return", resize=self.resize, crop="center")
            errors = list(errs)
            return Batch(x if any(e is None for e in errors) else None, errors,
                         ["dct" if e is None else None for e in errors])
        x, errs = read_to_tensor(srcs, self.layout, size=self.size, threads=self.threads, out=out,
                                 on_error="return", **self._geometry(seed))
        errors: list = list(errs)
        paths: list = ["dct" if e is None else None for e in errs]
        # ValueError that is not a JPEGError: too small for the crop, or a colour space no
        # layout takes.
        redo = [i for i, e in enumerate(errs) if isinstance(e, ValueError) and not isinstance(e, JPEGError)]
        if redo:  # the general route resizes the first (evaluation) or names the problem
            sub = self._general([srcs[i] for i in redo], seed)
            for j, i in enumerate(redo):
                errors[i], paths[i] = sub.errors[j], sub.paths[j]
                if sub.errors[j] is None:
                    for part, sub_part in zip(_parts(x), _parts(sub.inputs)):
                        part[i] = sub_part[j]
        return Batch(x if any(e is None for e in errors) else None, errors, paths)

    def _general(self, srcs: list, seed: int | None) -> Batch:
        n = len(srcs)
        errors: list = [None] * n
        paths: list = [None] * n
        to_read = [i for i, s in enumerate(srcs) if not isinstance(s, DCTImage)]
        images: list = list(srcs)
        if to_read:
            # only the bands the layout uses when files allow it (not when resampling: it mixes bands)
            bands = {} if self.resamples else self.layout.read_bands()
            read, read_errors = read_dct_batch([srcs[i] for i in to_read], threads=self.threads, on_error="return",
                                               **bands)
            for i, img, error in zip(to_read, read, read_errors):
                images[i] = img if error is None else error
        ready, ok = [], []
        for i, img in enumerate(images):
            if isinstance(img, Exception):
                errors[i] = img
                continue
            try:
                path = "dct"
                if self.resamples:
                    usable_size(img, self.layout)  # raises for colour spaces no layout takes (CMYK)
                elif not self._fits(img):
                    if self.small == "error":
                        raise JPEGError(img.source, f"{img.width}x{img.height} is smaller than the "
                                                    f"{self.size}x{self.size} crop (prepare the images with "
                                                    "`dctnet prepare --short-side`)")
                    path = "dct-resized"      # resampled in the DCT domain below (no decode)
            except (JPEGError, OSError) as e:
                errors[i] = _as_jpeg_error(e, img.source)
                continue
            except ValueError as e:  # e.g. CMYK: not convertible to the layout
                errors[i] = _as_jpeg_error(e, img.source)
                continue
            ready.append(img)
            ok.append(i)
            paths[i] = path
        if not ready:
            return Batch(None, errors, paths)
        resampler = "triton" if self.device.type == "cuda" else "numba"
        small = [k for k, i in enumerate(ok) if paths[i] == "dct-resized"]
        if self.resamples:
            geometry = self._geometry(seed) if self.train else {"crop": "center"}
            x = to_tensor(ready, self.layout, size=self.size, resize=self.resize, backend=resampler,
                          device=self.device, **geometry)
        elif small:   # exact crops, and the images smaller than the crop resampled: shorter side to the crop
            exact = [k for k in range(len(ready)) if k not in set(small)]
            x_small = to_tensor([ready[k] for k in small], self.layout, size=self.size, resize=self.size,
                                crop="center", backend=resampler, device=self.device)
            x_exact = to_tensor([ready[k] for k in exact], self.layout, size=self.size, backend=self.backend,
                                device=self.device, **self._geometry(seed)) if exact else None
            x = tuple(torch.empty((len(ready),) + tuple(t.shape[1:]), dtype=t.dtype, device=t.device)
                      for t in _parts(x_small))
            for k, part in enumerate(x):
                part[small] = _parts(x_small)[k]
                if x_exact is not None:
                    part[exact] = _parts(x_exact)[k]
            x = x if isinstance(x_small, tuple) else x[0]
        else:
            x = to_tensor(ready, self.layout, size=self.size, backend=self.backend, device=self.device,
                          **self._geometry(seed))
        if len(ok) < n:  # one row per source, failed rows zero
            full = tuple(torch.zeros((n,) + tuple(t.shape[1:]), dtype=t.dtype, device=t.device) for t in _parts(x))
            for part, src in zip(full, _parts(x)):
                part[ok] = src
            x = full if isinstance(x, tuple) else full[0]
        return Batch(x, errors, paths)

    def _fits(self, img: DCTImage) -> bool:
        """Whether the crop fits in the image (``ValueError`` for images no layout can take)."""
        h, w = usable_size(img, self.layout)
        return h >= self.size and w >= self.size


def _parts(x) -> tuple:
    return x if isinstance(x, tuple) else (x,)


@functools.lru_cache(maxsize=128)
def _cached_versions(data: bytes, qfs: tuple[int, ...], name: str) -> tuple[bytes, ...]:
    # cached: training reads the same files every epoch, `dctnet eval` hands a file to several models
    rgb = decode_rgb(data, name=name)
    return tuple(encode_jpeg(rgb, q, subsampling="420") for q in qfs)


def jpeg_versions(data: bytes, qfs: Sequence[int], *, name: str = "<bytes>") -> tuple[bytes, ...]:
    """The re-encodings of one JPEG at each quality in ``qfs``: the file decoded
    (:func:`dctnet.imaging.decode_rgb`) and encoded by :func:`dctnet.imaging.encode_jpeg` at 4:2:0,
    byte for byte `dctnet eval`'s ``qf<Q>`` versions. Raises :class:`~dctnet.JPEGError` naming ``name``."""
    return _cached_versions(bytes(data), tuple(int(q) for q in qfs), name)


class VersionsPipeline(Pipeline):
    """Each file and its re-encodings at ``qfs`` through ``inner`` (the backbone's pipeline).

    Args:
        inner: the backbone's :class:`RGBPipeline` or :class:`DCTPipeline` (evaluation geometry).
        qfs: the re-encoding qualities (``V = len(qfs) + 1`` versions, the original first).
        threads: decoding / encoding threads (default: all cores).

    ``pipeline(srcs)`` gives ``Batch(inputs, errors, paths)``: inputs ``float32 (B, V, C, h, w)``
    (a tuple of such for late-concat layouts); an item fails (rows zero) when its file or any
    of its versions fails, its error naming the source (and the version); paths
    ``"versions-<inner path of the original>"``.
    """

    def __init__(self, inner: Pipeline, qfs: Sequence[int], *, threads: int | None = None):
        if isinstance(inner, VersionsPipeline):
            raise ValueError("a VersionsPipeline cannot wrap another")
        self.inner, self.qfs = inner, tuple(int(q) for q in qfs)
        self.kind = inner.kind
        self.threads = threads or os.cpu_count() or 1
        self.preprocess = getattr(inner, "preprocess", None)

    def __repr__(self) -> str:
        return f"VersionsPipeline({self.inner!r}, qfs={list(self.qfs)})"

    def _versions(self, src: Source, name: str) -> list[bytes]:
        if isinstance(src, DCTImage):
            raise JPEGError(name, "a model of several versions re-encodes JPEG files; pass the file, not a DCTImage")
        data, _ = read_bytes(src, name)
        data = bytes(data)
        return [data, *jpeg_versions(data, self.qfs, name=name)]

    def __call__(self, srcs: Sequence[Source], *, offset: int = 0, seed: int | None = None) -> Batch:
        srcs = list(srcs)
        n, v = len(srcs), len(self.qfs) + 1
        names = [source_name(s, offset + i) for i, s in enumerate(srcs)]
        errors: list = [None] * n

        def make(i: int):
            try:
                return self._versions(srcs[i], names[i])
            except (JPEGError, OSError, ValueError) as e:
                errors[i] = _as_jpeg_error(e, names[i])
                return None

        with ThreadPoolExecutor(max(1, min(self.threads, n))) as pool:
            made = list(pool.map(make, range(n)))
        ok = [i for i in range(n) if made[i] is not None]
        paths: list = [None] * n
        if not ok:
            return Batch(None, errors, paths)
        batch = self.inner([blob for i in ok for blob in made[i]], seed=seed)
        labels = ["original"] + [f"qf{q}" for q in self.qfs]
        good = []
        for j, i in enumerate(ok):
            bad = [(labels[k], batch.errors[j * v + k]) for k in range(v) if batch.errors[j * v + k] is not None]
            if bad:
                which, e = bad[0]
                errors[i] = JPEGError(names[i], f"{which} version: {getattr(e, 'reason', e)}")
            else:
                good.append(j)
                paths[i] = f"versions-{batch.paths[j * v]}"
        if not good:
            return Batch(None, errors, paths)
        rows = [ok[j] for j in good]
        parts = []
        for t in _parts(batch.inputs):
            t = t.reshape(len(ok), v, *t.shape[1:])
            full = (torch.zeros if isinstance(t, torch.Tensor) else np.zeros)((n, v) + tuple(t.shape[2:]),
                                                                                dtype=t.dtype)
            full[rows] = t[good]
            parts.append(full)
        inputs = tuple(parts) if isinstance(batch.inputs, tuple) else parts[0]
        return Batch(inputs, errors, paths)
