"""`dctnet inspect FILE...`: what a JPEG holds, read from its header (no decoding)."""

from __future__ import annotations

import argparse
import json
import os
import sys

HELP = "show size, colour space, sampling, coding, restart interval, block geometry, tables and quality of JPEGs"

JPEG_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("files", nargs="+", metavar="FILE", help="JPEG files, or folders (searched recursively)")
    p.add_argument("--tables", action="store_true", help="print the quantisation tables as 8x8 grids")
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


def describe(header) -> dict:
    q = header.quality
    return {
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


def run(args: argparse.Namespace) -> int:
    from ..codec import JPEGError, read_header

    failures = 0
    paths = expand_paths(args.files)
    if not paths:
        print("dctnet inspect: no JPEG files found", file=sys.stderr)
        return 1
    for path in paths:
        try:
            info = describe(read_header(path))
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
              f"restart={info['restart_interval']} blocks=[{blocks}] quality={quality}")
        if args.tables:
            for c, table in enumerate(info["qtables"]):
                print(f"  component {c} quantisation table (natural order):")
                for r in range(8):
                    print("   " + " ".join(f"{v:4d}" for v in table[8 * r:8 * r + 8]))
    if failures:
        print(f"{failures} of {len(paths)} files could not be read", file=sys.stderr)
    return 1 if failures else 0
