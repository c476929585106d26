"""`dctnet inspect FILE...`: what a JPEG holds, read from its header and markers (no decoding)."""

from __future__ import annotations

import argparse
import json
import os
import sys

HELP = ("show size, colour space, sampling, coding, restart interval, block geometry, tables, quality and scan "
        "script (band-ordered or not) of JPEGs")

JPEG_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", metavar="FILE", help="JPEG files, or folders (searched recursively)")
    p.add_argument("--tables", action="store_true", help="print the quantisation tables as 8x8 grids")
    p.add_argument("--scans", action="store_true",
                   help="print the scan script: components, bands Ss..Se, Ah/Al of each scan, and the bands "
                        "complete after it")
    p.add_argument("--json", action="store_true", help="one JSON object per file instead of text")


def expand_paths(items: list[str]) -> list[str]:
    """Files as given; folders replaced by the JPEG files below them, sorted."""
    out = []
    for item in items:
        if os.path.isdir(item):
            found = []
            for root, _, names in os.walk(item):
                found += [os.path.join(root, n) for n in names if n.lower().endswith(JPEG_SUFFIXES)]
            out += sorted(found)
        else:
            out.append(item)
    return out


COMPONENT_NAMES = {1: ("Y",), 3: ("Y", "Cb", "Cr"), 4: ("C", "M", "Y", "K")}


def describe(header, script=None) -> dict:
    """A file's header (and scan script, when given) as a JSON-ready dict."""
    q = header.quality
    info = {
        "file": header.source,
        "width": header.width,
        "height": header.height,
        "colorspace": header.colorspace,
        "subsampling": header.subsampling,
        "sampling": [list(s) for s in header.sampling],
        "coding": header.coding,
        "restart_interval": header.restart_interval,
        "blocks": [list(b) for b in header.block_shapes],
        "quality": None if q is None else round(q, 2),
        "qtables": header.qtables.tolist(),
    }
    if script is not None:
        groups = script.band_groups
        info["band_ordered"] = groups is not None
        info["band_groups"] = None if groups is None else list(groups)
        info["scans"] = [{"components": list(s.components), "ss": s.ss, "se": s.se, "ah": s.ah, "al": s.al,
                          "start": s.start, "end": s.end, "complete": list(s.complete)} for s in script.scans]
        if script.truncated or script.problem:
            info["scan_problem"] = script.problem or "more scans than the scan limit"
    return info


def scan_summary(info: dict) -> str:
    """``scans=10 band-ordered=1,6,16,64`` (or ``not band-ordered``)."""
    if "scans" not in info:
        return ""
    text = f" scans={len(info['scans'])}"
    if info["coding"].startswith("progressive"):
        groups = info["band_groups"]
        text += f" band-ordered={','.join(map(str, groups))}" if groups else " not-band-ordered"
    return text


def scan_lines(info: dict) -> list[str]:
    """One line per scan: components, bands, successive approximation, bands complete after it."""
    names = COMPONENT_NAMES.get(len(info["sampling"]), tuple(str(c) for c in range(len(info["sampling"]))))
    lines = []
    for i, s in enumerate(info["scans"], 1):
        comps = ",".join(names[c] for c in s["components"])
        done = " ".join(f"{names[c]}:{n}" for c, n in enumerate(s["complete"]))
        lines.append(f"  scan {i:3d}: {comps:<8} bands {s['ss']:2d}..{s['se']:2d}  Ah={s['ah']} Al={s['al']}  "
                     f"bytes {s['start']}..{s['end']}  complete after: {done}")
    if "scan_problem" in info:
        lines.append(f"  (scan walk stopped: {info['scan_problem']})")
    return lines


def run(args: argparse.Namespace) -> int:
    from ..codec import JPEGError, read_header, scan_script

    failures = 0
    paths = expand_paths(args.files)
    if not paths:
        print("dctnet inspect: no JPEG files found", file=sys.stderr)
        return 1
    for path in paths:
        try:
            info = describe(read_header(path), scan_script(path))
        except (JPEGError, OSError) as e:
            failures += 1
            print(f"error: {e}", file=sys.stderr)
            continue
        if args.json:
            print(json.dumps(info))
            continue
        quality = "not IJG-scaled" if info["quality"] is None else f"{info['quality']:g}"
        blocks = ", ".join(f"{b[0]}x{b[1]}" for b in info["blocks"])
        print(f"{path}: {info['width']}x{info['height']} {info['colorspace']} {info['subsampling']} "
              f"sampling={' '.join(f'{h}x{v}' for h, v in info['sampling'])} {info['coding']} "
              f"restart={info['restart_interval']} blocks=[{blocks}] quality={quality}{scan_summary(info)}")
        if args.scans:
            for line in scan_lines(info):
                print(line)
        if args.tables:
            for c, table in enumerate(info["qtables"]):
                print(f"  component {c} quantisation table (natural order):")
                for r in range(8):
                    print("   " + " ".join(f"{v:4d}" for v in table[8 * r:8 * r + 8]))
    if failures:
        print(f"{failures} of {len(paths)} files could not be read", file=sys.stderr)
    return 1 if failures else 0
