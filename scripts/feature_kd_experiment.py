"""Feature-level distillation for the "kd" calibration step (issue 15 item 4), label-free.

The same protocol and criterion as ``scripts/kd_experiment.py`` (whose ``settings_inputs`` and
``agreement`` this script imports): the even half of the photos (heldout_split), its first 40
train, its last 10 are held back; the criterion is the KL divergence of the n-band student's class
distribution from the full-band teacher's (and top-1 agreement) on the held-back photos (centre
crop, original / QF 90 / 70 / 50). Every run starts from lsq + bn-delta of the 40 photos and runs
the library's :func:`~dctnet.models.calibrate.knowledge_distill` unchanged (fresh kd_batch
augmentations, mixup, Adam, warm-up + cosine, BatchNorm fixed, first layer frozen).

What changes is the loss. ``knowledge_distill`` has no loss hook, so for the duration of the call
``dctnet.models.calibrate.kd_divergence`` (the name its loop calls) is replaced by

    logit_weight * KL_T(student || teacher) + feature_weight * mean over taps of D(s_tap, t_tap)

where the taps are forward hooks on the same modules of teacher and student (the teacher runs
first, under no_grad, in the loop), and D is

* ``nmse``: per-channel normalised MSE, ``mean_c mean_{b,h,w} (s - t)^2 / (var_c(t) + eps)``
  (teacher channel variance over the batch, detached; eps = 1e-2 * mean variance for dead channels);
* ``cos``: ``1 - cosine`` of the channel vectors at each position, averaged.

Taps (EfficientNet-Lite0, 16 MBConv blocks): ``stages`` = the output of each stage (blocks 0, 2,
4, 7, 10, 14, 15), ``few`` = blocks 4, 10 and the head, ``head`` = the head's BatchNorm (pre-ReLU6,
1280 channels); or a comma list of block indices / ``head``. Stage outputs are pre-activation
(MBConv's projection has no activation).

    OMP_NUM_THREADS=1 python scripts/feature_kd_experiment.py /work/shared/data/imagenet-sample \
        --bands 16 --taps stages --feature-weight 1 --logit-weight 1 --json /tmp/fkd/x.json

The lsq + bn-delta student is cached (``--cache``, pickled model) so that runs of a sweep start
from the identical model without redoing the calibration passes.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import importlib.util
import json
import os
import time

import torch

import dctnet.models.calibrate as cal
from dctnet.evaluate.calibration import heldout_split
from dctnet.models import resolve
from dctnet.models.calibrate import calibrate, knowledge_distill, reencoded_versions

_spec = importlib.util.spec_from_file_location("kd_experiment", os.path.join(os.path.dirname(__file__), "kd_experiment.py"))
kd_experiment = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(kd_experiment)

STAGE_OUTPUTS = (0, 2, 4, 7, 10, 14, 15)
TAPS = {"stages": [str(i) for i in STAGE_OUTPUTS], "stages+head": [str(i) for i in STAGE_OUTPUTS] + ["head"],
        "few": ["4", "10", "head"], "head": ["head"], "none": []}


def tap_modules(model, taps):
    out = {}
    for t in taps:
        out[t] = model._bn1 if t == "head" else model._blocks[int(t)]
    return out


def nmse(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    var = t.var(dim=(0, 2, 3), unbiased=False)
    var = var + 1e-2 * var.mean() + 1e-8
    return (((s - t) ** 2).mean(dim=(0, 2, 3)) / var).mean()


def cos(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return (1.0 - torch.nn.functional.cosine_similarity(s, t, dim=1, eps=1e-6)).mean()


class FeatureLoss:
    """Forward hooks on the taps of teacher and student, and the combined loss in place of kd_divergence."""

    def __init__(self, teacher, student, taps, distance, feature_weight, logit_weight):
        self.t, self.s = {}, {}
        self.taps = list(taps)
        self.distance = {"nmse": nmse, "cos": cos}[distance]
        self.fw, self.lw = float(feature_weight), float(logit_weight)
        self.handles = []
        for store, model in ((self.t, teacher), (self.s, student)):
            for name, module in tap_modules(model, self.taps).items():
                self.handles.append(module.register_forward_hook(self._hook(store, name)))
        self.log = []  # (kl, feature loss, per-tap) per training iteration

    @staticmethod
    def _hook(store, name):
        def hook(module, inputs, output):
            store[name] = output
        return hook

    def remove(self):
        for h in self.handles:
            h.remove()

    def __call__(self, student_logits, teacher_logits, temperature=1.0):
        kl = self.original(student_logits, teacher_logits, temperature)
        per = [self.distance(self.s[k], self.t[k].detach()) for k in self.taps]
        feat = torch.stack(per).mean() if per else kl.new_zeros(())
        self.log.append((float(kl.detach()), float(feat.detach()), [round(float(p.detach()), 4) for p in per]))
        return self.lw * kl + self.fw * feat

    @contextlib.contextmanager
    def patched(self):
        self.original = cal.kd_divergence
        cal.kd_divergence = self
        try:
            yield
        finally:
            cal.kd_divergence = self.original


def lsq_bn_delta_student(full, bands, train, cache):
    path = os.path.join(cache, f"student_n{bands}_{len(train)}.pt") if cache else None
    if path and os.path.exists(path):
        return torch.load(path, weights_only=False)
    student = calibrate(full, bands, train, steps=("lsq", "bn-delta"), progress=False, threads=1)
    if path:
        os.makedirs(cache, exist_ok=True)
        torch.save(student, path)
    return student


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("--bands", type=int, default=16)
    ap.add_argument("--swap", action="store_true")
    ap.add_argument("--holdback", type=int, default=10)
    ap.add_argument("--iterations", type=int, default=200)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=5e-6)
    ap.add_argument("--temperature", type=float, default=2.0)
    ap.add_argument("--mixup", type=float, default=1.0)
    ap.add_argument("--taps", default="stages", help="stages, stages+head, few, head, none, or e.g. 4,10,head")
    ap.add_argument("--distance", default="nmse", choices=["nmse", "cos"])
    ap.add_argument("--feature-weight", type=float, default=1.0)
    ap.add_argument("--logit-weight", type=float, default=1.0)
    ap.add_argument("--monitor-every", type=int, default=50)
    ap.add_argument("--cache", default="/tmp/fkd/cache")
    ap.add_argument("--report-heldout", action="store_true")
    ap.add_argument("--json")
    a = ap.parse_args()
    torch.set_num_threads(1)
    taps = TAPS.get(a.taps, [t for t in a.taps.split(",") if t])
    files = sorted(glob.glob(os.path.join(a.data, "*.JPEG")))
    calib, held = heldout_split(files, a.swap)
    train, back = calib[:-a.holdback], calib[-a.holdback:]
    full = resolve("efficientnet_lite0_dct", bands=64).model.eval()
    t0 = time.time()
    student = lsq_bn_delta_student(full, a.bands, train, a.cache)
    print(f"lsq+bn-delta on {len(train)} photos: {time.time() - t0:.0f} s", flush=True)
    back_in = kd_experiment.settings_inputs(back)
    res = {"args": vars(a), "taps": taps}
    res["before"] = kd_experiment.agreement(student, full, back_in, a.bands)
    print("held-back before kd:", res["before"], flush=True)
    sources = reencoded_versions(train)
    loss = FeatureLoss(full, student, taps, a.distance, a.feature_weight, a.logit_weight)
    curve = {}

    def monitor(i):
        curve[i] = kd_experiment.agreement(student, full, back_in, a.bands)
        return curve[i]

    t0 = time.time()
    try:
        with loss.patched():
            knowledge_distill(student, full, sources, a.bands, iterations=a.iterations, batch_size=a.batch_size,
                              lr=a.lr, temperature=a.temperature, mixup=a.mixup, threads=1, progress=False,
                              monitor=monitor, monitor_every=a.monitor_every)
    finally:
        loss.remove()
    res["kd_seconds"] = round(time.time() - t0)
    w = min(20, len(loss.log))
    first, last = loss.log[:w], loss.log[-w:]
    res["train_kl_first_last"] = [round(sum(x[0] for x in first) / w, 4), round(sum(x[0] for x in last) / w, 4)]
    res["train_feat_first_last"] = [round(sum(x[1] for x in first) / w, 4), round(sum(x[1] for x in last) / w, 4)]
    res["per_tap_first"] = loss.log[0][2]
    res["per_tap_last"] = loss.log[-1][2]
    res["curve"] = curve
    res["after"] = curve[a.iterations]
    print(f"kd: {res['kd_seconds']} s, train KL {res['train_kl_first_last']}, "
          f"feature loss {res['train_feat_first_last']} (per tap {res['per_tap_first']} -> {res['per_tap_last']})",
          flush=True)
    print("held-back after:", res["after"], flush=True)
    if a.report_heldout:
        res["heldout_top1"] = kd_experiment.heldout_top1(student, full, held, a.bands,
                                                         (student.stem_conv, full.stem_conv))
        print("held-out top-1 (student, n=64):", res["heldout_top1"], flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
