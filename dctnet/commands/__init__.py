"""Subcommands of `dctnet` (see dctnet/cli.py), and argument types they share."""

import argparse


def weights_argument(value: str | None):
    """``--weights`` value -> ``resolve``'s ``weights``: a path, ``None`` for the model's default
    weights (``default``, or no ``--weights`` at all), ``False`` for an untrained model (``none``)."""
    if value is None or value.lower() == "default":
        return None
    if value.lower() == "none":
        return False
    return value


def model_weights(models: list[str], weights: list[str]) -> list:
    """Pair ``--model`` with ``--weights`` (all or none given); ``ValueError`` otherwise."""
    if weights and len(weights) != len(models):
        raise ValueError(f"give one --weights per --model ('default' for the model's own, 'none' for untrained), "
                         f"got {len(models)} models and {len(weights)} weights")
    return [weights_argument(w) for w in (weights or [None] * len(models))]


def band_count(text: str) -> int:
    """argparse type: a number of zigzag bands, 1..64."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--bands expects an integer 1..64, got {text!r}") from None
    if not 1 <= n <= 64:
        raise argparse.ArgumentTypeError(f"--bands must be in 1..64, got {n}")
    return n


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def int_list(text: str) -> list[int]:
    """argparse type: comma-separated integers (``"100,90,80"``)."""
    try:
        return [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None
