"""Model forward throughput on CPU, batch 8, float32, eval mode (issue 4).

Eager and ``torch.compile`` (inductor) images/s for RGB ResNet-50 (v1.5 and v1) and the DCT
ResNet-50s (3x64, FBS 32/16/8) on random inputs of the 224x224-equivalent shape (RGB
3x224x224, DCT 3n x 28 x 28: the network alone, no decoding). resnet50_v1 is the baseline of
each group (the papers' RGB model); the ratio summary of ``benchmarks/conftest.py`` prints
every model's median time relative to it (images/s ratio = 1 / time ratio).

    python -m pytest benchmarks/bench_models.py --benchmark-enable --benchmark-json=models.json

With benchmarks disabled (the default test run) each body runs once on a tiny input
(batch 1, 32x32-equivalent) in eager mode, so the suite stays quick: compiling six
ResNet-50s takes minutes on 2 cores and belongs to timing runs only.
"""

from __future__ import annotations

import pytest
import torch

from dctnet.models import create_model

MODELS = ["resnet50", "resnet50_v1", "resnet50_dct", "resnet50_dct_fbs32", "resnet50_dct_fbs16", "resnet50_dct_fbs8"]
BASELINE = "resnet50_v1"
BATCH = 8
ROUNDS = 10


def _run(benchmark, name: str, mode: str) -> None:
    torch.manual_seed(0)
    model = create_model(name).eval()
    timing = not benchmark.disabled
    batch, pixels = (BATCH, 224) if timing else (1, 32)
    inputs = [torch.randn(batch, *shape) for shape in model.input_config.shapes_at(pixels, pixels)]
    fn = torch.compile(model) if (mode == "compile" and timing) else model
    benchmark.group = f"models-{mode}-cpu-b{BATCH}"
    benchmark.name = name
    benchmark.extra_info.update(items=batch, baseline=name == BASELINE, mode=mode, device="cpu", dtype="float32",
                                batch=batch, threads=torch.get_num_threads(), torch=torch.__version__,
                                input_shapes=[list(x.shape) for x in inputs])

    def forward():
        with torch.inference_mode():
            return fn(*inputs)

    if timing:
        forward()  # compile / oneDNN primitive creation outside the measured rounds
        out = benchmark.pedantic(forward, rounds=ROUNDS, warmup_rounds=1, iterations=1)
    else:
        out = benchmark(forward)
    assert out.shape == (batch, 1000) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", MODELS)
def test_eager(benchmark, name):
    _run(benchmark, name, "eager")


# torch.compile's own imports trigger this deprecation inside torch (not our code).
@pytest.mark.filterwarnings("ignore:`torch.jit.script_method` is deprecated:DeprecationWarning")
@pytest.mark.parametrize("name", MODELS)
def test_compile(benchmark, name):
    _run(benchmark, name, "compile")


def summarize(path: str) -> str:
    """Markdown table of images/s (from median and from min time) and ratios to the baseline."""
    import json
    with open(path) as f:
        data = json.load(f)
    rows = {}
    for b in data["benchmarks"]:
        if b["group"].startswith("models-"):
            mode = b["extra_info"]["mode"]
            rows.setdefault(b["name"], {})[mode] = (b["extra_info"]["items"], b["stats"]["median"], b["stats"]["min"])
    lines = ["| model | eager img/s (median) | x v1 | eager img/s (best) | x v1 | compile img/s (median) | x v1 |"
             " compile img/s (best) | x v1 |", "|---" * 9 + "|"]
    base = rows.get(BASELINE, {})
    for name in MODELS:
        cells = [name]
        for mode in ("eager", "compile"):
            if mode not in rows.get(name, {}):
                cells += ["-"] * 4
                continue
            items, med, best = rows[name][mode]
            bitems, bmed, bbest = base.get(mode, (None, None, None))
            cells += [f"{items / med:.1f}", f"{bmed / med:.2f}" if bmed else "-",
                      f"{items / best:.1f}", f"{bbest / best:.2f}" if bbest else "-"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    import sys
    print(summarize(sys.argv[1]))
