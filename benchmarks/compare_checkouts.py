"""Throughput of one dctnet checkout, for before/after comparisons of a change.

    python benchmarks/compare_checkouts.py REPO OUT.json

imports the dctnet of the checkout at REPO (whatever is installed; build its extension first:
``cmake -S REPO -B REPO/build && cmake --build REPO/build``) and measures, on the shared
photos (``$DCTNET_SHARED`` or ``../shared``), the reader, the fused read, the RGB
preprocessing and the Classifier's prepare / forward / end-to-end steps (images/s, best and
median of 5 repeats). Alternate the two checkouts a few times on one machine and compare
medians (benchmarks/README.md, "Before and after the architecture change").
"""
import json
import os
import sys
import time

repo, out = sys.argv[1], sys.argv[2]
sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__module__.startswith("_editable")]
sys.path.insert(0, repo)
import glob

import numpy as np
import torch

import dctnet
assert dctnet.__file__.startswith(repo), dctnet.__file__
from dctnet.ops import DCTLayout, read_to_tensor

try:
    from dctnet.imaging import RGBPreprocess, encode_jpeg, decode_rgb, resize_shorter
except ImportError:
    from dctnet.data.rgb import RGBPreprocess, decode_rgb, resize_shorter
    encode_jpeg = None

torch.set_num_threads(2)
shared = os.environ.get("DCTNET_SHARED") or os.path.join(os.path.dirname(os.path.abspath(repo)), "shared")
photos = sorted(glob.glob(os.path.join(shared, "data", "imagenet-sample", "*")))
if not photos:
    sys.exit(f"no photos in {shared}/data/imagenet-sample (set DCTNET_SHARED)")
originals = []
for p in photos:
    with open(p, "rb") as f:
        originals.append(f.read())
# 4:2:0, shorter side 256, q90: what the papers feed DCT models
from turbojpeg import TJPF_RGB, TJSAMP_420, TurboJPEG
tj = TurboJPEG()
prepared = [tj.encode(np.ascontiguousarray(resize_shorter(decode_rgb(d), 256)), quality=90, pixel_format=TJPF_RGB,
                      jpeg_subsample=TJSAMP_420) for d in originals]


def timed(fn, n_items, repeats=5):
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return n_items / min(times), n_items / float(np.median(times))


res = {}
res["read_dct_batch orig 1t"] = timed(lambda: dctnet.read_dct_batch(originals, threads=1), 100)
res["read_dct_batch orig 2t"] = timed(lambda: dctnet.read_dct_batch(originals, threads=2), 100)
lay16 = DCTLayout("upsampling", 16)
lay64 = DCTLayout("upsampling", 64)
res["read_to_tensor prepared n16 2t"] = timed(lambda: read_to_tensor(prepared, lay16, size=224, threads=2), 100)
res["read_to_tensor prepared n64 1t"] = timed(lambda: read_to_tensor(prepared, lay64, size=224, threads=1), 100)
res["read_to_tensor orig n16 2t"] = timed(lambda: read_to_tensor(originals, lay16, size=224, threads=2, on_error="return"), 100)
pre = RGBPreprocess()
if "on_error" in RGBPreprocess.batch.__code__.co_varnames:
    res["rgb preprocess orig 2t"] = timed(lambda: pre.batch(originals, threads=2, on_error="return"), 100)
else:
    res["rgb preprocess orig 2t"] = timed(lambda: pre.batch(originals, threads=2), 100)
clf = dctnet.Classifier("resnet50_dct_fbs16", batch_size=16, threads=2)
prep = getattr(clf, "prepare", None) or clf._prepare
fwd = getattr(clf, "forward", None) or clf._forward
res["classifier prepare fbs16 b16"] = timed(lambda: [prep(originals[i:i + 16]) for i in range(0, 96, 16)], 96)
batch = prep(originals[:16])
res["classifier forward fbs16 b16"] = timed(lambda: fwd(batch), 16, repeats=3)
res["classifier end-to-end fbs16 b16"] = timed(lambda: clf.predict_logits(originals[:32]), 32, repeats=3)
rgb = dctnet.Classifier("resnet50", batch_size=16, threads=2)
prep = getattr(rgb, "prepare", None) or rgb._prepare
res["classifier prepare resnet50 b16"] = timed(lambda: [prep(originals[i:i + 16]) for i in range(0, 96, 16)], 96)
with open(out, "w") as f:
    json.dump(res, f, indent=1)
print(json.dumps(res))
