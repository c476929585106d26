"""The reader on hostile input and hostile environments.

Everything bad must give ``dctnet.JPEGError`` (a ValueError) naming the file and the reason:
never a crash, a hang, a process exit or silently wrong data, and a batch's good items are
unchanged. Whatever could crash or hang the process runs in a child process, so that a
failure fails the test instead of killing pytest.
"""

from __future__ import annotations

import gc
import os
import re
import stat
import subprocess
import sys
import textwrap
import warnings
import weakref
from pathlib import Path

import numpy as np
import pytest

import dctnet
from dctnet import codec

from jpeg_fixtures import in_place, read_pnm, run_tool, write_ppm

ROOT = Path(dctnet.__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent

# Child processes import the dctnet this process imported (not an editable install's).
PRELUDE = f"""
import sys
sys.path[:0] = [{str(ROOT)!r}, {str(TESTS)!r}]
sys.meta_path[:] = [f for f in sys.meta_path if not type(f).__module__.startswith("_editable")]
import dctnet
assert dctnet.__file__ == {dctnet.__file__!r}, dctnet.__file__
from jpeg_fixtures import in_place
"""


def run_child(code: str, *args: str, timeout: float = 300) -> str:
    """Run ``code`` in a fresh interpreter; fail (not crash) on a signal, an exit code or a hang."""
    try:
        proc = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code), *args], capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"child process hung (>{timeout} s):\n{e.stdout}\n{e.stderr}")
    if proc.returncode != 0:
        what = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit code {proc.returncode}"
        pytest.fail(f"child process failed with {what}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout


# --- Files -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ppm(tmp_path_factory, photos) -> Path:
    rgb = read_pnm(run_tool("djpeg", "-ppm", str(photos[3])))
    return write_ppm(tmp_path_factory.mktemp("hostile") / "src.ppm", rgb[:223, :225])


@pytest.fixture(scope="module")
def files(ppm) -> dict[str, Path]:
    """Multi-scan files: progressive (jpegtran's script) and sequential with one scan per
    component (non-interleaved), plus a few single-scan ones."""
    out = ppm.parent
    made = {}
    baseline = out / "baseline.jpg"
    run_tool("cjpeg", "-quality", "90", "-outfile", str(baseline), str(ppm))
    made["baseline"] = baseline
    made["progressive"] = out / "progressive.jpg"
    made["progressive"].write_bytes(run_tool("jpegtran", "-progressive", str(baseline)))
    script = out / "noninterleaved.txt"
    script.write_text("0;\n1;\n2;\n")
    made["noninterleaved"] = out / "noninterleaved.jpg"
    run_tool("cjpeg", "-quality", "90", "-scans", str(script), "-outfile", str(made["noninterleaved"]), str(ppm))
    for name, switches in {"arithmetic": ["-arithmetic"], "optimized": ["-optimize"],
                           "q96": ["-quality", "96", "-optimize"], "gray": ["-grayscale"],
                           "progressive444": ["-progressive", "-sample", "1x1"]}.items():
        made[name] = out / f"{name}.jpg"
        run_tool("cjpeg", *switches, "-outfile", str(made[name]), str(ppm))
    return made


def marker_segments(data: bytes) -> list[tuple[int, int, int]]:
    """(offset, marker code, end) of every marker segment, scans included (an SOS segment's
    end is the end of its header; entropy-coded data is skipped)."""
    out, pos = [], 2
    while pos + 4 <= len(data):
        assert data[pos] == 0xFF, pos
        code = data[pos + 1]
        if code == 0xD9:
            break
        end = pos + 2 + int.from_bytes(data[pos + 2:pos + 4], "big")
        out.append((pos, code, end))
        pos = end
        if code == 0xDA:                 # skip the entropy-coded data to the next marker
            while True:
                pos = data.index(b"\xff", pos)
                nxt = data[pos + 1]
                if nxt == 0 or 0xD0 <= nxt <= 0xD7:
                    pos += 2
                elif nxt == 0xFF:
                    pos += 1
                else:
                    break
    return out


def without_markers(data: bytes, code: int) -> bytes:
    """The file without any marker segment of this type (tables, e.g.)."""
    out, last = bytearray(), 0
    for pos, c, end in marker_segments(data):
        if c == code:
            out += data[last:pos]
            last = end
    return bytes(out + data[last:])


def scan_ranges(data: bytes) -> list[tuple[int, int]]:
    """(offset of the SOS marker, end of the scan's entropy-coded data) of every scan."""
    segs = marker_segments(data)
    out = []
    for i, (pos, code, _) in enumerate(segs):
        if code == 0xDA:
            end = segs[i + 1][0] if i + 1 < len(segs) else len(data) - 2
            out.append((pos, end))
    return out


def test_helpers_see_every_scan(files):
    assert len(scan_ranges(files["baseline"].read_bytes())) == 1
    assert len(scan_ranges(files["noninterleaved"].read_bytes())) == 3
    assert len(scan_ranges(files["progressive"].read_bytes())) == 10


# --- 1. Truncation inside a later scan header --------------------------------------------

SWEEP = """
import re, sys, warnings
import numpy as np, torch
import dctnet
from dctnet.ops import DCTLayout, read_to_tensor
from test_hostile import marker_segments

path = sys.argv[1]
data = open(path, "rb").read()
full = dctnet.read_dct(data)
headers = [(pos, end) for pos, code, end in marker_segments(data) if code == 0xDA][1:]
layout = DCTLayout("upsampling", 16)
good_row = read_to_tensor([path], layout, size=96)[0]
pattern = re.compile(r"^<bytes(?: #0)?>: corrupt JPEG data \\(.*\\): (\\d+) of (\\d+) blocks are missing and left zero$")
total = sum(p.shape[0] * p.shape[1] for p in full.planes)
cuts = 0
for sos, end in headers:
    for cut in range(sos, end + 4):
        part = data[:cut]
        cuts += 1
        # strict: always an error
        try:
            dctnet.read_dct(part)
        except dctnet.JPEGError as e:
            assert e.source == "<bytes>" and e.reason, e
        else:
            raise AssertionError(f"strict read of a file cut at {cut} succeeded")
        # lenient: an image with a warning counting the missing blocks, or an error
        for strict in (True, False):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                try:
                    img = dctnet.read_dct(part, strict=strict)
                except dctnet.JPEGError:
                    img = None
            if img is not None:
                assert not strict
                found = [pattern.match(str(w.message)) for w in caught if issubclass(w.category, dctnet.JPEGWarning)]
                found = [m for m in found if m]
                assert len(found) == 1, [str(w.message) for w in caught]
                assert int(found[0].group(1)) == img.missing_blocks and int(found[0].group(2)) == total
                assert img.block_shapes == full.block_shapes
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", dctnet.JPEGWarning)
                batch = in_place(dctnet.read_dct_batch([part, data], threads=2, on_error="return", strict=strict))
                out, errors = read_to_tensor([part, path], layout, size=96, on_error="return", strict=strict,
                                             threads=2)
            assert isinstance(batch[0], dctnet.JPEGError if strict else (dctnet.JPEGError, dctnet.DCTImage))
            assert all(np.array_equal(a, b) for a, b in zip(batch[1].planes, full.planes))
            assert errors[1] is None and torch.equal(out[1], good_row)
            if strict:
                assert isinstance(errors[0], dctnet.JPEGError) and "<bytes #0>" in str(errors[0])
            else:
                assert errors[0] is None or isinstance(errors[0], dctnet.JPEGError)
print("cuts", cuts)
"""


@pytest.mark.parametrize("kind", ["progressive", "noninterleaved"])
def test_truncation_inside_any_later_scan_header(files, kind):
    """Cut at every byte of every scan header after the first (and a few bytes after): the
    reader used to read a NULL component pointer estimating the missing blocks."""
    out = run_child(SWEEP, str(files[kind]))
    assert int(out.split()[-1]) > 20


def test_missing_blocks_of_a_cut_between_scans(files):
    data = files["noninterleaved"].read_bytes()
    full = dctnet.read_dct(data)
    second = scan_ranges(data)[1][0]
    with pytest.warns(dctnet.JPEGWarning, match="first in scan 1"):
        img = dctnet.read_dct(data[:second], strict=False)
    # Y is complete; Cb and Cr were never reached: exactly their blocks are missing
    assert np.array_equal(img.planes[0], full.planes[0])
    assert not img.planes[1].any() and not img.planes[2].any()
    assert img.missing_blocks == sum(p.shape[0] * p.shape[1] for p in full.planes[1:])


# --- 2. Tables do not carry over ----------------------------------------------------------

def test_a_file_without_dqt_fails_even_after_another_read(files):
    q96 = files["q96"].read_bytes()
    nodqt = without_markers(q96, 0xDB)
    with pytest.raises(dctnet.JPEGError, match="Quantization table 0x00 was not defined"):
        dctnet.read_dct(nodqt)
    assert dctnet.read_dct(q96).quality == 96.0
    with pytest.raises(dctnet.JPEGError, match="Quantization table 0x00 was not defined"):
        dctnet.read_dct(nodqt)
    with pytest.raises(dctnet.JPEGError, match="not defined"):
        dctnet.read_header(nodqt)
    out = in_place(dctnet.read_dct_batch([q96, nodqt, q96, nodqt], threads=1, on_error="return"))
    assert [type(x).__name__ for x in out] == ["DCTImage", "JPEGError", "DCTImage", "JPEGError"]


def test_a_file_without_dht_gets_libjpegs_defaults_not_the_previous_tables(files):
    """libjpeg-turbo 2.1.5 decodes a sequential Huffman file without DHT (Motion-JPEG style)
    with the standard Annex K tables, which cjpeg uses unless -optimize: such a file reads
    exactly like the original, whatever was read before (here files with optimised tables).
    A progressive file without DHT fails."""
    data = files["baseline"].read_bytes()
    nodht = without_markers(data, 0xC4)
    assert len(nodht) < len(data)
    ref = dctnet.read_dct(data)
    for before in (None, files["optimized"], files["progressive"]):
        if before is not None:
            dctnet.read_dct(before)
        img = dctnet.read_dct(nodht)
        assert all(np.array_equal(a, b) for a, b in zip(img.planes, ref.planes)), before
    prog = without_markers(files["progressive"].read_bytes(), 0xC4)
    for before in (None, files["optimized"]):
        if before is not None:
            dctnet.read_dct(before)
        with pytest.raises(dctnet.JPEGError, match="Huffman table 0x00 was not defined"):
            dctnet.read_dct(prog)


def _outcome(item) -> tuple:
    if isinstance(item, BaseException):
        return (type(item).__name__, str(item))
    return (item.source, item.qtables.tobytes(), tuple(p.tobytes() for p in item.planes), item.missing_blocks)


def test_results_do_not_depend_on_order_or_threads(files, photos):
    q96 = files["q96"].read_bytes()
    corpus: list = [str(p) for p in photos[:6]] + [str(p) for p in files.values()]
    corpus += [without_markers(q96, 0xDB), without_markers(files["baseline"].read_bytes(), 0xC4),
               without_markers(files["optimized"].read_bytes(), 0xC4),
               without_markers(files["progressive"].read_bytes(), 0xC4), q96[: len(q96) // 2]]
    names = [c if isinstance(c, str) else f"<bytes #{i}>" for i, c in enumerate(corpus)]

    def single(order):
        out = {}
        for i in order:
            try:
                img = dctnet.read_dct(corpus[i])
                out[i] = _outcome(img)[1:]
            except dctnet.JPEGError as e:
                out[i] = ("JPEGError", e.reason)
        return out

    forward = list(range(len(corpus)))
    backward = forward[::-1]
    ref = single(forward)
    assert single(backward) == ref
    assert sum(v[0] == "JPEGError" for v in ref.values()) >= 3    # no DQT, progressive without DHT, truncated
    for threads in (1, 2):
        for order in (forward, backward):
            out = in_place(dctnet.read_dct_batch([corpus[i] for i in order], threads=threads, on_error="return"))
            for i, item in zip(order, out):
                got = _outcome(item)
                if isinstance(item, BaseException):
                    assert (got[0], got[1].split(": ", 1)[1]) == ref[i], names[i]
                else:
                    assert got[1:] == ref[i], names[i]


# --- 3. Only regular files, size limit, SOI before anything else -----------------------------

SPECIAL = """
import os, sys, resource
import dctnet
from dctnet import codec
from dctnet.ops import DCTLayout, read_to_tensor

d, good = sys.argv[1], sys.argv[2]
fifo, zero = os.path.join(d, "x.JPEG"), os.path.join(d, ".JPEG")
os.mkfifo(fifo)
os.symlink("/dev/zero", zero)
for path in (fifo, zero):
    kind = "FIFO" if path == fifo else "character device"
    for read in (dctnet.read_dct, dctnet.read_header, codec.read_source):
        try:
            read(path)
        except dctnet.JPEGError as e:
            assert e.source == path and e.reason == f"not a regular file ({kind})", e
        else:
            raise AssertionError(read)
    out = in_place(dctnet.read_dct_batch([path, good], on_error="return", threads=2))
    assert isinstance(out[0], dctnet.JPEGError) and "not a regular file" in str(out[0]) and path in str(out[0])
    assert isinstance(out[1], dctnet.DCTImage)
    _, errors = read_to_tensor([good, path], DCTLayout("upsampling", 8), size=96, on_error="return")
    assert errors[0] is None and "not a regular file" in str(errors[1])

# Large files: nothing is read before the size and the first bytes are checked, and a header
# read stops at the first scan. (The address-space limit turns a regression into a
# MemoryError instead of gigabytes of RSS.)
vm = int(open("/proc/self/statm").read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
resource.setrlimit(resource.RLIMIT_AS, (vm + (512 << 20), resource.RLIM_INFINITY))
big = os.path.join(d, "big.JPEG")
with open(big, "wb") as f:
    f.truncate(3 << 30)
notjpeg = os.path.join(d, "notjpeg.JPEG")
with open(notjpeg, "wb") as f:
    f.write(b"GIF89a")
    f.truncate(900 << 20)
header = os.path.join(d, "header.JPEG")
data = open(good, "rb").read()
with open(header, "wb") as f:
    f.write(data)
    f.truncate(900 << 20)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
for read in (dctnet.read_dct, codec.read_source, dctnet.read_header):
    try:
        read(big)
    except dctnet.JPEGError as e:
        assert "file of 3221225472 bytes exceeds the limit of 1073741824 bytes (max_bytes)" in str(e), e
    else:
        raise AssertionError(read)
for read in (dctnet.read_dct, codec.read_source, dctnet.read_header):
    try:
        read(notjpeg)
    except dctnet.JPEGError as e:
        assert e.reason == "Not a JPEG file: starts with 0x47 0x49", e
    else:
        raise AssertionError(read)
h, g = dctnet.read_header(header), dctnet.read_header(good)
assert (h.width, h.height, h.block_shapes) == (g.width, g.height, g.block_shapes)
grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024
assert grown < 64 << 20, f"RSS grew by {grown >> 20} MiB"
print("ok")
"""


def test_fifos_devices_and_large_files(tmp_path, photos):
    """A FIFO used to hang every reader, /dev/zero to be read until memory ran out, and any
    file to be read whole before a check."""
    assert run_child(SPECIAL, str(tmp_path), str(photos[0]), timeout=120).strip() == "ok"


def test_directory_is_a_jpeg_error_and_an_is_a_directory_error(tmp_path):
    for read in (dctnet.read_dct, dctnet.read_header, codec.read_source):
        with pytest.raises(dctnet.JPEGError, match="not a regular file \\(directory\\)") as e:
            read(tmp_path)
        assert isinstance(e.value, IsADirectoryError) and e.value.source == str(tmp_path)


def test_max_bytes(photos):
    path = photos[0]
    size = path.stat().st_size
    for src in (path, path.read_bytes()):
        with pytest.raises(dctnet.JPEGError, match=f"{size} bytes exceeds the limit of {size - 1} bytes"):
            dctnet.read_dct(src, max_bytes=size - 1)
        with pytest.raises(dctnet.JPEGError, match="max_bytes"):
            codec.read_source(src, max_bytes=size - 1)
        assert dctnet.read_dct(src, max_bytes=size).width > 0
        assert dctnet.read_dct(src, max_bytes=None).width > 0
    out = in_place(dctnet.read_dct_batch([path, str(path)], max_bytes=size - 1, on_error="return"))
    assert all(isinstance(e, dctnet.JPEGError) and "max_bytes" in str(e) for e in out)
    with pytest.raises(ValueError, match="max_bytes must be a non-negative int"):
        dctnet.read_dct(path, max_bytes=-1)


def test_read_source(photos, tmp_path):
    data, name = codec.read_source(photos[0])
    assert bytes(data) == photos[0].read_bytes() and name == str(photos[0])
    raw = photos[0].read_bytes()
    assert codec.read_source(raw) == (raw, "<bytes>")
    for bad, reason in ((b"", "empty input"), (b"\xff", "only 1 byte"), (b"GIF89a", "starts with 0x47 0x49")):
        (tmp_path / "bad.jpg").write_bytes(bad)
        for src in (bad, tmp_path / "bad.jpg"):
            with pytest.raises(dctnet.JPEGError, match=reason):
                codec.read_source(src)
            with pytest.raises(dctnet.JPEGError, match=reason if isinstance(src, Path) else f"{reason}|Premature end"):
                dctnet.read_dct(src)
    with pytest.raises(FileNotFoundError):
        codec.read_source(tmp_path / "missing.jpg")


# --- 4. File names -----------------------------------------------------------------------------

class BytesPath:
    """An os.PathLike whose path is bytes (any name the file system accepts)."""

    def __init__(self, path: bytes):
        self.path = path

    def __fspath__(self) -> bytes:
        return self.path


def test_non_utf8_names_and_nul_bytes(tmp_path, photos):
    raw = os.fsencode(tmp_path) + b"/\xff\xfe.JPEG"
    with open(raw, "wb") as f:
        f.write(photos[0].read_bytes())
    ref = dctnet.read_dct(photos[0])
    name = os.fsdecode(raw)                         # str with surrogateescape
    for src in (BytesPath(raw), name, Path(name)):
        img = dctnet.read_dct(src)
        assert img.source == name and np.array_equal(img.planes[0], ref.planes[0])
        assert dctnet.read_header(src).width == ref.width
        assert bytes(codec.read_source(src)[0]) == photos[0].read_bytes()
    nul = str(photos[0]) + "\0/x"
    with pytest.raises(dctnet.JPEGError, match="embedded null byte") as e:
        dctnet.read_dct(nul)
    assert e.value.source == nul
    with pytest.raises(dctnet.JPEGError, match="embedded null byte"):
        codec.read_source(nul)
    lone = str(tmp_path / "\ud800.JPEG")            # not encodable at all
    out = in_place(dctnet.read_dct_batch([BytesPath(raw), name, nul, lone, photos[0]], on_error="return", threads=2))
    assert [type(x).__name__ for x in out] == ["DCTImage", "DCTImage", "JPEGError", "JPEGError", "DCTImage"]
    assert out[2].source == nul and out[3].source == lone
    assert np.array_equal(out[4].planes[0], ref.planes[0])


def test_non_contiguous_buffer_is_that_items_error(photos):
    data = np.frombuffer(photos[0].read_bytes(), np.uint8)
    strided = memoryview(np.repeat(data, 2)[::2])
    with pytest.raises(dctnet.JPEGError, match="contiguous"):
        dctnet.read_dct(strided)
    out = in_place(dctnet.read_dct_batch([strided, data.tobytes()], on_error="return"))
    assert isinstance(out[0], dctnet.JPEGError) and isinstance(out[1], dctnet.DCTImage)


# --- 5. Thread creation failure ------------------------------------------------------------

THREADS = """
import os, sys, resource, warnings
import numpy as np
import dctnet

files = sys.argv[1:]
ref = dctnet.read_dct_batch(files, threads=1)
vm = int(open("/proc/self/statm").read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
resource.setrlimit(resource.RLIMIT_AS, (vm + (200 << 20), resource.RLIM_INFINITY))
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    out = dctnet.read_dct_batch(files, threads=3000)
messages = [str(w.message) for w in caught if issubclass(w.category, RuntimeWarning)]
assert len(messages) == 1 and "could start only" in messages[0], messages
for a, b in zip(out, ref):
    assert all(np.array_equal(x, y) for x, y in zip(a.planes, b.planes))
print("ok")
"""


def test_thread_creation_failure_falls_back(photos):
    """Creating threads past RLIMIT_AS used to abort the process (std::system_error)."""
    assert run_child(THREADS, *map(str, photos[:60])).strip().endswith("ok")


# --- 6. Returned errors keep nothing alive --------------------------------------------------

def _bad_batch(variants, tmp_path) -> list:
    return [variants["baseline_420"], variants["baseline_420"].read_bytes()[:3000], variants["tiny17x9_baseline_420"],
            variants["baseline_444"], str(tmp_path / "missing.jpg")]


def assert_frames_hold_none(error: BaseException, types: tuple) -> None:
    """The frames of the error's traceback (after this test's own) hold no object of these
    types, directly or in a list/tuple: a frame holding the error makes a reference cycle,
    one holding the batch keeps it alive as long as the error."""
    tb = error.__traceback__.tb_next
    assert tb is not None
    while tb is not None:
        for key, value in tb.tb_frame.f_locals.items():
            items = value if isinstance(value, (list, tuple)) else [value]
            assert not any(isinstance(v, types) for v in items), (tb.tb_frame.f_code.co_name, key)
        tb = tb.tb_next


def test_read_to_tensor_errors_do_not_keep_the_output_alive(variants, tmp_path):
    import torch
    from dctnet.ops import DCTLayout, read_to_tensor

    srcs = _bad_batch(variants, tmp_path)
    gc.collect()
    gc.disable()
    try:
        out, errors = read_to_tensor(srcs, DCTLayout("upsampling", 8), size=96, on_error="return")
        assert [e is None for e in errors] == [True, False, False, True, False]
        assert all(e.__traceback__ is None for e in errors if e is not None)
        ref = weakref.ref(out)
        del out
        assert ref() is None, "an error keeps the output tensor alive (reference cycle through a traceback)"
        # raise mode: the frames the error passes through hold neither the output nor the batch
        with pytest.raises(dctnet.JPEGError) as info:
            read_to_tensor(srcs, DCTLayout("upsampling", 8), size=96)
        assert_frames_hold_none(info.value, (torch.Tensor, dctnet.DCTImage, BaseException))
    finally:
        gc.enable()


def test_read_dct_batch_error_does_not_keep_the_batch_alive(variants, tmp_path):
    srcs = _bad_batch(variants, tmp_path)
    gc.collect()
    gc.disable()
    try:
        with pytest.raises(dctnet.JPEGError) as info:
            dctnet.read_dct_batch(srcs)
        assert_frames_hold_none(info.value, (dctnet.DCTImage, BaseException))
        with pytest.raises(dctnet.JPEGError) as info:
            dctnet.read_dct(srcs[1])
        assert_frames_hold_none(info.value, (BaseException,))
    finally:
        gc.enable()


# --- 7. read_to_tensor warns like read_dct ---------------------------------------------------

def test_lenient_read_to_tensor_warns_like_read_dct(variants, tmp_path):
    from dctnet.ops import DCTLayout, read_to_tensor

    data = variants["baseline_420"].read_bytes()
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) * 2 // 3])
    with pytest.warns(dctnet.JPEGWarning) as want:
        img = dctnet.read_dct(cut, strict=False)
    assert img.missing_blocks > 0
    for src in ([cut], [variants["baseline_420"], cut]):     # the fast path (4:2:0)
        with pytest.warns(dctnet.JPEGWarning) as got:
            out, errors = read_to_tensor(src, DCTLayout("upsampling", 8), size=96, strict=False, on_error="return")
        assert errors == [None] * len(src)
        assert ([str(w.message) for w in got if w.category is dctnet.JPEGWarning]
                == [str(w.message) for w in want if w.category is dctnet.JPEGWarning])
        assert str(cut) in str(got[0].message) and f"{img.missing_blocks} of" in str(got[0].message)
    with pytest.raises(dctnet.JPEGError, match="Premature end"):
        read_to_tensor([cut], DCTLayout("upsampling", 8), size=96)


# --- 8. End of file and scan work ---------------------------------------------------------

@pytest.mark.parametrize("kind", ["baseline", "progressive", "noninterleaved", "gray", "progressive444"])
def test_file_missing_only_its_eoi(files, kind):
    """Strict: an error (the file ends early). Lenient: every coefficient, and a warning that
    counts 0 missing blocks (the source running dry is not data loss by itself)."""
    data = files[kind].read_bytes()
    assert data[-2:] == b"\xff\xd9"
    full = dctnet.read_dct(data)
    with pytest.raises(dctnet.JPEGError, match="Premature end of JPEG file"):
        dctnet.read_dct(data[:-2])
    with pytest.warns(dctnet.JPEGWarning, match=r"Premature end of JPEG file.*: 0 of \d+ blocks are missing"):
        img = dctnet.read_dct(data[:-2], strict=False)
    assert img.missing_blocks == 0
    assert all(np.array_equal(a, b) for a, b in zip(img.planes, full.planes))


def test_arithmetic_file_missing_its_eoi_counts_at_most_one_imcu_row(files):
    """The arithmetic decoder invents bits without a warning, so the end of data is data loss
    there: the count is an upper bound of one iMCU row."""
    data = files["arithmetic"].read_bytes()
    full = dctnet.read_dct(data)
    with pytest.warns(dctnet.JPEGWarning):
        img = dctnet.read_dct(data[:-2], strict=False)
    assert all(np.array_equal(a, b) for a, b in zip(img.planes, full.planes))
    row = 2 * full.planes[0].shape[1] + full.planes[1].shape[1] + full.planes[2].shape[1]
    assert img.missing_blocks <= row


@pytest.fixture(scope="module")
def many_scans(tmp_path_factory, photos) -> bytes:
    """A progressive 1600x1600 file whose full-image luma AC scan is repeated to 999 scans (a
    repeated first scan is valid: it decodes the same coefficients again)."""
    from PIL import Image

    out = tmp_path_factory.mktemp("scans")
    Image.open(photos[5]).convert("RGB").resize((1600, 1600)).save(out / "big.ppm")
    script = out / "four.txt"
    script.write_text("0,1,2: 0-0, 0, 0;\n0: 1-63, 0, 0;\n1: 1-63, 0, 0;\n2: 1-63, 0, 0;\n")
    run_tool("cjpeg", "-quality", "90", "-scans", str(script), "-outfile", str(out / "four.jpg"), str(out / "big.ppm"))
    data = (out / "four.jpg").read_bytes()
    start, end = scan_ranges(data)[1]
    return data[:end] + data[start:end] * 995 + data[end:]


def test_scan_work_is_bounded(many_scans):
    blocks = 200 * 200                                   # luma blocks of one repeated scan
    img = dctnet.read_dct(many_scans, max_scans=None, max_scan_blocks=None)
    assert img.progressive
    with pytest.raises(dctnet.JPEGError, match="more than 990 scans"):
        dctnet.read_dct(many_scans, max_scans=990, max_scan_blocks=None)
    with pytest.raises(dctnet.JPEGError, match=r"more than 20000000 block decodes over its (\d+) scans so far "
                                               r"\(limit max_scan_blocks\)") as e:
        dctnet.read_dct(many_scans, max_scan_blocks=20_000_000)
    scans = int(re.search(r"its (\d+) scans", str(e.value)).group(1))
    assert scans < 20_000_000 // blocks + 5
    # the default bound: 999 full luma scans of a 1600x1600 image are ~40M block decodes
    with pytest.raises(dctnet.JPEGError, match="max_scan_blocks"):
        dctnet.read_dct(many_scans)
    small = in_place(dctnet.read_dct_batch([many_scans, many_scans], on_error="return", max_scan_blocks=1_000_000))
    assert all(isinstance(x, dctnet.JPEGError) and "max_scan_blocks" in str(x) for x in small)


def test_read_header_with_large_metadata_and_odd_layouts(tmp_path, files):
    """read_header reads files in chunks up to the first scan: headers larger than a chunk,
    fill bytes and garbage between segments (then libjpeg's own resync) still read like
    read_dct does."""
    data = files["progressive"].read_bytes()
    app = b"\xff\xe2" + (65533 + 2).to_bytes(2, "big") + bytes(range(256)) * 255 + b"\0" * (65533 - 65280)
    variants = {
        "big_metadata": data[:2] + app * 3 + data[2:],
        "fill_bytes": data[:2] + b"\xff\xff\xff" + data[2:],
        "garbage": data[:2] + app + b"garbage" + data[2 + 0:],
    }
    for name, variant in variants.items():
        path = tmp_path / f"{name}.jpg"
        path.write_bytes(variant)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", dctnet.JPEGWarning)
            try:
                full = dctnet.read_dct(path)
            except dctnet.JPEGError as e:
                with pytest.raises(dctnet.JPEGError, match=re.escape(e.reason)):
                    dctnet.read_header(path)
                continue
            header = dctnet.read_header(path)
        assert (header.width, header.height, header.block_shapes, header.progressive) == \
            (full.width, full.height, full.block_shapes, full.progressive), name
        assert np.array_equal(header.qtables, full.qtables), name
