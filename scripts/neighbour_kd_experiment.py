"""Experiment (issue 15, item 4): a learnable 3x3-block predictor of the dropped bands in front
of the full-band first layer, then bn-delta and kd, label-free.

The student is the full-band converted ``efficientnet_lite0_dct`` whose input is the n-band
``(y, cbcr)``; a per-component 3x3 block convolution ``n -> 64 - n`` (zero padded at the
border) fills the dropped bands from the kept bands of the block and its 8 neighbours, and the
full-band first layer (run factored) sees ``[kept, predicted]``. This is the README's (a)
"3x3 neighbouring blocks" estimate in factored form: no 4x wider folded layer.

Initialisation (``--init``): ``nbr3`` the least-squares 3x3-neighbour estimate from the
calibration photos' blocks (ridge 1e-6, as scripts/recovery_ablation.py), ``same`` the
library's same-block ``lsq`` estimate (centre tap only; :func:`block_gram`,
:func:`lsq_estimate`), ``zero``. Then bn-delta (library :func:`bn_statistics` /
:func:`reestimate_bn` on the same calibration inputs as ``calibrate``), then the library's
:func:`knowledge_distill` with ``--train``:

``all``        the predictor and everything after the first layer (the full-band first layer frozen)
``rest``       everything after the first layer, predictor frozen (the library's ``train="all"``)
``predictor``  the predictor alone, the network frozen
``none``       no kd (bn-delta only)

Criterion exactly as scripts/kd_experiment.py (its ``settings_inputs`` and ``agreement`` are
imported): the first 40 photos of the even half train, the last 10 are held back; KL of the
student's class distribution from the n = 64 model's on the held-back photos (centre crop,
original / QF 90 / 70 / 50). No label is read unless --report-heldout.

Library hooks used from the outside (no library file is changed): ``knowledge_distill`` picks
its parameters with ``calibrate._kd_parameters(student, train)``, which knows no predictor, so
this script swaps that function while it runs (``train`` values above); and it has one step
size, so the predictor's weights are parametrised as ``w0 + s * delta`` (``delta`` trained,
starting at 0), with ``s = pred_lr * rms(w0) / lr``: Adam then moves the predictor by about
``pred_lr`` relative per step while the network moves by ``lr``.

    OMP_NUM_THREADS=1 python scripts/neighbour_kd_experiment.py /work/shared/data/imagenet-sample \
        --bands 16 --init nbr3 --train all [--pred-lr 1e-3] [--json out.json] [--report-heldout]
    python scripts/neighbour_kd_experiment.py --macs --bands 16     # MAC counts only
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import glob
import json
import os
import sys
import time

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from kd_experiment import agreement, settings_inputs  # noqa: E402  (the criterion, reused as it is)

import dctnet.models.calibrate as cal  # noqa: E402
from dctnet.evaluate.calibration import heldout_split  # noqa: E402
from dctnet.models import resolve  # noqa: E402
from dctnet.models.calibrate import (_batches, _select, block_gram, bn_statistics, calibration_set,  # noqa: E402
                                     factored_first_layers, knowledge_distill, lsq_estimate, reencoded_versions,
                                     reestimate_bn)
from dctnet.models.flops import count_macs  # noqa: E402


# --- the predictor ------------------------------------------------------------------------------

class BandPredictor(nn.Module):
    """Per component (Y, Cb, Cr): dropped bands = conv3x3(kept bands), zero padding at the
    border of the block grid. Weight ``w0 + scale * delta`` (``delta`` the parameter)."""

    def __init__(self, bands: int, init: list[torch.Tensor], scales: list[float]):
        super().__init__()
        self.n = bands
        for c, w in enumerate(init):
            self.register_buffer(f"w0_{c}", w.float().clone())
        self.delta = nn.ParameterList([nn.Parameter(torch.zeros_like(w, dtype=torch.float32)) for w in init])
        self.scales = list(scales)

    def weight(self, c: int) -> torch.Tensor:
        return getattr(self, f"w0_{c}") + self.scales[c] * self.delta[c]

    def forward(self, y: torch.Tensor, cbcr: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = self.n
        parts = (y, cbcr[:, :n], cbcr[:, n:2 * n])
        full = [torch.cat([p, F.conv2d(p, self.weight(c), padding=1)], 1) for c, p in enumerate(parts)]
        return full[0], torch.cat(full[1:], 1)


def _student_class(base: type) -> type:
    class PredictedStudent(base):
        """The full-band network fed ``predictor(n-band input)``."""

        def forward(self, *inputs):
            return super().forward(*self.predictor(*inputs))

    PredictedStudent.__name__ = f"Predicted{base.__name__}"
    return PredictedStudent


def make_student(full: nn.Module, predictor: BandPredictor) -> nn.Module:
    student = copy.deepcopy(full)
    student.__class__ = _student_class(type(full))
    student.predictor = predictor
    return student.eval()


# --- least-squares initialisations ----------------------------------------------------------------

def _neighbourhood(x: torch.Tensor, n: int) -> torch.Tensor:
    """(B, >=n, h, w) -> (B, 9n, h, w): kept bands of the 3x3 block neighbourhood, index
    (3 i + j) n + k (zero outside), matching conv weight [d, k, i, j]."""
    p = F.pad(x[:, :n], (1, 1, 1, 1))
    h, w = x.shape[2:]
    return torch.cat([p[:, :, i:i + h, j:j + w] for i in range(3) for j in range(3)], 1)


@torch.no_grad()
def nbr3_estimate(inputs, n: int, ridge: float = 1e-6, chunk: int = 64) -> list[torch.Tensor]:
    """Per component, the least-squares 3x3-neighbour estimate as conv weights (64-n, n, 3, 3)."""
    f = 9 * n
    grams = [torch.zeros(f + 64 - n, f + 64 - n, dtype=torch.float64) for _ in range(3)]
    for y, c in _batches(inputs, chunk):
        for g, part in zip(grams, (y, c[:, :64], c[:, 64:])):
            z = torch.cat([_neighbourhood(part, n), part[:, n:]], 1).double()
            z = z.permute(1, 0, 2, 3).reshape(z.shape[1], -1)
            g += z @ z.T
    out = []
    for g in grams:
        gff, gtf = g[:f, :f], g[f:, :f]
        gff = gff + ridge * torch.diagonal(gff).mean() * torch.eye(f, dtype=g.dtype)
        a = torch.linalg.solve(gff, gtf.T).T                                  # (64-n, 9n)
        out.append(a.reshape(64 - n, 3, 3, n).permute(0, 3, 1, 2).contiguous())
    return out


@torch.no_grad()
def same_estimate(inputs, n: int) -> list[torch.Tensor]:
    """The library's same-block ``lsq`` estimate on the centre tap."""
    gram = torch.zeros(3, 64, 64, dtype=torch.float64)
    for y, c in _batches(inputs, 256):
        gram += block_gram(y, c)
    a = lsq_estimate(gram, n)
    out = []
    for c in range(3):
        w = torch.zeros(64 - n, n, 3, 3, dtype=torch.float64)
        w[:, :, 1, 1] = a[c]
        out.append(w)
    return out


# --- the train= hook ------------------------------------------------------------------------------

@contextlib.contextmanager
def predictor_train_choices():
    """While active, ``knowledge_distill(train=...)`` also knows ``"predictor"`` (the predictor
    alone) and ``"predictor+all"`` (predictor and all but the first layer); ``"all"`` excludes
    the predictor."""
    original = cal._kd_parameters

    def chosen(model, train):
        names = {name for name, _ in model.named_parameters()}
        pred = {name for name in names if name.startswith("predictor.")}
        if train == "predictor":
            return pred
        if train == "predictor+all":
            return original(model, "all")
        if train == "all":
            return original(model, "all") - pred
        return original(model, train)

    cal._kd_parameters = chosen
    try:
        yield
    finally:
        cal._kd_parameters = original


# --- MACs -------------------------------------------------------------------------------------------

def mac_table(bands: int) -> dict:
    full = resolve("efficientnet_lite0_dct", bands=64, weights=False).model.eval()
    part = resolve("efficientnet_lite0_dct", bands=bands, weights=False).model.eval()
    n = bands
    pred = BandPredictor(n, [torch.zeros(64 - n, n, 3, 3)] * 3, [1.0] * 3)
    y, c = torch.zeros(1, n, 28, 28), torch.zeros(1, 2 * n, 14, 14)
    yf, cf = torch.zeros(1, 64, 28, 28), torch.zeros(1, 128, 14, 14)
    out = {"predictor": count_macs(pred, y, c)}
    for name, layer, args in (("first64", full.stem_conv, (yf, cf)), (f"first{n}", part.stem_conv, (y, c))):
        out[name + "_folded"] = layer.macs(224)["total"]
        with factored_first_layers(layer):
            out[name + "_factored"] = count_macs(layer, *args)
    return out


# --- main -------------------------------------------------------------------------------------------

def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", nargs="?", default="/work/shared/data/imagenet-sample")
    ap.add_argument("--bands", type=int, default=16)
    ap.add_argument("--init", default="nbr3", choices=["nbr3", "same", "zero"])
    ap.add_argument("--train", default="all", choices=["all", "rest", "predictor", "none"])
    ap.add_argument("--pred-lr", type=float, default=1e-3, help="predictor step, relative to rms(w0)")
    ap.add_argument("--ridge", type=float, default=1e-6)
    ap.add_argument("--swap", action="store_true")
    ap.add_argument("--holdback", type=int, default=10)
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=5e-6)
    ap.add_argument("--temperature", type=float, default=2.0)
    ap.add_argument("--mixup", type=float, default=1.0)
    ap.add_argument("--monitor-every", type=int, default=50)
    ap.add_argument("--report-heldout", action="store_true")
    ap.add_argument("--macs", action="store_true", help="print the MAC counts and exit")
    ap.add_argument("--json")
    a = ap.parse_args()
    torch.set_num_threads(1)
    n = a.bands
    if a.macs:
        print(json.dumps(mac_table(n)))
        return
    t_start = time.time()
    files = sorted(glob.glob(os.path.join(a.data, "*.JPEG")))
    calib, held = heldout_split(files, a.swap)
    train, back = (calib[:-a.holdback], calib[-a.holdback:]) if a.holdback else (calib, [])
    full = resolve("efficientnet_lite0_dct", bands=64).model.eval()

    t0 = time.time()
    inputs = calibration_set(train, threads=1)                   # what calibrate() uses (same defaults)
    init = {"nbr3": lambda: nbr3_estimate(inputs, n, a.ridge), "same": lambda: same_estimate(inputs, n),
            "zero": lambda: [torch.zeros(64 - n, n, 3, 3)] * 3}[a.init]()
    scales = [a.pred_lr * float(w.pow(2).mean().sqrt().clamp_min(1e-8)) / a.lr for w in init]
    student = make_student(full, BandPredictor(n, init, scales))
    with factored_first_layers(full.stem_conv, student.stem_conv):
        ref = bn_statistics(full, list(_batches(inputs, 32)))
        reestimate_bn(student, [_select(b, n) for b in _batches(inputs, 32)], reference=ref)
    del inputs
    print(f"{a.init} + bn-delta on {len(train)} photos: {time.time() - t0:.0f} s", flush=True)

    back_in = settings_inputs(back) if back else None
    res = {"args": vars(a)}
    if back_in:
        res["before"] = agreement(student, full, back_in, n)
        print("held-back before kd:", res["before"], flush=True)
    if a.train != "none":
        t0 = time.time()
        sources = reencoded_versions(train)
        train_arg = {"all": "predictor+all", "rest": "all", "predictor": "predictor"}[a.train]
        with predictor_train_choices():
            losses = knowledge_distill(student, full, sources, n, iterations=a.iterations, batch_size=a.batch_size,
                                       lr=a.lr, temperature=a.temperature, train=train_arg, mixup=a.mixup,
                                       threads=1, progress=False,
                                       monitor=(lambda i: agreement(student, full, back_in, n)) if back_in else None,
                                       monitor_every=a.monitor_every)
        res["kd_seconds"] = round(time.time() - t0)
        res["loss_first_last"] = [sum(losses[:20]) / 20, sum(losses[-20:]) / 20]
        moved = [float((s * d.detach()).pow(2).mean().sqrt() / getattr(student.predictor, f"w0_{c}").pow(2).mean().sqrt())
                 for c, (s, d) in enumerate(zip(student.predictor.scales, student.predictor.delta))]
        res["predictor_relative_change"] = [round(m, 4) for m in moved]
        print(f"kd: {res['kd_seconds']} s, loss {res['loss_first_last']}, predictor moved {res['predictor_relative_change']}",
              flush=True)
        if back_in:
            res["after"] = agreement(student, full, back_in, n)
    print("held-back:", res.get("after", res.get("before")), flush=True)
    if a.report_heldout:
        from dctnet.data.datasets import imagenet_classes, synset_of_path
        index = imagenet_classes().index
        labels = torch.tensor([index[synset_of_path(f)] for f in held])
        res["heldout_top1"] = {}
        with torch.no_grad(), factored_first_layers(full.stem_conv, student.stem_conv):
            for name, batch in settings_inputs(held, (None, 90, 70, 50, 30, 10)).items():
                s = student(*_select(batch, n)).argmax(1)
                t = full(*batch).argmax(1)
                res["heldout_top1"][name] = (round(100.0 * float((s == labels).float().mean())),
                                             round(100.0 * float((t == labels).float().mean())))
        print("held-out top-1 (student, n=64):", res["heldout_top1"], flush=True)
    res["wall_seconds"] = round(time.time() - t_start)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
