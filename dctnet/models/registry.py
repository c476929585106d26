"""Name -> builder registry of every model dctnet knows (timm style).

``@register_model`` adds a builder under its function name; ``create_model(name, ...)``
builds it, drops keyword arguments that are ``None`` (so command-line defaults never
override a model's own defaults), optionally loads weights from a local file and records
the model's name on it. ``list_models()`` lists the names, optionally filtered.
"""

from __future__ import annotations

import fnmatch
from typing import Callable

__all__ = ["register_model", "create_model", "list_models", "is_model", "model_builder"]

_MODELS: dict[str, Callable] = {}


def register_model(fn: Callable | None = None, *, name: str | None = None):
    """Register ``fn`` (a builder ``fn(**kwargs) -> nn.Module``) under ``name`` or ``fn.__name__``.

    Usable as ``@register_model`` or ``register_model(builder, name="...")``.
    """
    def add(f: Callable) -> Callable:
        key = name or f.__name__
        if key in _MODELS:
            raise ValueError(f"model {key!r} is already registered")
        _MODELS[key] = f
        return f

    return add(fn) if fn is not None else add


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names (registration order), filtered by an fnmatch ``pattern`` if given."""
    _ensure_loaded()
    names = list(_MODELS)
    if pattern is not None:
        names = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
    return names


def is_model(name: str) -> bool:
    _ensure_loaded()
    return name in _MODELS


def model_builder(name: str) -> Callable:
    """The builder registered under ``name``; ``KeyError`` naming close matches otherwise."""
    _ensure_loaded()
    try:
        return _MODELS[name]
    except KeyError:
        import difflib
        close = difflib.get_close_matches(name, list(_MODELS), n=5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see dctnet.models.list_models()"
        raise KeyError(f"unknown model {name!r}{hint}") from None


def create_model(name: str, *, num_classes: int = 1000, weights=None, init_from_rgb=None, **kwargs):
    """Build the model registered as ``name``.

    Args:
        name: a name from ``list_models()``.
        num_classes: size of the classifier output.
        weights: ``None`` or a path to a local file holding a plain state dict or a dctnet
            checkpoint (see ``dctnet.models.save_checkpoint``). Loaded with ``strict=True``;
            a checkpoint's layout (normalisation statistics), input normalisation and class
            names are attached to the model, and a checkpoint of this model supplies its
            stored ``model_kwargs`` for options not given here.
        init_from_rgb: DCT models only: path to an RGB ResNet-50 state dict / checkpoint whose
            stages the DCT model shares are copied in (see ``init_from_rgb`` in
            ``dctnet.models.resnet_dct``).
        **kwargs: builder options (``stride_in_1x1``, ``bands``, ...). ``None`` values are
            dropped so that they never override a model's defaults.

    Returns:
        ``nn.Module`` with attributes ``model_name``, ``layout`` (``DCTLayout`` or ``None``
        for RGB models), ``input_config`` and ``class_names`` (``None`` unless loaded).
    """
    builder = model_builder(name)
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    if weights is not None:
        # A dctnet checkpoint of this very model records the builder options it needs (e.g. the
        # bands of a converted model): use them where the caller set nothing.
        from .checkpoint import load_checkpoint
        weights = load_checkpoint(weights)
        if weights.model == name:
            kwargs = {**weights.model_kwargs, **kwargs}
    model = builder(num_classes=num_classes, **kwargs)
    model.model_name = name
    if init_from_rgb is not None:
        if getattr(model, "layout", None) is None:
            raise ValueError(f"init_from_rgb is for DCT models; {name!r} is an RGB model (use weights=)")
        from .resnet_dct import init_from_rgb as _init
        _init(model, init_from_rgb)
    if weights is not None:
        from .checkpoint import load_weights
        load_weights(model, weights)
    return model


def _ensure_loaded() -> None:
    # The builders register themselves when their modules are imported.
    from . import resnet, resnet_dct, small  # noqa: F401
