"""`dctnet prepare SRC DST --short-side 256 --qf 90`: resize + re-encode an image tree (parallel, resumable)."""

from __future__ import annotations

import argparse
import sys

from . import int_list

HELP = ("resize the shorter side and re-encode every image of a tree as 4:2:0 JPEG at one or several "
        "qualities (the papers' preprocessing; parallel, resumable, progress bar)")




def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", metavar="SRC", help="source folder (any tree of JPEG/PNG/BMP/WebP/TIFF files)")
    p.add_argument("dst", metavar="DST", help="output folder: mirrors SRC for one quality, DST/qf<Q>/ for several")
    p.add_argument("--short-side", "-s", type=int, default=256, metavar="PX",
                   help="shorter side after resizing, Pillow bilinear (default 256; 0 keeps the size)")
    p.add_argument("--qf", "-q", type=int_list, default=[90], metavar="Q[,Q...]",
                   help="JPEG quality or qualities (standard tables, 4:2:0; default 90)")
    p.add_argument("--progressive", type=int_list, metavar="B[,B...]",
                   help="write band-ordered progressive JPEGs with these band-group boundaries, e.g. 1,6,16,64 "
                        "(lossless against the baseline file; a model using n bands then decodes only the scans "
                        "up to the first boundary >= n; put a boundary at each n your models use, and no more: "
                        "1,16,64 for FBS-16 reads ~7%% faster than 1,6,16,64)")
    p.add_argument("--restart-interval", type=int, default=None, metavar="MCUS",
                   help="restart marker every MCUS MCUs in the progressive files (default 8; 0: none): "
                        "read_to_tensor then decodes only the intervals around its crop, at ~5%% more bytes")
    p.add_argument("--threads", "-j", type=int, metavar="N", help="parallel workers (default: all cores)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from ..data.prepare import prepare_tree

    from ..codec import DEFAULT_RESTART_INTERVAL

    if args.restart_interval is not None and not args.progressive:
        print("dctnet prepare: --restart-interval applies to --progressive files only", file=sys.stderr)
        return 2
    restart = DEFAULT_RESTART_INTERVAL if args.restart_interval is None else args.restart_interval
    try:
        report = prepare_tree(args.src, args.dst, short_side=args.short_side or None, qfs=args.qf,
                              threads=args.threads, progress=not args.no_progress, progressive=args.progressive,
                              restart_interval=restart)
    except (ValueError, OSError) as e:
        print(f"dctnet prepare: {e}", file=sys.stderr)
        return 2
    print(f"dctnet prepare: {report.written} files written, {report.skipped} already complete, "
          f"{len(report.failed)} sources failed", file=sys.stderr)
    if args.progressive and report.baseline_bytes:
        change = 100.0 * (report.bytes_written / report.baseline_bytes - 1.0)
        print(f"dctnet prepare: band-ordered progressive files: {report.bytes_written} bytes, {change:+.1f}% against "
              f"baseline ({report.baseline_bytes} bytes)", file=sys.stderr)
    return 1 if report.failed else 0
