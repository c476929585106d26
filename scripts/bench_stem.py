"""CPU time of EfficientNet-Lite0's converted first layer, folded vs factored (issue 15 item 6).

folded:   ConvertedFirstLayer (decode path folded into the 3x3/2 conv: a 2x2 conv over Y blocks
          with 512 outputs + a 4x4/2 transposed conv over chroma blocks + border term).
factored: the same linear map run in its factors: per-block IDCT of the kept bands (a 1x1 conv
          n -> 64 + pixel shuffle), fancy 4:2:0 upsampling, YCbCr -> RGB, normalisation, then the
          RGB network's own 3x3/2 conv + folded BatchNorm (DCTFrontEnd(clamp="none") + _conv_stem).

Both compute bn(conv(decode(coefficients))) (checked here); a folded estimate of the dropped
bands changes only the factored form's IDCT basis (basis_kept + basis_dropped @ A).

    python scripts/bench_stem.py [--bands 64,16,8] [--batch 16] [--threads 1] [--repeats 20]
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn

from dctnet.models import create_model, from_rgb
from dctnet.models.decode_path import DCTFrontEnd, converted_layout


class Factored(nn.Module):
    def __init__(self, rgb, layout):
        super().__init__()
        cfg = rgb.input_config
        self.front = DCTFrontEnd(layout, cfg.mean, cfg.std, clamp="none")
        self.conv, self.bn = rgb._conv_stem, rgb._bn0

    def forward(self, y, cbcr):
        return self.bn(self.conv(self.front(y, cbcr)))


def timeit(fn, repeats):
    fn()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--bands", default="64,32,16,8")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=20)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rgb = create_model("efficientnet_lite0", weights=False).eval()
    for m in rgb.modules():                  # non-trivial BN statistics
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    print(f"| n | folded ms | factored ms | speed-up | max rel. diff |  (batch {args.batch}, {args.threads} thread(s), "
          f"best of {args.repeats})")
    print("|---|---|---|---|---|")
    for n in (int(b) for b in args.bands.split(",")):
        layout = converted_layout(n)
        folded = from_rgb(rgb, n).stem_conv.eval()
        factored = Factored(rgb, layout).eval()
        y = torch.randn(args.batch, n, 28, 28) * 50
        c = torch.randn(args.batch, 2 * n, 14, 14) * 20
        with torch.no_grad():
            a, b = folded(y, c), factored(y, c)
            diff = float((a - b).abs().max() / a.abs().max())
            tf = timeit(lambda: folded(y, c), args.repeats)
            tg = timeit(lambda: factored(y, c), args.repeats)
        print(f"| {n} | {1e3 * tf:.1f} | {1e3 * tg:.1f} | {tf / tg:.2f}x | {diff:.1e} |", flush=True)


if __name__ == "__main__":
    main()
