"""Tuning runs of the "kd" calibration step (issue 15 item 4), label-free.

The calibration half (heldout_split) is split again: the first photos train, the last
--holdback photos are held back; the criterion is the KL divergence of the student's class
distribution from the full-band teacher's (and their top-1 agreement) on the held-back photos
(centre crop, settings original / QF 90 / 70 / 50). No label is read unless --report-heldout
(held-out top-1 of the final model, for the write-up only, not for choices).

    OMP_NUM_THREADS=1 python scripts/kd_experiment.py /work/shared/data/imagenet-sample --bands 16 \
        --iterations 200 --lr 5e-6 --mixup 1.0 [--train all|bn|blocks:k|first] [--swap] [--holdback 10]

The README's kd tuning table lists the runs (n = 16: lr 5e-5 / 2e-6 / 5e-6, train=bn at 1e-3,
mixup; n = 8: the default).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import time

import torch

from dctnet.data.encode import Setting, encode_setting
from dctnet.evaluate.calibration import heldout_split
from dctnet.models import converted_layout, resolve
from dctnet.models.calibrate import (_select, calibrate, factored_first_layers, kd_divergence, reencoded_versions,
                                     knowledge_distill)
from dctnet.ops import read_to_tensor


def settings_inputs(files, qfs=(None, 90, 70, 50)):
    from pathlib import Path
    originals = [Path(f).read_bytes() for f in files]
    out = {}
    for qf in qfs:
        data = originals if qf is None else [encode_setting(d, Setting(int(qf)), name=f) for d, f in zip(originals, files)]
        out["original" if qf is None else f"qf{qf}"] = read_to_tensor(data, converted_layout(64), size=224, resize=256)
    return out


@torch.no_grad()
def agreement(student, teacher, inputs, n):
    kls, agree = [], []
    with factored_first_layers(*((teacher.stem_conv,) if getattr(student, "_first_trained", False) else (student.stem_conv, teacher.stem_conv))):
        for name, batch in inputs.items():
            t = teacher(*batch)
            s = student(*_select(batch, n))
            kls.append(float(kd_divergence(s, t)))
            agree.append(100.0 * float((s.argmax(1) == t.argmax(1)).float().mean()))
    return {"kl": round(sum(kls) / len(kls), 4), "agree": round(sum(agree) / len(agree), 1)}


def heldout_top1(student, full, held, bands: int, factored_layers) -> dict:
    """setting -> (student top-1 %, n=64 top-1 %) on the held-out photos (labels from their
    synsets), with ``factored_layers`` run factored."""
    from dctnet.data.datasets import imagenet_classes, synset_of_path
    index = imagenet_classes().index
    labels = torch.tensor([index[synset_of_path(f)] for f in held])
    out = {}
    with torch.no_grad(), factored_first_layers(*factored_layers):
        for name, batch in settings_inputs(held, (None, 90, 70, 50, 30, 10)).items():
            s = student(*_select(batch, bands)).argmax(1)
            t = full(*batch).argmax(1)
            out[name] = (round(100.0 * float((s == labels).float().mean())),
                         round(100.0 * float((t == labels).float().mean())))
    return out


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
    ap.add_argument("--rrc", type=float, default=0.5)
    ap.add_argument("--train", default="all")
    ap.add_argument("--mixup", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--monitor-every", type=int, default=50)
    ap.add_argument("--report-heldout", action="store_true")
    ap.add_argument("--json")
    a = ap.parse_args()
    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    files = sorted(glob.glob(os.path.join(a.data, "*.JPEG")))
    calib, held = heldout_split(files, a.swap)
    train, back = (calib[:-a.holdback], calib[-a.holdback:]) if a.holdback else (calib, [])
    full = resolve("efficientnet_lite0_dct", bands=64).model.eval()
    t0 = time.time()
    student = calibrate(full, a.bands, train, steps=("lsq", "bn-delta"), progress=False, threads=1)
    print(f"lsq+bn-delta on {len(train)} photos: {time.time() - t0:.0f} s", flush=True)
    back_in = settings_inputs(back) if back else None
    res = {"args": vars(a)}
    if back_in:
        res["before"] = agreement(student, full, back_in, a.bands)
        print("held-back before kd:", res["before"], flush=True)
    t0 = time.time()
    sources = reencoded_versions(train)
    student._first_trained = a.train in ("first", "everything")
    losses = knowledge_distill(student, full, sources, a.bands, iterations=a.iterations, batch_size=a.batch_size,
                               lr=a.lr, temperature=a.temperature, rrc=a.rrc, train=a.train, mixup=a.mixup,
                               seed=a.seed, threads=1, progress=False,
                               monitor=(lambda i: agreement(student, full, back_in, a.bands)) if back_in else None,
                               monitor_every=a.monitor_every)
    res["kd_seconds"] = round(time.time() - t0)
    res["loss_first_last"] = [sum(losses[:20]) / 20, sum(losses[-20:]) / 20]
    print(f"kd: {res['kd_seconds']} s, loss {res['loss_first_last']}", flush=True)
    if back_in:
        res["after"] = agreement(student, full, back_in, a.bands)
    if a.report_heldout:
        layers = (full.stem_conv,) if student._first_trained else (student.stem_conv, full.stem_conv)
        res["heldout_top1"] = heldout_top1(student, full, held, a.bands, layers)
        print("held-out top-1 (student, n=64):", res["heldout_top1"], flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
