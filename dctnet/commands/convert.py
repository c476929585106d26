"""`dctnet convert --model NAME [--weights PATH] --bands n --out PATH`: a DCT-input checkpoint
from a pretrained RGB network by exact conversion of its first layer (issues 8 and 15).

Any registered RGB network whose first convolution :func:`dctnet.models.from_rgb` converts:
the ResNets (the checkpoint names ``resnet_from_rgb`` with ``base`` = NAME, ``bands`` = n) and
EfficientNet-Lite0 (``efficientnet_lite0_dct`` with ``bands`` = n; without ``--weights`` its
registered ImageNet weights). The checkpoint loads with ``dctnet.models.load_model``,
``dctnet.Classifier(model, weights=...)`` etc.
"""

from __future__ import annotations

import argparse
import sys

from . import band_count, weights_argument

HELP = "convert a pretrained RGB network (ResNet, EfficientNet-Lite0) into a DCT-input model (decode folded into conv1)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", "-m", required=True, metavar="NAME",
                   help="registered RGB network: resnet18, resnet34, resnet50, resnet50_v1, resnet101, resnet152, "
                        "efficientnet_lite0")
    p.add_argument("--weights", "-w", metavar="PATH",
                   help="its weights: a torchvision-style state dict or a dctnet checkpoint (default: the model's "
                        "registered default weights, e.g. efficientnet_lite0's ImageNet file)")
    p.add_argument("--bands", "-n", type=band_count, default=64, metavar="N",
                   help="keep the N lowest zigzag frequencies of every component (default 64: all)")
    p.add_argument("--out", "-o", required=True, metavar="PATH", help="checkpoint to write")


def run(args: argparse.Namespace) -> int:
    import torch  # start-up time: see dctnet/cli.py

    from ..models import from_rgb, model_complexity, resolve, save_checkpoint

    try:
        bundle = resolve(args.model, weights=weights_argument(args.weights))
        if bundle.kind != "rgb":
            raise ValueError(f"--model {args.model} is a {bundle.kind.upper()} model; convert takes an RGB network")
        if not bundle.trained:
            raise ValueError(f"--model {args.model} has no default weights: give --weights")
        num_classes = bundle.num_classes
        with torch.no_grad():
            dct = from_rgb(bundle.model.eval(), args.bands)
        first = dct.stem_conv
        macs = first.macs(bundle.image_size)
        whole = model_complexity(dct.model_name, bundle.image_size, num_classes=num_classes, **dct.model_kwargs)
        rgb_whole = model_complexity(args.model, bundle.image_size, num_classes=num_classes)
        save_checkpoint(args.out, dct, model_name=dct.model_name, model_kwargs=dct.model_kwargs,
                        class_names=bundle.class_names,
                        extra={"converted_from": args.model, "source_weights": str(bundle.weights),
                               "stem_macs": macs, "gmacs": whole.gmacs})
    except (ValueError, KeyError, FileNotFoundError, OSError) as e:
        print(f"dctnet convert: {e}", file=sys.stderr)
        return 1
    options = ", ".join(f"{k}={v}" for k, v in dct.model_kwargs.items())
    print(f"wrote {args.out}: {dct.model_name}({options}), "
          f"input y (B, {dct.layout.channels_per_component[0]}, H/8, W/8) + cbcr "
          f"(B, {sum(dct.layout.channels_per_component[1:])}, H/16, W/16) [late_concat, dequantised]")
    print(f"first layer: {macs['total'] / 1e6:.1f} MMACs (RGB first conv: {macs['rgb_conv1'] / 1e6:.1f}); "
          f"whole model {whole.gmacs:.3f} GMACs (RGB {rgb_whole.gmacs:.3f}), per {bundle.image_size}x"
          f"{bundle.image_size} image")
    return 0
