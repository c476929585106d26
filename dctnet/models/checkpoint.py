"""The one checkpoint format of dctnet (training, evaluation, conversion all use it).

A dctnet checkpoint is a ``torch.save``d dict readable with ``torch.load(weights_only=True)``::

    {"format": "dctnet-checkpoint", "version": 1,
     "model": "resnet50_dct_fbs16",          # registry name
     "model_kwargs": {...},                   # builder options (JSON-like values)
     "state_dict": {...},                     # tensors
     "layout": DCTLayout.to_dict() | None,    # DCT input layout incl. normalisation stats
     "normalization": {"mean": [...], "std": [...]} | None,   # RGB input normalisation
     "class_names": [...] | None,
     "extra": {...}}                          # free-form (epoch, metrics, ...)

A plain state dict (e.g. torchvision's) is accepted wherever a checkpoint is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from ..ops.layout import DCTLayout

__all__ = ["Checkpoint", "save_checkpoint", "load_checkpoint", "read_state_dict", "load_weights"]

FORMAT = "dctnet-checkpoint"
VERSION = 1


@dataclass
class Checkpoint:
    """A loaded checkpoint. ``model`` etc. are ``None`` for a plain state dict."""

    state_dict: dict[str, torch.Tensor]
    model: str | None = None
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    layout: DCTLayout | None = None
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    class_names: list[str] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    source: str = "<memory>"


def save_checkpoint(path, model, *, class_names=None, layout: DCTLayout | None = None, model_name: str | None = None,
                    model_kwargs: dict | None = None, extra: dict | None = None) -> None:
    """Write ``model``'s weights and everything evaluation needs to ``path``.

    Args:
        model: a model from ``create_model`` (its ``model_name``, ``layout``,
            ``input_config`` and ``class_names`` are recorded unless overridden here).
        class_names: list of str, one per output.
        layout: the DCT input layout with its normalisation statistics (default ``model.layout``).
        model_name: registry name (default ``model.model_name``).
        model_kwargs: builder options needed to rebuild the model (``bands``, ``stride_in_1x1``...;
            default ``model.model_kwargs``, which ``create_model`` records).
        extra: free-form JSON-like data.
    """
    name = model_name or getattr(model, "model_name", None)
    if name is None:
        raise ValueError("save_checkpoint needs a model_name (the model was not built by create_model)")
    layout = layout if layout is not None else getattr(model, "layout", None)
    class_names = class_names if class_names is not None else getattr(model, "class_names", None)
    if class_names is not None:
        class_names = [str(c) for c in class_names]
        if hasattr(model, "fc") and len(class_names) != model.fc.out_features:
            raise ValueError(f"{len(class_names)} class names for a model with {model.fc.out_features} outputs")
    cfg = getattr(model, "input_config", None)
    normalization = None
    if cfg is not None and cfg.mean is not None:
        normalization = {"mean": list(cfg.mean), "std": list(cfg.std)}
    payload = {
        "format": FORMAT, "version": VERSION, "model": name,
        "model_kwargs": dict(model_kwargs if model_kwargs is not None else getattr(model, "model_kwargs", None) or {}),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "layout": layout.to_dict() if layout is not None else None,
        "normalization": normalization, "class_names": class_names, "extra": dict(extra or {}),
    }
    tmp = f"{os.fspath(path)}.tmp"
    torch.save(payload, tmp)
    os.replace(tmp, path)  # never leave a half-written checkpoint under the real name


def load_checkpoint(source) -> Checkpoint:
    """Read a dctnet checkpoint or a plain state dict from a path (or an already loaded dict).

    Raises:
        FileNotFoundError: no such file.
        ValueError: the file is not a state dict / checkpoint (message names the file).
    """
    if isinstance(source, Checkpoint):
        return source
    name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else "<memory>"
    if isinstance(source, dict):
        obj = source
    else:
        if not os.path.exists(name):
            raise FileNotFoundError(f"weights file not found: {name}")
        try:
            obj = torch.load(name, map_location="cpu", weights_only=True)
        except Exception as exc:  # pickle errors, zip errors, ...: say which file
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]  # torch's messages run long
            raise ValueError(f"{name}: cannot read as a PyTorch state dict or dctnet checkpoint "
                             f"({type(exc).__name__}: {first})") from exc
    if not isinstance(obj, dict):
        raise ValueError(f"{name}: expected a state dict or dctnet checkpoint, found {type(obj).__name__}")
    if obj.get("format") == FORMAT:
        if obj.get("version", 0) > VERSION:
            raise ValueError(f"{name}: checkpoint version {obj['version']} is newer than this dctnet reads ({VERSION})")
        norm = obj.get("normalization") or {}
        ckpt = Checkpoint(state_dict=obj["state_dict"], model=obj.get("model"), model_kwargs=obj.get("model_kwargs") or {},
                          layout=DCTLayout.from_dict(obj["layout"]) if obj.get("layout") else None,
                          mean=tuple(norm["mean"]) if norm.get("mean") else None,
                          std=tuple(norm["std"]) if norm.get("std") else None,
                          class_names=obj.get("class_names"), extra=obj.get("extra") or {}, source=name)
    else:
        if "state_dict" in obj and isinstance(obj["state_dict"], dict):  # common training-script wrapper
            obj = obj["state_dict"]
        ckpt = Checkpoint(state_dict=obj, source=name)
    bad = [k for k, v in ckpt.state_dict.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"{name}: state dict entries that are not tensors: {bad[:5]}")
    return ckpt


def read_state_dict(source) -> dict[str, torch.Tensor]:
    """The state dict of a checkpoint / plain state dict (path or dict)."""
    return load_checkpoint(source).state_dict


def load_weights(model, source) -> Checkpoint:
    """Load ``source`` into ``model`` (``strict=True``) and attach its metadata.

    The checkpoint's layout (if any) replaces ``model.layout`` after checking it describes the
    same input (kind and bands); its RGB normalisation replaces ``model.input_config``'s and its
    class names are set as ``model.class_names``.

    Raises:
        ValueError: checkpoint for another model, another layout, or keys/shapes that differ
            (message names the file and the first differing keys).
    """
    ckpt = load_checkpoint(source)
    name = getattr(model, "model_name", None)
    if ckpt.model is not None and name is not None and ckpt.model != name:
        raise ValueError(f"{ckpt.source}: checkpoint is for model {ckpt.model!r}, not {name!r}")
    own = model.state_dict()
    missing = [k for k in own if k not in ckpt.state_dict]
    unexpected = [k for k in ckpt.state_dict if k not in own]
    shapes = [k for k in own if k in ckpt.state_dict and tuple(own[k].shape) != tuple(ckpt.state_dict[k].shape)]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys (e.g. {unexpected[:3]})")
        if shapes:
            k = shapes[0]
            parts.append(f"{len(shapes)} shape mismatches (e.g. {k}: file {tuple(ckpt.state_dict[k].shape)}, "
                         f"model {tuple(own[k].shape)})")
        raise ValueError(f"{ckpt.source}: weights do not fit {name or type(model).__name__}: " + "; ".join(parts))
    model.load_state_dict(ckpt.state_dict, strict=True)
    if ckpt.layout is not None:
        current = getattr(model, "layout", None)
        if current is None:
            raise ValueError(f"{ckpt.source}: checkpoint has a DCT layout but {name} is an RGB model")
        if (current.kind, current.band_indices()) != (ckpt.layout.kind, ckpt.layout.band_indices()):
            raise ValueError(f"{ckpt.source}: checkpoint layout {ckpt.layout.kind}/{ckpt.layout.bands} differs from "
                             f"the model's {current.kind}/{current.bands}")
        model.layout = ckpt.layout
    if ckpt.mean is not None and getattr(model, "input_config", None) is not None:
        model.input_config = replace(model.input_config, mean=ckpt.mean, std=ckpt.std)
    if ckpt.class_names is not None:
        model.class_names = list(ckpt.class_names)
    return ckpt
