"""Ablation of estimators of the dropped DCT bands (issue 15, item 2), held out.

Each estimator fills the dropped coefficients of every block from kept ones; the filled input
goes through the full-band ``efficientnet_lite0_dct`` (which equals the folded n-band model up
to the border term), after the ``bn-delta`` step measured on the filled calibration inputs.
Estimators that are not yet folded into the first layer are measured this way first, so that
only the ones that pay are folded (see dctnet/models/calibrate.py).

    python scripts/recovery_ablation.py /work/shared/data/imagenet-sample --bands 16,8 \
        --estimators same,nbr3,perqf,cross,wiener [--swap]

Cached inputs go to --cache (default /tmp/dctnet-ablation). Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import glob
import os
import time

import numpy as np
import torch
import torch.nn.functional as F

from dctnet.data.datasets import imagenet_classes, synset_of_path
from dctnet.data.encode import Setting, encode_setting
from dctnet.models import converted_layout, resolve
from dctnet.models.calibrate import bn_statistics, calibration_set
from dctnet.ops import ZIGZAG, read_to_tensor
from dctnet.ops.dct_domain import DCT8

CAL_QFS = (None, 90, 75, 50)


def topk(logits, labels):
    top = logits.topk(5, 1).indices
    return (100.0 * (top[:, 0] == labels).float().mean().item(),
            100.0 * (top == labels[:, None]).any(1).float().mean().item())


def comps(y, c):
    return [y, c[:, :64], c[:, 64:]]


def join(parts):
    return parts[0], torch.cat(parts[1:], 1)


# --- estimators: fit(cal parts, qf ids) -> fill(parts_n, qf) -> full parts -----------------------

def neighbourhood(x, n, radius):
    """(B, n, h, w) -> (B, n * (2r+1)^2, h, w): kept bands of the block and its neighbours (zero outside)."""
    k = 2 * radius + 1
    p = F.pad(x[:, :n], (radius,) * 4)
    outs = [p[:, :, i:i + x.shape[2], j:j + x.shape[3]] for i in range(k) for j in range(k)]
    return torch.cat(outs, 1)


def solve(feats, target, ridge=1e-6):
    """Least squares target ~ A feats over (B, f, h, w) / (B, d, h, w): A (d, f), float64."""
    f = feats.double().permute(1, 0, 2, 3).reshape(feats.shape[1], -1)
    t = target.double().permute(1, 0, 2, 3).reshape(target.shape[1], -1)
    g = f @ f.T
    g += ridge * torch.diagonal(g).mean() * torch.eye(g.shape[0], dtype=g.dtype)
    return torch.linalg.solve(g, f @ t.T).T


def apply(a, feats):
    return torch.einsum("df,bfhw->bdhw", a.float(), feats)


class Same:
    """Same block, per component, one estimate for all QFs (the shipped "lsq")."""

    def __init__(self, parts, qf_ids, n):
        self.n = n
        self.a = [solve(p[:, :n], p[:, n:]) for p in parts]

    def fill(self, parts, qf):
        return [torch.cat([p[:, :self.n], apply(a, p[:, :self.n])], 1) for p, a in zip(parts, self.a)]


class Neighbours:
    """Kept bands of the 3x3 block neighbourhood (same component)."""

    def __init__(self, parts, qf_ids, n, radius=1):
        self.n, self.r = n, radius
        self.a = [solve(neighbourhood(p, n, radius), p[:, n:]) for p in parts]

    def fill(self, parts, qf):
        return [torch.cat([p[:, :self.n], apply(a, neighbourhood(p, self.n, self.r))], 1)
                for p, a in zip(parts, self.a)]


class PerQF:
    """Same block, a separate estimate per calibration QF; held-out files use the nearest one."""

    def __init__(self, parts, qf_ids, n):
        self.n = n
        self.a = {}
        for i, qf in enumerate(CAL_QFS):
            sel = qf_ids == i
            self.a[qf] = [solve(p[sel, :n], p[sel, n:]) for p in parts]

    def fill(self, parts, qf):
        key = qf if qf in self.a else min((q for q in self.a if q is not None), key=lambda q: abs(q - qf))
        return [torch.cat([p[:, :self.n], apply(a, p[:, :self.n])], 1) for p, a in zip(parts, self.a[key])]


def up2(c):
    return c.repeat_interleave(2, 2).repeat_interleave(2, 3)


def down2(y):
    """(B, k, 2h, 2w) -> (B, 4k, h, w): the four Y blocks of each chroma block."""
    return torch.cat([y[:, :, i::2, j::2] for i in range(2) for j in range(2)], 1)


class Cross:
    """Same block plus the other components' kept bands (Y: its chroma block's Cb, Cr; chroma:
    the four Y blocks and the other chroma component)."""

    def __init__(self, parts, qf_ids, n):
        self.n = n
        self.a = [solve(self.feats(parts, c), parts[c][:, n:]) for c in range(3)]

    def feats(self, parts, c):
        n = self.n
        y, cb, cr = (p[:, :n] for p in parts)
        if c == 0:
            return torch.cat([y, up2(cb), up2(cr)], 1)
        return torch.cat([cb, cr, down2(y)], 1) if c == 1 else torch.cat([cr, cb, down2(y)], 1)

    def fill(self, parts, qf):
        return [torch.cat([parts[c][:, :self.n], apply(self.a[c], self.feats(parts, c))], 1) for c in range(3)]


def ar1_dct_cov(rho: float) -> torch.Tensor:
    """64x64 covariance of the 2-D DCT of a separable AR(1) field (pixel correlation rho^|d|),
    in zigzag order (the input's band order)."""
    i = np.arange(8)
    r = rho ** np.abs(i[:, None] - i[None, :])
    c1 = DCT8 @ r @ DCT8.T
    c2 = np.kron(c1, c1)                           # natural order 8*v + u
    z = np.asarray(ZIGZAG)
    return torch.from_numpy(c2[np.ix_(z, z)])


class Wiener:
    """Same block, the conditional mean of a Gaussian prior with the separable AR(1) covariance
    (the library's "wiener" step: dctnet.models.calibrate.WIENER_RHO), no photo statistics."""

    def __init__(self, parts, qf_ids, n):
        from dctnet.models.calibrate import WIENER_RHO, ar1_block_covariance, lsq_estimate

        self.n = n
        self.a = list(lsq_estimate(torch.stack([ar1_block_covariance(r) for r in WIENER_RHO]), n))

    def fill(self, parts, qf):
        return [torch.cat([p[:, :self.n], apply(a, p[:, :self.n])], 1) for p, a in zip(parts, self.a)]


class Zero:
    def __init__(self, parts, qf_ids, n):
        self.n = n

    def fill(self, parts, qf):
        return [torch.cat([p[:, :self.n], torch.zeros_like(p[:, self.n:])], 1) for p in parts]


ESTIMATORS = {"zero": Zero, "same": Same, "nbr3": Neighbours, "perqf": PerQF, "cross": Cross, "wiener": Wiener}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("data")
    p.add_argument("--bands", default="16,8")
    p.add_argument("--estimators", default="zero,same,nbr3,perqf,cross,wiener")
    p.add_argument("--qfs", default="90,70,50,30,10")
    p.add_argument("--swap", action="store_true", help="calibrate on the odd files, report on the even ones")
    p.add_argument("--cache", default="/tmp/dctnet-ablation")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--bn-stride", type=int, default=1, help="bn-delta on every k-th calibration input (speed)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    os.makedirs(args.cache, exist_ok=True)
    files = sorted(glob.glob(os.path.join(args.data, "*.JPEG")))
    calib, held = (files[1::2], files[0::2]) if args.swap else (files[0::2], files[1::2])
    tag = "swap" if args.swap else "even"
    index = imagenet_classes().index
    labels = torch.tensor([index[synset_of_path(f)] for f in held])
    qfs = [int(q) for q in args.qfs.split(",") if q]
    path = os.path.join(args.cache, f"inputs-{tag}-{'-'.join(map(str, qfs))}.pt")
    if os.path.exists(path):
        cal, held_in = torch.load(path)
    else:
        t0 = time.time()
        cal = calibration_set(calib, qfs=CAL_QFS, threads=args.threads, progress=True)
        originals = [open(f, "rb").read() for f in held]
        held_in = {None: read_to_tensor(originals, converted_layout(64), size=224, resize=256)}
        for qf in qfs:
            held_in[qf] = read_to_tensor([encode_setting(d, Setting(qf)) for d in originals], converted_layout(64),
                                         size=224, resize=256)
        torch.save((cal, held_in), path)
        print(f"inputs built in {time.time() - t0:.0f} s")
    nper = len(calib) * len(CAL_QFS)
    qf_ids = torch.arange(cal[0].shape[0]) % nper % len(CAL_QFS)
    full = resolve("efficientnet_lite0_dct", bands=64).model.eval()
    full.stem_conv.factored = True     # the same map as the folded layer, cheaper on CPU
    bns = {k: (m.running_mean.clone(), m.running_var.clone()) for k, m in full.named_modules()
           if isinstance(m, torch.nn.BatchNorm2d)}

    def batches(inputs, bs=50):
        y, c = inputs[0][::args.bn_stride], inputs[1][::args.bn_stride]
        return [(y[i:i + bs], c[i:i + bs]) for i in range(0, y.shape[0], bs)]

    ref_path = os.path.join(args.cache, f"refstats-{tag}-{args.bn_stride}.pt")
    if os.path.exists(ref_path):
        ref = torch.load(ref_path)
    else:
        ref = bn_statistics(full, batches(cal), progress=True)
        torch.save(ref, ref_path)

    def evaluate(fill):
        cal_f = [torch.empty_like(cal[0]), torch.empty_like(cal[1][:, :64]), torch.empty_like(cal[1][:, 64:])]
        for i, q in enumerate(CAL_QFS):
            sel = qf_ids == i
            for dst, part in zip(cal_f, fill(comps(cal[0][sel], cal[1][sel]), q)):
                dst[sel] = part
        cal_f = join(cal_f)
        stats = bn_statistics(full, batches(cal_f))
        mods = dict(full.named_modules())
        for k, (m0, v0) in bns.items():
            mods[k].running_mean.copy_(m0 + stats[k][0] - ref[k][0])
            mods[k].running_var.copy_(v0 * stats[k][1] / ref[k][1].clamp_min(1e-12))
        cells, kls = [], []
        with torch.no_grad():
            for qf, inp in held_in.items():
                logits = full(*join(fill(comps(*inp), qf)))
                cells.append("%.0f / %.0f" % topk(logits, labels))
                want = torch.log_softmax(full_logits[qf], 1)
                kls.append(F.kl_div(torch.log_softmax(logits, 1), want, log_target=True, reduction="batchmean"))
        cells.append("%.3f" % float(torch.stack(kls).mean()))
        for k, (m0, v0) in bns.items():
            mods[k].running_mean.copy_(m0)
            mods[k].running_var.copy_(v0)
        return cells

    with torch.no_grad():
        full_logits = {qf: full(*inp) for qf, inp in held_in.items()}
    print(f"split {tag}: calibrate on {len(calib)} photos ({cal[0].shape[0]} inputs), report on {len(held)}")
    print("| n | estimator (+bn-delta) | " + " | ".join("orig" if q is None else f"QF{q}" for q in held_in)
          + " | mean KL to n=64 |")
    print("|---|---|" + "---|" * (len(held_in) + 1))
    with torch.no_grad():
        for n in (int(b) for b in args.bands.split(",")):
            cal_parts = comps(*cal)
            for name in args.estimators.split(","):
                t0 = time.time()
                est = ESTIMATORS[name](cal_parts, qf_ids, n)
                cells = evaluate(est.fill)
                print(f"| {n} | {name} | " + " | ".join(cells) + f" |  ({time.time() - t0:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
