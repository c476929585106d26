"""The Triton backend against the torch reference, on CPU under the Triton interpreter.

``TRITON_INTERPRET=1`` must be set before a kernel is defined, and it changes what every
``@triton.jit`` in the process does. Setting it in this pytest process would silently turn
other test files' Triton kernels (defined earlier or later) into interpreted or compiled
ones depending on import order, so the checks run in a child Python with the variable set
from the start. The child imports the same ``dctnet`` sources as this process and the test
fails with the child's output if any check fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def _run_child(mode: str, **env_extra) -> str:
    import dctnet  # not at module level: the child process runs this file as a script

    env = dict(os.environ, DCTNET_OPS_ROOT=str(Path(dctnet.__file__).resolve().parents[1]), **env_extra)
    if mode == "compile":
        env.pop("TRITON_INTERPRET", None)
    else:
        env["TRITON_INTERPRET"] = "1"
    proc = subprocess.run([sys.executable, __file__, mode], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"Triton checks ({mode}) failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


def test_triton_backend_matches_torch_under_interpreter(photos, tmp_path):
    out = _run_child("interpret", DCTNET_OPS_PHOTO=str(photos[0]), DCTNET_OPS_TMP=str(tmp_path))
    assert "checked 12 cases" in out, out


def test_triton_kernel_compiles_for_ampere_and_hopper():
    """Ahead-of-time compilation to PTX for sm_80 and sm_90 (no GPU needed): catches what the
    interpreter accepts but the compiler rejects. Loads must be coalesced global loads."""
    out = _run_child("compile")
    for cc in (80, 90):
        assert f"sm_{cc}: ok" in out, out


def test_triton_resize_matches_numba_under_interpreter(photos, tmp_path):
    """The DCT-domain resampler's Triton kernel (CUDA outputs) against the numba kernel: every
    sampling, gray, downscaling and upscaling, flips, a random-resized crop, three layouts."""
    out = _run_child("resize", DCTNET_OPS_PHOTO=str(photos[0]), DCTNET_OPS_TMP=str(tmp_path))
    assert "checked 6 resize cases" in out, out


def _setup_child():
    root = os.environ["DCTNET_OPS_ROOT"]
    # Test the parent's sources even if an editable install of another checkout is on the path.
    sys.meta_path[:] = [f for f in sys.meta_path if type(f).__name__ != "ScikitBuildInplaceFinder"]
    sys.path.insert(0, root)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import dctnet
    assert Path(dctnet.__file__).resolve().parents[1] == Path(root).resolve(), dctnet.__file__


def _compile_child() -> None:
    """Runs in a child process without the interpreter."""
    _setup_child()
    import warnings
    warnings.simplefilter("error")
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from dctnet.ops import _triton

    sig = {"src": "*i16", "qsteps": "*fp32", "bands": "*i32", "mean": "*fp32", "inv_std": "*fp32", "out": "*fp32",
           "n_pos": "i32", "src_w": "i32", "n_bands": "i32", "comp": "i32", "stat_off": "i32", "ch_off": "i32",
           "out_c": "i32", "out_h": "i32", "out_w": "i32"}
    for cc in (80, 90):
        for up, nb in ((True, 16), (False, 64)):
            src = ASTSource(fn=_triton._gather_kernel, signature=dict(sig, UP="constexpr", NORMALISE="constexpr",
                                                                     BLOCK_P="constexpr", NB="constexpr"),
                            constexprs={"UP": up, "NORMALISE": True, "BLOCK_P": 64, "NB": nb})
            kernel = triton.compile(src, target=GPUTarget("cuda", cc, 32), options=dict(_triton._COMPILE_OPTIONS))
            ptx = kernel.asm["ptx"]
            assert "ld.global" in ptx and "st.global" in ptx and "fma.rn.f32" not in ptx, cc
        rsig = {"src": "*i16", "qstep": "*fp32", "pv": "*fp32", "vlo": "*i64", "pht": "*fp32", "hlo": "*i64",
                "dst": "*fp32", "src_h": "i32", "src_w": "i32", "out_w": "i32", "wv": "i32", "wh": "i32",
                "BV": "constexpr", "BH": "constexpr"}
        src = ASTSource(fn=_triton._resize_kernel, signature=rsig, constexprs={"BV": 32, "BH": 64})
        kernel = triton.compile(src, target=GPUTarget("cuda", cc, 32), options=dict(_triton._COMPILE_OPTIONS))
        ptx = kernel.asm["ptx"]
        assert "ld.global" in ptx and "st.global" in ptx and "tf32" not in ptx, cc   # exact float32 products
        print(f"sm_{cc}: ok")


def _child() -> None:
    """Runs in the child process with TRITON_INTERPRET=1."""
    _setup_child()
    import numpy as np
    import torch

    import dctnet
    from dctnet.ops import DCTLayout, to_tensor
    from dctnet.ops import _triton
    from jpeg_fixtures import read_pnm, run_tool, write_ppm

    assert type(_triton._gather_kernel).__name__ == "InterpretedFunction", type(_triton._gather_kernel)

    tmp = Path(os.environ["DCTNET_OPS_TMP"])
    rgb = read_pnm(run_tool("djpeg", "-ppm", os.environ["DCTNET_OPS_PHOTO"]))
    images = []
    for i, (switches, (h, w)) in enumerate([(["-sample", "2x2"], (223, 225)), (["-sample", "1x1"], (100, 150)),
                                            (["-sample", "4x1"], (97, 113)), (["-grayscale"], (90, 131)),
                                            (["-sample", "2x1"], (81, 99))]):
        ppm = write_ppm(tmp / f"{i}.ppm", rgb[:h, :w])
        path = tmp / f"{i}.jpg"
        run_tool("cjpeg", "-quality", "80", *switches, "-outfile", str(path), str(ppm))
        images.append(dctnet.read_dct(path))

    layouts = [DCTLayout("upsampling", 64), DCTLayout("upsampling", 5), DCTLayout("late_concat", 13),
               DCTLayout("y_only", 3),
               DCTLayout("upsampling", ([0, 1, 2, 3, 8, 9, 10, 11, 16, 17, 18, 19, 24, 25, 26, 27],
                                        [0, 1, 8, 9], [0, 1, 8, 9]))]
    cases = 0
    flips = [True, False, True, False, True]
    for layout in layouts:
        normed = layout.with_stats(np.linspace(-5, 5, layout.num_channels), np.linspace(0.5, 40, layout.num_channels))
        for lay in (layout, normed):
            # 48x80 px -> Y 6x10, chroma 3x5 blocks (odd)
            kwargs = dict(crop="center", size=(48, 80), flip=flips)
            ref = to_tensor(images, lay, backend="torch", **kwargs)
            got = to_tensor(images, lay, backend="triton", **kwargs)
            for r, g in zip(ref if isinstance(ref, tuple) else (ref,), got if isinstance(got, tuple) else (got,)):
                assert r.shape == g.shape and g.dtype == torch.float32, (r.shape, g.shape)
                torch.testing.assert_close(g, r, rtol=1e-5, atol=1e-5 * float(r.abs().max()))
            cases += 1
    # Odd Y grid (y_only keeps all 28x29 blocks of the 225x223 file), out= buffer, float16.
    lay = DCTLayout("y_only", 6)
    buf = torch.full((1, 6, 28, 29), float("nan"), dtype=torch.float16)
    assert to_tensor(images[:1], lay, backend="triton", out=buf) is buf
    assert torch.equal(buf, to_tensor(images[:1], lay, backend="torch", dtype=torch.float16))
    cases += 1
    # Integer steps bit-exact (no dequantisation / normalisation) on native-sampling files.
    lay = DCTLayout("late_concat", 21, dequantize=False)
    native = [images[0], images[3]]
    ref = to_tensor(native, lay, backend="torch", crop="center", size=(80, 128), flip=[False, True])
    got = to_tensor(native, lay, backend="triton", crop="center", size=(80, 128), flip=[False, True])
    assert all(torch.equal(r, g) for r, g in zip(ref, got))
    cases += 1
    print(f"checked {cases} cases")


def _resize_child() -> None:
    """Runs in the child process with TRITON_INTERPRET=1: the resampler's Triton route against numba."""
    _setup_child()
    import numpy as np
    import torch

    import dctnet
    from dctnet.ops import DCTLayout, to_tensor
    from dctnet.ops import _triton
    from jpeg_fixtures import read_pnm, run_tool, write_ppm

    assert type(_triton._resize_kernel).__name__ == "InterpretedFunction", type(_triton._resize_kernel)
    tmp = Path(os.environ["DCTNET_OPS_TMP"])
    rgb = read_pnm(run_tool("djpeg", "-ppm", os.environ["DCTNET_OPS_PHOTO"]))
    images = []
    for i, (switches, (h, w)) in enumerate([(["-sample", "1x1"], (150, 201)), (["-sample", "2x1"], (81, 99)),
                                            (["-grayscale"], (40, 35)), (["-sample", "2x2"], (17, 9))]):
        ppm = write_ppm(tmp / f"r{i}.ppm", rgb[:h, :w])
        path = tmp / f"r{i}.jpg"
        run_tool("cjpeg", "-quality", "80", *switches, "-outfile", str(path), str(ppm))
        images.append(dctnet.read_dct(path))
    rng = np.random.default_rng(0)
    layouts = [DCTLayout("upsampling", 16).with_stats(rng.normal(0, 5, 48), rng.uniform(1, 9, 48)),
               DCTLayout("late_concat", ((0, 1, 8, 63), (0, 9), (0, 16, 2))), DCTLayout("y_only", 64)]
    cases = 0
    for layout in layouts:
        for kwargs in (dict(resize=40, crop="center", flip=[True, False, True, False]),
                       dict(resize=None, crop="random-resized", flip="random")):
            ref = to_tensor(images, layout, size=32, generator=torch.Generator().manual_seed(2), **kwargs)
            got = to_tensor(images, layout, size=32, backend="triton", generator=torch.Generator().manual_seed(2),
                            **kwargs)
            for r, g in zip(ref if isinstance(ref, tuple) else (ref,), got if isinstance(got, tuple) else (got,)):
                assert r.shape == g.shape and g.dtype == torch.float32, (r.shape, g.shape)
                torch.testing.assert_close(g, r, rtol=0, atol=1e-5 * float(r.abs().max()))
            cases += 1
    print(f"checked {cases} resize cases")


if __name__ == "__main__":
    {"compile": _compile_child, "resize": _resize_child}.get(sys.argv[1], _child)()
