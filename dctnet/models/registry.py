"""Name -> builder registry of every model dctnet knows (timm style).

``@register_model`` adds a builder under its function name; ``list_models()`` lists the
names, optionally filtered; ``model_builder(name)`` gives the builder. Models are built
(and their weights loaded) by :func:`dctnet.models.resolve` / ``create_model``
(``dctnet/models/resolve.py``), the one place that does it.

A builder may declare default weights (timm's ``pretrained_cfg`` idea, one callable instead
of a config): ``register_model(builder, default_weights=fn)`` with ``fn(**options)`` (the
builder options :func:`~dctnet.models.resolve` was given) returning a local file or a
loaded :class:`~dctnet.models.Checkpoint`. ``resolve(name)`` with ``weights=None`` loads
them; ``weights=False`` builds the model untrained. Builders never load weights themselves.
"""

from __future__ import annotations

import difflib
import fnmatch
from typing import Callable

__all__ = ["register_model", "list_models", "is_model", "model_builder", "default_weights"]

_MODELS: dict[str, Callable] = {}
_DEFAULT_WEIGHTS: dict[str, Callable] = {}


def register_model(fn: Callable | None = None, *, name: str | None = None, default_weights: Callable | None = None):
    """Register ``fn`` (a builder ``fn(**kwargs) -> nn.Module``) under ``name`` or ``fn.__name__``.

    Usable as ``@register_model``, ``@register_model(default_weights=...)`` or
    ``register_model(builder, name="...", default_weights=...)``. ``default_weights``:
    ``fn(**options) -> path | Checkpoint | None``, the weights ``resolve(name)`` loads when given
    none (see the module docstring; ``None``: none for these options); it may raise (missing package, damaged file) with a message
    naming the file.
    """
    if default_weights is not None and not callable(default_weights):
        raise TypeError(f"default_weights must be a callable returning a path or Checkpoint, not "
                        f"{type(default_weights).__name__}")

    def add(f: Callable) -> Callable:
        key = name or f.__name__
        if key in _MODELS:
            raise ValueError(f"model {key!r} is already registered")
        _MODELS[key] = f
        if default_weights is not None:
            _DEFAULT_WEIGHTS[key] = default_weights
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


def default_weights(name: str) -> Callable | None:
    """The default-weights callable registered with model ``name`` (``None`` if it has none)."""
    model_builder(name)  # KeyError with close matches for unknown names
    return _DEFAULT_WEIGHTS.get(name)


def _ensure_loaded() -> None:
    # The builders register themselves when their modules are imported, and they import this
    # module (register_model), so the registry imports them on first use, not at its top.
    from . import convert, efficientnet, multiqf, resnet, resnet_dct, small  # noqa: F401
