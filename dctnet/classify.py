"""The inference API: JPEG files in, top-k classes out, with DCT, RGB or ONNX models.

    clf = dctnet.Classifier("resnet50_dct_fbs16", weights="fbs16.pt")
    for pred in clf.predict(["a.jpg", "b.jpg"], topk=5):
        print(pred.source, pred.path, pred[:1])     # [(class_index, class_name, probability)]

What each kind of model gets:

* DCT models (``model.layout`` is a :class:`~dctnet.ops.DCTLayout`): coefficients read with
  :func:`~dctnet.read_dct_batch` on all cores, centre-cropped on block boundaries to the
  model's input size, rearranged by :func:`~dctnet.ops.to_tensor` (on CPU both at once:
  :func:`~dctnet.ops.read_to_tensor`, each file gathered by the thread that decoded it;
  the same numbers). Images smaller than the
  crop take the documented fallback: decode, resize the shorter side to the crop size
  (Pillow bilinear), re-encode at the file's own estimated quality (IJG scaling; 95 when
  the tables are not IJG-scaled), 4:2:0, then read and crop as above. Each
  :class:`Prediction` says which path it took (``"dct"`` or ``"dct-resized"``).
* RGB torch models: :class:`~dctnet.data.rgb.RGBPreprocess` (decode, resize the shorter
  side to 256, centre crop, normalise) with the model's own mean and std (``"rgb"``).
* ONNX classifiers (``model="path/to/model.onnx"``): onnxruntime on CPU after a declared
  RGB preprocessing (default: ImageNet's, what the shared MobileNetV2 expects) (``"onnx"``).

Input preparation of batch k+1 runs on a background thread while the model runs on batch k
(the reader, the numba rearrangement and torch all release the GIL).
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence, Union

import numpy as np
import torch

from .codec import DCTImage, JPEGError, JPEGSource, read_dct, read_dct_batch

__all__ = ["Classifier", "Prediction", "load_labels"]

Source = Union[JPEGSource, DCTImage]


class Prediction(list):
    """Top-k classes of one image: a list of ``(class_index, class_name, probability)``,
    most probable first.

    Attributes:
        source: the image's path, ``"<bytes #i>"`` or a DCTImage's source.
        path: how the input was prepared: ``"dct"``, ``"dct-resized"`` (too small for the
            crop: resized and re-encoded first), ``"rgb"`` or ``"onnx"``; ``None`` on error.
        error: the exception that stopped this image (the list is then empty), else ``None``.
    """

    def __init__(self, items: Iterable = (), *, source: str, path: str | None, error: Exception | None = None):
        super().__init__(items)
        self.source = source
        self.path = path
        self.error = error

    def __repr__(self) -> str:
        if self.error is not None:
            return f"Prediction({self.source!r}, error={self.error!r})"
        return f"Prediction({self.source!r}, path={self.path!r}, {list.__repr__(self)})"


def load_labels(labels: str | os.PathLike | Sequence[str] | None, num_classes: int) -> list[str]:
    """Class names: a list as given, a file (TSV ``synset<TAB>name`` or one name per line),
    or ``None`` for ImageNet's 1000 classes (shipped with dctnet)."""
    if labels is None:
        from .data.datasets import imagenet_classes

        names = list(imagenet_classes().names)
    elif isinstance(labels, (str, os.PathLike)):
        from .data.datasets import load_class_list

        names = list(load_class_list(labels).names)
    else:
        names = [str(n) for n in labels]
    if len(names) != num_classes:
        raise ValueError(f"{len(names)} class names for a model with {num_classes} outputs")
    return names


def _source_name(src: Source, index: int) -> str:
    if isinstance(src, DCTImage):
        return src.source
    if isinstance(src, (str, os.PathLike)):
        return os.fsdecode(src)
    return f"<bytes #{index}>"


@dataclass
class _Prepared:
    inputs: object                 # tensor(s) for torch models, float32 array for ONNX
    ok: list[int]                  # positions in the batch that have an input row
    paths: list[str | None]
    errors: list[Exception | None]


def _build_named(name: str, weights):
    """``create_model(name)`` with ``weights``; a dctnet checkpoint also gives the builder options
    and the number of classes it was trained with (e.g. a 10-class model from `dctnet train`)."""
    from .models import create_model, load_checkpoint, load_model

    if weights is None:
        return create_model(name)
    ckpt = load_checkpoint(weights)
    if ckpt.model is not None:
        if ckpt.model != name:
            raise ValueError(f"{ckpt.source}: checkpoint is for model {ckpt.model!r}, not {name!r}")
        return load_model(ckpt)
    fc = ckpt.state_dict.get("fc.weight")
    return create_model(name, weights=ckpt, num_classes=int(fc.shape[0]) if fc is not None else 1000)


class Classifier:
    """Classify JPEGs with a DCT, RGB or ONNX model.

    Args:
        model: a registry name (``dctnet.models.list_models()``), a model built by
            ``dctnet.models.create_model``, or the path of an ``.onnx`` classifier.
        weights: local weights for a registry name (state dict or dctnet checkpoint). A DCT
            model without weights is untrained: ``trained`` is then False and its
            predictions mean nothing (``dctnet predict`` says so).
        device: ``"cpu"`` or ``"cuda"`` (torch models).
        dtype: ``torch.float32``, ``torch.float16`` or ``torch.bfloat16`` for the model.
        batch_size: images per forward pass.
        compile: wrap the model in ``torch.compile``.
        labels: class names (list, TSV/text file); default: the checkpoint's, else ImageNet's.
        threads: reader / preprocessing threads (default: all cores).
        backend: ``to_tensor`` backend for DCT models (``"auto"``: Triton on CUDA, numba on CPU,
            where files are read with ``read_to_tensor``; ``"numba"`` likewise).
        preprocess: RGB models and ONNX: a :class:`~dctnet.data.rgb.RGBPreprocess` to use
            instead of the default.
    """

    def __init__(self, model, *, weights=None, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 batch_size: int = 64, compile: bool = False, labels=None, threads: int | None = None,
                 backend: str = "auto", preprocess=None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, not {batch_size}")
        if dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(f"dtype must be torch.float32, float16 or bfloat16, not {dtype}")
        self.device = torch.device(device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("device='cuda' requested but torch.cuda.is_available() is False "
                               f"(torch {torch.__version__})")
        self.dtype = dtype
        self.batch_size = int(batch_size)
        self.threads = threads or os.cpu_count() or 1
        self.backend = backend
        self.onnx = None
        self.trained = True
        if isinstance(model, (str, os.PathLike)) and os.fspath(model).lower().endswith(".onnx"):
            from .evaluate.predictors import OnnxPredictor

            if self.device.type != "cpu" or dtype != torch.float32 or compile:
                raise ValueError("ONNX classifiers run with onnxruntime on CPU in float32 "
                                 "(device, dtype and compile do not apply)")
            self.onnx = OnnxPredictor(model, preprocess=preprocess, threads=self.threads, batch_size=self.batch_size)
            self.kind, self.name, self.num_classes = "onnx", self.onnx.name, self.onnx.num_classes
            self.class_names = load_labels(labels, self.num_classes)
            self.model = None
            return

        if isinstance(model, str):
            net = _build_named(model, weights)
            self.trained = weights is not None
        elif isinstance(model, torch.nn.Module):
            if weights is not None:
                from .models import load_weights

                load_weights(model, weights)
            net = model
        else:
            raise TypeError(f"model must be a registry name, an nn.Module or an .onnx path, not {type(model).__name__}")
        self.name = getattr(net, "model_name", type(net).__name__)
        self.layout = getattr(net, "layout", None)
        self.kind = "dct" if self.layout is not None else "rgb"
        config = net.input_config
        self.image_size = tuple(config.image_size)
        if self.image_size[0] != self.image_size[1]:
            raise ValueError(f"{self.name}: only square inputs are supported, not {self.image_size}")
        self.num_classes = int(net.fc.out_features) if hasattr(net, "fc") else None
        names = labels if labels is not None else getattr(net, "class_names", None)
        self.class_names = load_labels(names, self.num_classes)
        if self.kind == "rgb":
            from .data.rgb import RGBPreprocess

            crop = self.image_size[0]
            self.preprocess = preprocess or RGBPreprocess(resize=round(crop * 256 / 224), crop=crop,
                                                          mean=tuple(config.mean), std=tuple(config.std))
        net = net.eval().to(device=self.device, dtype=dtype)
        self.model = torch.compile(net) if compile else net

    def __repr__(self) -> str:
        return f"Classifier({self.name!r}, kind={self.kind}, device={self.device}, dtype={self.dtype})"

    # --- input preparation -------------------------------------------------------------

    def _read(self, srcs: Sequence[Source]) -> list[DCTImage | Exception]:
        to_read = [i for i, s in enumerate(srcs) if not isinstance(s, DCTImage)]
        out: list[DCTImage | Exception] = list(srcs)
        if to_read:
            read = read_dct_batch([srcs[i] for i in to_read], threads=self.threads, on_error="return")
            for i, r in zip(to_read, read):
                out[i] = r
        return out

    def _fits(self, img: DCTImage) -> bool:
        """Whether the model's centre crop fits in the image (else the resize fallback).

        Raises ``ValueError`` for images no layout can take (e.g. CMYK)."""
        from .ops import usable_size

        h, w = usable_size(img, self.layout)
        return h >= self.image_size[0] and w >= self.image_size[1]

    def _resized(self, img: DCTImage, src: Source) -> DCTImage:
        """The documented fallback for images smaller than the crop."""
        import simplejpeg

        from .data.rgb import decode_rgb, resize_shorter

        if isinstance(src, DCTImage):
            raise JPEGError(img.source, f"{img.width}x{img.height} is smaller than the model's "
                                        f"{self.image_size[0]}x{self.image_size[1]} crop; pass the file, "
                                        "not a DCTImage, to allow resizing")
        if isinstance(src, (bytes, bytearray, memoryview)):
            data = src
        else:
            with open(os.fspath(src), "rb") as f:
                data = f.read()
        size = self.image_size[0]
        rgb = resize_shorter(decode_rgb(data, name=img.source), size)
        quality = img.quality
        quality = 95 if quality is None else int(round(min(max(quality, 1), 100)))
        jpeg = simplejpeg.encode_jpeg(np.ascontiguousarray(rgb), quality=quality, colorspace="RGB",
                                      colorsubsampling="420")
        out = read_dct(jpeg)
        return DCTImage(**{**out.__dict__, "source": img.source})

    def _prepare(self, srcs: Sequence[Source], offset: int = 0) -> _Prepared:
        """Inputs for one batch; ``offset`` is the batch's position in the whole request
        (it names byte inputs ``<bytes #i>`` in errors)."""
        n = len(srcs)
        errors: list[Exception | None] = [None] * n
        paths: list[str | None] = [None] * n
        if self.kind in ("rgb", "onnx"):
            preprocess = self.onnx.preprocess if self.kind == "onnx" else self.preprocess
            batch, errs = preprocess.batch(list(srcs), threads=self.threads, on_error="return")
            ok = [i for i, e in enumerate(errs) if e is None]
            for i, e in enumerate(errs):
                errors[i] = e
                paths[i] = self.kind if e is None else None
            x = batch[ok] if ok else None
            if self.kind == "rgb" and x is not None:
                x = torch.from_numpy(x)
        elif self._fused_read_applies(srcs):
            x, ok = self._prepare_fused(srcs, errors, paths)
        else:
            x, ok = self._prepare_dct(srcs, errors, paths)
        for i, e in enumerate(errors):  # name byte inputs by their position in the request
            if isinstance(e, JPEGError) and e.source.startswith("<bytes"):
                errors[i] = JPEGError(f"<bytes #{offset + i}>", e.reason)
        return _Prepared(x, ok, paths, errors)

    def _prepare_dct(self, srcs: Sequence[Source], errors: list, paths: list):
        """DCT inputs via read_dct_batch (or given DCTImages) + to_tensor; fills ``errors`` and
        ``paths``; returns ``(inputs or None, ok)``."""
        images = self._read(srcs)
        ready: list[DCTImage] = []
        ok = []
        for i, img in enumerate(images):
            if isinstance(img, Exception):
                errors[i] = img
                continue
            path = "dct"
            try:
                if not self._fits(img):
                    img, path = self._resized(img, srcs[i]), "dct-resized"
            except (JPEGError, OSError) as e:
                errors[i] = e
                continue
            except ValueError as e:  # e.g. CMYK: not convertible to the layout
                errors[i] = JPEGError(img.source, str(e).removeprefix(f"{img.source}: "))
                continue
            ready.append(img)
            ok.append(i)
            paths[i] = path
        x = None
        if ready:
            from .ops import to_tensor

            # On CUDA the rearrangement runs on the GPU (Triton) from the int16 blocks.
            x = to_tensor(ready, self.layout, crop="center", size=self.image_size[0], backend=self.backend,
                          device=self.device)
        return x, ok

    def _fused_read_applies(self, srcs: Sequence[Source]) -> bool:
        return (self.device.type == "cpu" and self.backend in ("auto", "numba")
                and not any(isinstance(s, DCTImage) for s in srcs))

    def _prepare_fused(self, srcs: Sequence[Source], errors: list, paths: list):
        """CPU DCT inputs with :func:`~dctnet.ops.read_to_tensor` (each file gathered by the reader
        thread that decoded it); files it cannot take (smaller than the crop: the resize
        fallback; not YCbCr/gray: the error) go through :meth:`_prepare_dct`."""
        from .ops import read_to_tensor

        size = self.image_size[0]
        fused, errs = read_to_tensor(list(srcs), self.layout, size=size, crop="center", threads=self.threads,
                                     on_error="return")
        good = [i for i, e in enumerate(errs) if e is None]
        redo = [i for i, e in enumerate(errs) if isinstance(e, ValueError) and not isinstance(e, JPEGError)]
        for i, e in enumerate(errs):
            if e is None:
                paths[i] = "dct"
            elif i not in redo:
                errors[i] = e
        rows = {i: (fused, i) for i in good}
        if redo:
            sub_errors: list = [None] * len(redo)
            sub_paths: list = [None] * len(redo)
            sub_x, sub_ok = self._prepare_dct([srcs[i] for i in redo], sub_errors, sub_paths)
            for j, i in enumerate(redo):
                errors[i], paths[i] = sub_errors[j], sub_paths[j]
            rows.update({redo[j]: (sub_x, r) for r, j in enumerate(sub_ok)})
        ok = sorted(rows)
        if not ok:
            return None, ok
        if len(ok) == len(srcs) and not redo:
            return fused, ok

        def take(part: int):
            return torch.stack([(src[part] if isinstance(src, tuple) else src)[r] for src, r in (rows[i] for i in ok)])

        x = tuple(take(p) for p in range(len(fused))) if isinstance(fused, tuple) else take(0)
        return x, ok

    # --- running -------------------------------------------------------------------------

    def _forward(self, prepared: _Prepared) -> np.ndarray | None:
        """Logits ``float32 (len(ok), num_classes)`` for the prepared rows."""
        if not prepared.ok:
            return None
        if self.kind == "onnx":
            return self.onnx.run(prepared.inputs)
        x = prepared.inputs
        xs = x if isinstance(x, tuple) else (x,)
        xs = tuple(t.to(self.device, self.dtype, non_blocking=True) for t in xs)
        with torch.inference_mode():
            out = self.model(*xs)
        return out.float().cpu().numpy()

    def _batches(self, srcs: Sequence[Source]) -> Iterator[tuple[int, _Prepared, np.ndarray | None]]:
        starts = list(range(0, len(srcs), self.batch_size))
        if not starts:
            return
        with ThreadPoolExecutor(1, thread_name_prefix="dctnet-prepare") as pool:
            pending: Future = pool.submit(self._prepare, srcs[starts[0]:starts[0] + self.batch_size], starts[0])
            for k, start in enumerate(starts):
                prepared = pending.result()
                if k + 1 < len(starts):  # overlap: prepare the next batch while this one runs
                    nxt = starts[k + 1]
                    pending = pool.submit(self._prepare, srcs[nxt:nxt + self.batch_size], nxt)
                yield start, prepared, self._forward(prepared)

    def predict_logits(self, srcs: Sequence[Source]) -> tuple[np.ndarray, list[Exception | None], list[str | None]]:
        """Logits for every image.

        Returns ``(logits float32 (N, num_classes), errors, paths)``: a failed image's row
        is NaN and ``errors[i]`` holds its exception; ``paths[i]`` says how image i was
        prepared (see :class:`Prediction`).
        """
        srcs = list(srcs)
        n = len(srcs)
        logits = np.full((n, self.num_classes), np.nan, np.float32)
        errors: list[Exception | None] = [None] * n
        paths: list[str | None] = [None] * n
        for start, prepared, out in self._batches(srcs):
            for j, i in enumerate(prepared.ok):
                logits[start + i] = out[j]
            for i, (e, p) in enumerate(zip(prepared.errors, prepared.paths)):
                errors[start + i], paths[start + i] = e, p
        return logits, errors, paths

    def predict(self, srcs: Sequence[Source] | Source, topk: int = 5) -> list[Prediction]:
        """Top-k classes of each image.

        Args:
            srcs: JPEG paths, bytes, or DCTImages (DCT models), or one of them.
            topk: how many classes per image.

        Returns:
            One :class:`Prediction` per image, in input order: ``[(class_index, class_name,
            probability), ...]`` most probable first (softmax probabilities), with ``path``
            and ``error``. A bad file gets an empty Prediction with ``error`` set; the other
            images are unaffected.
        """
        if isinstance(srcs, (str, os.PathLike, bytes, bytearray, memoryview, DCTImage)):
            srcs = [srcs]
        srcs = list(srcs)
        if not 1 <= topk <= self.num_classes:
            raise ValueError(f"topk must be in 1..{self.num_classes}, not {topk}")
        logits, errors, paths = self.predict_logits(srcs)
        out = []
        for i, src in enumerate(srcs):
            name = _source_name(src, i)
            if errors[i] is not None:
                out.append(Prediction(source=name, path=None, error=errors[i]))
                continue
            z = logits[i].astype(np.float64)
            p = np.exp(z - z.max())
            p /= p.sum()
            top = np.argsort(-p, kind="stable")[:topk]
            out.append(Prediction([(int(c), self.class_names[c], float(p[c])) for c in top], source=name,
                                  path=paths[i]))
        return out
