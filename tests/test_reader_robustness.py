"""The reader on hostile input: no leaks on error paths, no crash on mutated files.

A longer fuzz run than the suite's bounded one:
    DCTNET_FUZZ_EXAMPLES=20000 python -m pytest tests/test_reader_robustness.py -k fuzz -q
"""

from __future__ import annotations

import os
import warnings

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import dctnet
from dctnet.imaging import decode_rgb
from dctnet.ops import DCTLayout, read_to_tensor

from jpeg_fixtures import in_place
from jpeg_surgery import sos_data_start, with_precision, with_scan_garbage, with_size, with_zero_qstep

FUZZ_EXAMPLES = int(os.environ.get("DCTNET_FUZZ_EXAMPLES", "400"))


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.fixture(scope="module")
def small_jpegs(variants) -> list[bytes]:
    return [variants[name].read_bytes() for name in ("odd225x223_baseline_420", "odd225x223_progressive_420",
                                                      "odd225x223_baseline_444", "gray", "arithmetic")]


def test_10000_failing_reads_leave_rss_flat(small_jpegs):
    good = small_jpegs[0]
    start = sos_data_start(good)
    failing = [
        good[: len(good) // 2],                 # fails mid-scan, after all allocations
        with_scan_garbage(good),
        good[: start + 4],
        with_size(good, 65535, 65535),
        with_zero_qstep(good),
        with_precision(good, 12),
        small_jpegs[1][: len(small_jpegs[1]) * 2 // 3],  # progressive, fails in a later scan
        b"\xff\xd8\xff\xe0garbage",
    ]

    def loop(n: int) -> None:
        for i in range(n):
            try:
                dctnet.read_dct(failing[i % len(failing)])
            except dctnet.JPEGError:
                pass
            else:
                raise AssertionError(f"input {i % len(failing)} did not fail")

    loop(2000)  # warm up allocator pools and thread-local decompressor
    before = rss_bytes()
    loop(10000)
    batch = in_place(dctnet.read_dct_batch(failing * 250, threads=2, on_error="return"))
    assert all(isinstance(e, dctnet.JPEGError) for e in batch)
    grown = rss_bytes() - before
    assert grown < 4 * 2**20, f"RSS grew by {grown / 2**20:.1f} MiB over 12000 failing reads"


def test_successful_reads_release_their_buffers(small_jpegs):
    def loop(n):
        for i in range(n):
            img = dctnet.read_dct(small_jpegs[i % len(small_jpegs)])
            assert img.planes[0].size > 0

    loop(500)
    before = rss_bytes()
    loop(3000)
    assert rss_bytes() - before < 4 * 2**20


def mutate(data: bytes, edits: list[tuple[int, int, int]], cut: int | None) -> bytes:
    out = bytearray(data)
    for kind, pos, value in edits:
        pos %= len(out)
        if kind == 0:
            out[pos] = value
        elif kind == 1:
            out.insert(pos, value)
        elif len(out) > 1:
            del out[pos]
    if cut is not None:
        out = out[: cut % (len(out) + 1)]
    return bytes(out)


FUZZ_LAYOUT = DCTLayout("upsampling", 6)


@pytest.fixture(scope="module")
def good_row(small_jpegs):
    return read_to_tensor([small_jpegs[0]], FUZZ_LAYOUT, size=64)[0]


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(which=st.integers(0, 4),
       edits=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 2**31), st.integers(0, 255)), max_size=12),
       cut=st.none() | st.integers(0, 2**31),
       strict=st.booleans())
def test_fuzz_mutated_jpegs_never_crash(small_jpegs, good_row, which, edits, cut, strict):
    data = mutate(small_jpegs[which], edits, cut)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dctnet.JPEGWarning)
        # The fused read and the RGB decode path take the same bytes beside a good file:
        # an error or a result, never a crash, and the good neighbour's row is unchanged.
        x, errors = read_to_tensor([data, small_jpegs[0]], FUZZ_LAYOUT, size=64, strict=strict,
                                   max_pixels=4_000_000, on_error="return", threads=2)
        assert errors[1] is None and torch.equal(x[1], good_row)
        assert errors[0] is None or isinstance(errors[0], (dctnet.JPEGError, ValueError))
        try:
            pixels = decode_rgb(data, max_pixels=4_000_000)
            assert pixels.dtype == np.uint8 and pixels.ndim == 3 and pixels.shape[2] == 3
        except dctnet.JPEGError as e:
            assert e.source == "<bytes>" and e.reason
        try:
            img = dctnet.read_dct(data, strict=strict, max_pixels=4_000_000)
        except dctnet.JPEGError as e:
            assert e.source == "<bytes>" and e.reason
            return
    # Whatever decodes is self-consistent.
    assert 1 <= img.num_components <= 4
    for plane, (h, v) in zip(img.planes, img.sampling):
        assert plane.dtype == np.int16 and plane.ndim == 3 and plane.shape[2] == 64
    assert img.qtables.shape == (img.num_components, 64) and (img.qtables > 0).all()
    assert img.width * img.height <= 4_000_000
