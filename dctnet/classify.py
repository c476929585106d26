"""The inference API: JPEG files in, top-k classes out, with DCT, RGB or ONNX models.

    clf = dctnet.Classifier("resnet50_dct_fbs16", weights="fbs16.pt")
    for pred in clf.predict(["a.jpg", "b.jpg"], topk=5):
        print(pred.source, pred.path, pred[:1])     # [(class_index, class_name, probability)]

The Classifier is a thin loop: :func:`dctnet.models.resolve` gives the model's bundle (the
network and what its input is), ``bundle.pipeline(...)`` the input pipeline
(:mod:`dctnet.pipeline`: how each kind of model is fed, including the fallback for DCT
inputs smaller than the crop), and the loop prepares batch k+1 on a background thread
while the model runs on batch k (the reader, the numba rearrangement and torch all release
the GIL). :meth:`Classifier.prepare` and :meth:`Classifier.forward` are the two steps, public
so that `dctnet bench throughput` can time them apart.
"""

from __future__ import annotations

import os
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Iterable, Iterator, Sequence

import numpy as np
import torch

from .codec import DCTImage
from .data.datasets import imagenet_classes, load_class_list
from .imaging import RGBPreprocess
from .models import ModelBundle, resolve
from .models.convert import prefer_factored
from .pipeline import Batch, Source, source_name

__all__ = ["Classifier", "Prediction", "load_labels"]


class Prediction(list):
    """Top-k classes of one image: a list of ``(class_index, class_name, probability)``,
    most probable first.

    Attributes:
        source: the image's path, ``"<bytes #i>"`` or a DCTImage's source.
        path: how the input was prepared: ``"dct"``, ``"dct-resized"`` (a pipeline of exact
            block crops, the image too small for the crop: resampled in the DCT domain,
            shorter side to the crop), ``"rgb"`` or ``"onnx"``; ``None`` on error.
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
    or ``None`` for ImageNet's 1000 classes (shipped with dctnet).

    Raises ``ValueError`` (naming the file) when the count differs from ``num_classes``."""
    if labels is None:
        names, where = list(imagenet_classes().names), "ImageNet's"
    elif isinstance(labels, (str, os.PathLike)):
        names, where = list(load_class_list(labels).names), os.fsdecode(labels)
    else:
        names, where = [str(n) for n in labels], "the list given"
    if len(names) != num_classes:
        raise ValueError(f"{where}: {len(names)} class names for a model with {num_classes} outputs")
    return names


class Classifier:
    """Classify JPEGs with a DCT, RGB or ONNX model.

    Args:
        model: a registry name (``dctnet.models.list_models()``), a model built by
            ``dctnet.models.create_model``, a :class:`~dctnet.models.ModelBundle`, or the path of
            an ``.onnx`` classifier (see :func:`dctnet.models.resolve`).
        weights: local weights for a registry name (state dict or dctnet checkpoint);
            ``None``: the model's default weights if it has any (``efficientnet_lite0``,
            ``efficientnet_lite0_dct``), ``False``: none. A model without weights is
            untrained: ``trained`` is then False and its predictions mean nothing
            (``dctnet predict`` says so).
        device: ``"cpu"`` or ``"cuda"`` (torch models).
        dtype: ``torch.float32``, ``torch.float16`` or ``torch.bfloat16`` for the model.
        batch_size: images per forward pass.
        compile: wrap the model in ``torch.compile``.
        labels: class names (list, TSV/text file); default: the checkpoint's, else ImageNet's.
        threads: reader / preprocessing threads (default: all cores).
        backend: ``to_tensor`` backend for DCT models (``"auto"``: Triton on CUDA, numba on CPU,
            where files are read with ``read_to_tensor``; ``"numba"`` likewise).
        preprocess: RGB models and ONNX: a :class:`~dctnet.imaging.RGBPreprocess` to use
            instead of the default.
        channels_last: run a torch model on NHWC tensors (its weights converted, inputs made
            NHWC; the same numbers to float rounding, 1.2-1.4x faster on CPU). ``None``: for
            the models the Classifier builds itself on CPU; a module passed in is converted
            (in place) only with ``True``.
        **options: builder options for a registry name, passed to
            :func:`~dctnet.models.resolve` (e.g. ``Classifier("efficientnet_lite0_dct",
            bands=16)``).

    Attributes: ``bundle``, ``pipeline``, ``model``, ``kind`` (``"dct"``, ``"rgb"``,
    ``"onnx"``, ``"onnx-dct"``), ``name``, ``num_classes``, ``class_names``, ``image_size``, ``layout`` (DCT)
    or ``preprocess`` (RGB, ONNX), ``trained``.
    """

    def __init__(self, model, *, weights=None, device: str | torch.device = "cpu", dtype: torch.dtype = torch.float32,
                 batch_size: int = 64, compile: bool = False, labels=None, threads: int | None = None,
                 backend: str = "auto", preprocess: RGBPreprocess | None = None, channels_last: bool | None = None,
                 **options):
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
        onnx_path = isinstance(model, (str, os.PathLike)) and os.fspath(model).lower().endswith(".onnx")
        self.bundle = resolve(model, weights=weights, preprocess=preprocess if onnx_path else None,
                              threads=self.threads, **options)
        bundle = self.bundle
        is_onnx = bundle.kind in ("onnx", "onnx-dct")
        if is_onnx and (self.device.type != "cpu" or dtype != torch.float32 or compile):
            raise ValueError("ONNX classifiers run with onnxruntime on CPU in float32 "
                             "(device, dtype and compile do not apply)")
        self.kind, self.name, self.num_classes = bundle.kind, bundle.name, bundle.num_classes
        self.trained = bundle.trained or isinstance(model, (torch.nn.Module, ModelBundle)) or is_onnx
        self.image_size = (bundle.image_size, bundle.image_size)
        self.layout = bundle.input if bundle.kind in ("dct", "onnx-dct") else None
        self.class_names = load_labels(labels if labels is not None else bundle.class_names, self.num_classes)
        self.pipeline = bundle.pipeline(threads=self.threads, device=self.device, backend=backend,
                                        preprocess=None if is_onnx else preprocess)
        self.preprocess = getattr(self.pipeline, "preprocess", None)
        #: inputs go to the model as NHWC tensors (see below)
        self.channels_last = False
        if is_onnx:
            self.model = bundle.model
        else:
            net = bundle.model.eval().to(device=self.device, dtype=dtype)
            built_here = isinstance(model, (str, os.PathLike))
            if built_here:
                # a model this Classifier built (never the caller's module, which may be trained
                # later): converted first layers run factored where that is the same map
                prefer_factored(net)
            # on CPU oneDNN's convolutions, the depthwise ones above all, run 1.2-1.4x faster on
            # NHWC tensors (the same numbers to rounding)
            if channels_last or (channels_last is None and built_here and self.device.type == "cpu"):
                net = net.to(memory_format=torch.channels_last)
                self.channels_last = True
            self.model = torch.compile(net) if compile else net

    def __repr__(self) -> str:
        return f"Classifier({self.name!r}, kind={self.kind}, device={self.device}, dtype={self.dtype})"

    # --- the two steps -------------------------------------------------------------------

    def prepare(self, srcs: Sequence[Source], *, offset: int = 0) -> Batch:
        """Inputs for one batch (:class:`dctnet.pipeline.Batch`); ``offset`` is the batch's
        position in the whole request (it names byte inputs ``<bytes #i>`` in errors)."""
        return self.pipeline(list(srcs), offset=offset)

    def forward(self, batch: Batch) -> np.ndarray | None:
        """Logits ``float32 (len(batch.ok), num_classes)`` for the prepared rows (``None`` if none)."""
        ok = batch.ok
        if not ok:
            return None
        x = batch.inputs
        if len(ok) < len(batch.errors):  # run only the rows that have an input
            x = tuple(t[ok] for t in x) if isinstance(x, tuple) else x[ok]
        if self.kind == "onnx":
            return self.model(x)
        if self.kind == "onnx-dct":  # torch front end on CPU, then onnxruntime
            return self.model(*x)
        xs = x if isinstance(x, tuple) else (x,)
        xs = tuple(t.to(self.device, self.dtype, non_blocking=True) for t in xs)
        if self.channels_last:
            xs = tuple(t.contiguous(memory_format=torch.channels_last) if t.dim() == 4 else t for t in xs)
        with torch.inference_mode():
            out = self.model(*xs)
        return out.float().cpu().numpy()

    def _batches(self, srcs: Sequence[Source]) -> Iterator[tuple[int, Batch, np.ndarray | None]]:
        starts = list(range(0, len(srcs), self.batch_size))
        if not starts:
            return
        with ThreadPoolExecutor(1, thread_name_prefix="dctnet-prepare") as pool:
            pending: Future = pool.submit(self.prepare, srcs[starts[0]:starts[0] + self.batch_size], offset=starts[0])
            for k, start in enumerate(starts):
                batch = pending.result()
                if k + 1 < len(starts):  # overlap: prepare the next batch while this one runs
                    nxt = starts[k + 1]
                    pending = pool.submit(self.prepare, srcs[nxt:nxt + self.batch_size], offset=nxt)
                yield start, batch, self.forward(batch)

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
        for start, batch, out in self._batches(srcs):
            for j, i in enumerate(batch.ok):
                logits[start + i] = out[j]
            for i, (e, p) in enumerate(zip(batch.errors, batch.paths)):
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
            name = source_name(src, i)
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
