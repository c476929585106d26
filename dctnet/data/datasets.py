"""Labelled image folders: what `dctnet eval` (and later training) reads.

Three layouts, detected by :func:`open_dataset`:

* **class-per-folder** (ImageFolder): ``ROOT/<class>/<image>.jpg``. When every folder
  name is a synset (or a class name) of the class list, the label is that class's index in
  the list, so a subset of ImageNet's classes keeps ImageNet's indices; otherwise the
  classes are the sorted folder names (torchvision's ``ImageFolder`` order).
* **flat folder with a labels file** (the ImageNet validation layout):
  ``ROOT/ILSVRC2012_val_00000001.JPEG`` ... plus ``labels=FILE`` whose lines are
  ``<file name> <label>`` (whitespace, tab or comma separated; the label an index into the
  class list or a synset), or Kaggle's ``LOC_val_solution.csv``
  (``ImageId,PredictionString``, the first token of the prediction string being the
  synset). The devkit's ``ILSVRC2012_validation_ground_truth.txt`` holds ILSVRC2012_IDs,
  which are *not* the standard class indices: it is rejected with an explanation.
* **flat folder with synset-prefixed names**: ``ROOT/n01440764_tench.JPEG`` (the shared
  sample); the label is the synset's line in the class list.

Class lists are TSV files, one class per line: ``synset<TAB>name`` (the line number, from
0, is the class index). ImageNet-1k's list ships with the package
(:func:`imagenet_classes`) and is the default everywhere.
"""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

__all__ = [
    "ClassList",
    "Dataset",
    "IMAGE_SUFFIXES",
    "imagenet_classes",
    "load_class_list",
    "open_dataset",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif")
_SYNSET = re.compile(r"^(n\d{8})")
IMAGENET_CLASSES_TSV = Path(__file__).with_name("imagenet_classes.tsv")


@dataclass(frozen=True)
class ClassList:
    """An ordered class list: ``synsets[i]`` and ``names[i]`` describe class index ``i``."""

    synsets: tuple[str, ...]
    names: tuple[str, ...]
    source: str = "<memory>"

    def __len__(self) -> int:
        return len(self.synsets)

    @property
    def index(self) -> dict[str, int]:
        """Synset (or, when no synsets, name) -> class index."""
        return {s: i for i, s in enumerate(self.synsets)}

    def lookup(self, key: str) -> int | None:
        """Index of a synset or a class name, or ``None``."""
        by_synset = self.index
        if key in by_synset:
            return by_synset[key]
        for i, n in enumerate(self.names):
            if n == key:
                return i
        return None


def load_class_list(path: str | os.PathLike) -> ClassList:
    """Read a class list TSV (``synset<TAB>name`` per line; a line with one field is both).

    Raises ``ValueError`` naming the file and line for empty files and duplicate synsets.
    """
    path = os.fspath(path)
    synsets, names = [], []
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(f"{path}: not a UTF-8 text file of class names ({e.reason} at byte {e.start})") from None
    if "\0" in text:
        raise ValueError(f"{path}: not a text file of class names (NUL bytes)")
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        synset = parts[0].strip()
        name = parts[1].strip() if len(parts) > 1 and parts[1].strip() else synset
        if synset in synsets:
            raise ValueError(f"{path}:{lineno}: duplicate class {synset!r}")
        synsets.append(synset)
        names.append(name)
    if not synsets:
        raise ValueError(f"{path}: empty class list")
    return ClassList(tuple(synsets), tuple(names), path)


@lru_cache(maxsize=1)
def imagenet_classes() -> ClassList:
    """The 1000 ImageNet-1k classes in the standard index order (shipped with dctnet)."""
    return load_class_list(IMAGENET_CLASSES_TSV)


_SYNSET_FILE = re.compile(r"(?:^|/)(n\d{8})[_/][^/]*$")


def synset_of_path(path: str) -> str | None:
    """The ImageNet synset a file is named after (``.../n01440764_tench.JPEG`` or
    ``.../n01440764/x.JPEG``), or ``None``."""
    m = _SYNSET_FILE.search(path.replace(os.sep, "/"))
    return m.group(1) if m else None


def _text_key(relpath: str) -> str:
    """A relative path as storable text: bytes of a name that is not UTF-8 (surrogate escapes)
    are written as ``\\xNN`` (SQLite and JSON take only valid text)."""
    return relpath.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


@dataclass
class Dataset:
    """A labelled list of image files.

    ``paths[i]`` is an absolute path, ``labels[i]`` its class index into ``classes``,
    ``keys[i]`` its path relative to ``root`` as text (undecodable bytes of a name written
    ``\\xNN``; stable across machines: results are stored
    under it). ``layout`` says which layout was detected.
    """

    root: str
    paths: list[str]
    labels: list[int]
    classes: ClassList
    layout: str
    keys: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.keys:
            self.keys = [_text_key(os.path.relpath(p, self.root)) for p in self.paths]

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, indices) -> "Dataset":
        """The images at ``indices``, in that order."""
        indices = list(indices)
        return Dataset(self.root, [self.paths[i] for i in indices], [self.labels[i] for i in indices],
                       self.classes, self.layout, [self.keys[i] for i in indices])


def _images_in(folder: str) -> list[str]:
    return sorted(n for n in os.listdir(folder)
                  if n.lower().endswith(IMAGE_SUFFIXES) and os.path.isfile(os.path.join(folder, n)))


def _read_labels_file(path: str, classes: ClassList) -> dict[str, int]:
    """File name (without folders) -> class index, from a labels file (see module doc)."""

    def to_index(value: str, lineno: int) -> int:
        value = value.strip()
        if value.lstrip("-").isdigit():
            idx = int(value)
            if not 0 <= idx < len(classes):
                raise ValueError(f"{path}:{lineno}: class index {idx} outside 0..{len(classes) - 1} "
                                 f"of {classes.source}")
            return idx
        idx = classes.lookup(value)
        if idx is None:
            raise ValueError(f"{path}:{lineno}: class {value!r} is not in {classes.source}")
        return idx

    out: dict[str, int] = {}
    with open(path, encoding="utf-8", newline="") as f:
        first = f.readline()
        f.seek(0)
        if first.replace(" ", "").lower().startswith("imageid,predictionstring"):
            for lineno, row in enumerate(csv.DictReader(f), 2):
                key = next(k for k in row if k.replace(" ", "").lower() == "imageid")
                pred = next(k for k in row if k.replace(" ", "").lower() == "predictionstring")
                out[row[key].strip()] = to_index(row[pred].split()[0], lineno)
        else:
            for lineno, line in enumerate(f, 1):
                if not line.strip():
                    continue
                parts = re.split(r"[\s,]+", line.strip())
                if len(parts) < 2:
                    raise ValueError(
                        f"{path}:{lineno}: expected '<file name> <label>' per line, got {line.strip()!r}. "
                        "(The devkit's ILSVRC2012_validation_ground_truth.txt lists ILSVRC2012_IDs, which are "
                        "not the standard class indices: convert it to '<file> <synset>' lines first.)")
                out[parts[0]] = to_index(parts[1], lineno)
    if not out:
        raise ValueError(f"{path}: no labels")
    return out


def open_dataset(root: str | os.PathLike, *, classes: ClassList | str | os.PathLike | None = None,
                 labels: str | os.PathLike | None = None, limit: int | None = None) -> Dataset:
    """Open a labelled image folder in any of the three layouts (see the module docstring).

    Args:
        root: the folder.
        classes: a :class:`ClassList` or the path of a class list TSV; default ImageNet-1k
            (for class-per-folder trees whose folders are not in the list: the folder names).
        labels: a labels file for a flat folder (ImageNet validation layout).
        limit: keep the first ``limit`` images (in sorted key order).

    Raises ``ValueError`` naming the folder or file when the layout cannot be labelled
    (unknown synsets, images missing from the labels file, an empty folder).
    """
    root = os.path.abspath(os.fspath(root))
    if not os.path.isdir(root):
        raise ValueError(f"{root}: not a folder")
    explicit_classes = classes is not None
    if classes is None:
        class_list = imagenet_classes()
    elif isinstance(classes, ClassList):
        class_list = classes
    else:
        class_list = load_class_list(classes)

    subdirs = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith("."))
    flat = _images_in(root)
    paths: list[str] = []
    targets: list[int] = []
    if labels is not None:
        table = _read_labels_file(os.fspath(labels), class_list)
        missing = [n for n in flat if n not in table and os.path.splitext(n)[0] not in table]
        if not flat:
            raise ValueError(f"{root}: no JPEG files (looked for {', '.join(IMAGE_SUFFIXES)})")
        if missing:
            raise ValueError(f"{root}: {len(missing)} images have no label in {os.fspath(labels)}, "
                             f"e.g. {missing[0]!r}")
        for n in flat:
            paths.append(os.path.join(root, n))
            targets.append(table[n] if n in table else table[os.path.splitext(n)[0]])
        layout = "labels-file"
    elif flat:
        unknown = []
        for n in flat:
            m = _SYNSET.match(n)
            idx = class_list.lookup(m.group(1)) if m else None
            if idx is None:
                unknown.append(n)
                continue
            paths.append(os.path.join(root, n))
            targets.append(idx)
        if unknown:
            raise ValueError(
                f"{root}: {len(unknown)} of {len(flat)} images have no synset prefix known to "
                f"{class_list.source} (e.g. {unknown[0]!r}); a flat folder needs file names "
                "'<synset>_...' or a labels file (--labels)")
        layout = "synset-prefix"
    elif subdirs:
        in_list = [class_list.lookup(d) for d in subdirs]
        if all(i is not None for i in in_list):
            folder_index = dict(zip(subdirs, in_list))
        elif explicit_classes:
            bad = [d for d, i in zip(subdirs, in_list) if i is None]
            raise ValueError(f"{root}: class folders not in {class_list.source}: {bad[:5]}")
        else:
            class_list = ClassList(tuple(subdirs), tuple(subdirs), f"folders of {root}")
            folder_index = {d: i for i, d in enumerate(subdirs)}
        for d in subdirs:
            folder = os.path.join(root, d)
            for dirpath, dirnames, names in os.walk(folder):
                dirnames.sort()
                for n in sorted(names):
                    if n.lower().endswith(IMAGE_SUFFIXES):
                        paths.append(os.path.join(dirpath, n))
                        targets.append(folder_index[d])
        layout = "class-folders"
    else:
        raise ValueError(f"{root}: no JPEG files and no class folders")
    if not paths:
        raise ValueError(f"{root}: no JPEG files (looked for {', '.join(IMAGE_SUFFIXES)})")
    ds = Dataset(root, paths, targets, class_list, layout)
    if limit is not None:
        ds = ds.subset(range(min(limit, len(ds))))
    return ds
