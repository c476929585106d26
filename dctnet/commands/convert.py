"""`dctnet convert --model NAME --weights PATH --bands n --out PATH`: a DCT-input checkpoint
from a pretrained RGB ResNet by exact conversion of its first layer (issue 8).

The checkpoint names the registry model ``resnet_from_rgb`` (``base`` = NAME, ``bands`` = n)
and loads with ``dctnet.models.load_model``, ``dctnet.Classifier(model)`` etc.
"""

from __future__ import annotations

import argparse
import sys

from . import band_count

HELP = "convert a pretrained RGB ResNet into a DCT-input model (exact decode path folded into conv1)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", "-m", required=True, metavar="NAME",
                   help="registered RGB ResNet (resnet18, resnet34, resnet50, resnet50_v1, resnet101, resnet152)")
    p.add_argument("--weights", "-w", required=True, metavar="PATH",
                   help="its weights: a torchvision-style state dict or a dctnet checkpoint")
    p.add_argument("--bands", "-n", type=band_count, default=64, metavar="N",
                   help="keep the N lowest zigzag frequencies of every component (default 64: all)")
    p.add_argument("--out", "-o", required=True, metavar="PATH", help="checkpoint to write")


def run(args: argparse.Namespace) -> int:
    import torch  # start-up time: see dctnet/cli.py

    from ..models import from_rgb, model_complexity, resolve, save_checkpoint, stem_macs

    try:
        bundle = resolve(args.model, weights=args.weights)
        if bundle.kind != "rgb":
            raise ValueError(f"--model {args.model} is a DCT model; convert takes an RGB ResNet")
        num_classes = bundle.num_classes
        with torch.no_grad():
            dct = from_rgb(bundle.model.eval(), args.bands)
        macs = stem_macs(args.bands, out_channels=dct.stem_conv.out_channels)
        whole = model_complexity("resnet_from_rgb", base=args.model, bands=args.bands, num_classes=num_classes)
        rgb_whole = model_complexity(args.model, num_classes=num_classes)
        save_checkpoint(args.out, dct, model_name="resnet_from_rgb", model_kwargs=dct.model_kwargs,
                        class_names=bundle.class_names,
                        extra={"converted_from": args.model, "source_weights": str(args.weights),
                               "stem_macs": macs, "gmacs": whole.gmacs})
    except (ValueError, KeyError, FileNotFoundError, OSError) as e:
        print(f"dctnet convert: {e}", file=sys.stderr)
        return 1
    print(f"wrote {args.out}: resnet_from_rgb(base={args.model}, bands={args.bands}), "
          f"input y (B, {dct.layout.channels_per_component[0]}, H/8, W/8) + cbcr "
          f"(B, {sum(dct.layout.channels_per_component[1:])}, H/16, W/16) [late_concat, dequantised]")
    print(f"first layer: {macs['total'] / 1e6:.1f} MMACs (RGB conv1: {macs['rgb_conv1'] / 1e6:.1f}); "
          f"whole model {whole.gmacs:.3f} GMACs (RGB {rgb_whole.gmacs:.3f}), per 224x224 image")
    return 0
