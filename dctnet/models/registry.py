"""Name -> builder registry of every model dctnet knows (timm style).

``@register_model`` adds a builder under its function name; ``list_models()`` lists the
names, optionally filtered; ``model_builder(name)`` gives the builder. Models are built
(and their weights loaded) by :func:`dctnet.models.resolve` / ``create_model``
(``dctnet/models/bundle.py``), the one place that does it.
"""

from __future__ import annotations

import difflib
import fnmatch
from typing import Callable

__all__ = ["register_model", "list_models", "is_model", "model_builder"]

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
        close = difflib.get_close_matches(name, list(_MODELS), n=5)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see dctnet.models.list_models()"
        raise KeyError(f"unknown model {name!r}{hint}") from None


def _ensure_loaded() -> None:
    # The builders register themselves when their modules are imported, and they import this
    # module (register_model), so the registry imports them on first use, not at its top.
    from . import convert, resnet, resnet_dct, small  # noqa: F401
