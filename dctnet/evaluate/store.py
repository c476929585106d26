"""Per-image results of `dctnet eval`, stored as they are computed (SQLite).

One database per results folder (``DIR/results.sqlite``). A run looks up what is already
there and computes only the rest, so an interrupted run resumes and a rerun recomputes
nothing; adding a model or a setting computes only the new rows.

Tables:

* ``images(image, label, size, sha256)``: the dataset key (path relative to the data
  folder), its class index, the original's size in bytes and the SHA-256 of its content. A
  stored image whose label, size or content differs from the current one means the folder
  holds results of other data: refused (an image changed in place keeps its size but not its
  hash). Databases written before the hash was stored get it on their next run.
* ``models(model, identity, num_classes)``: a stored model whose identity (weights and
  preprocessing hash) differs is refused the same way.
* ``meta(key, value)``: ``encoder``, the JSON of the settings the versions were encoded with
  (:data:`dctnet.imaging.ENCODER`). Versions made with other settings (e.g. dctnet 0.1's fast
  forward DCT, which recorded none) are refused the same way.
* ``versions(image, setting, bytes, width, height, psnr, ssim, error)``: one row per
  image version; ``error`` is NULL or why the version could not be made.
* ``predictions(image, setting, model, rank, top5, error)``: the true class's rank
  (1 = top-1) and the five best classes (JSON list, best first) per model.
* ``logits(image, setting, model, dtype, data)``: the model's full logits for the version
  (``num_classes`` values, little-endian float16, ``dtype`` ``"<f2"``; ``"<f4"`` float32 when
  a logit exceeds float16's range), what selectors that combine versions need
  (:func:`dctnet.evaluate.selectors.mean_probabilities`): 2 bytes per class, 2 kB per image
  version for ImageNet's 1000 classes (about 1.1 GB per model for the 50,000 validation images
  at 11 settings). A successful prediction counts as done only with its logits stored, so
  results of a dctnet that did not store them are recomputed once.
* ``requant(image, setting, reference, agree_y, agree_all, psnr, error)``: a requantised
  version (``requant-qf<Q>``) against the true re-encode ``reference`` (``qf<Q>``): the
  share of equal quantised coefficients in luma and over all components (NULL when the
  geometries differ) and the PSNR between their decodes.
* ``meta`` also holds ``codecs``: the other codecs' options and library versions
  (:data:`dctnet.imaging.CODECS`), recorded when a run first makes their versions; another
  library version is refused as another JPEG encoder is.

Under ``torchrun`` every rank writes its own shard database (``DIR/shards/rank<R>.sqlite``)
and rank 0 merges them (:meth:`ResultStore.merge_from`), so no database is written by two
processes at once.
"""

from __future__ import annotations

import json
import os
import sqlite3
from typing import Iterable, Sequence

import numpy as np

__all__ = ["ResultStore", "StaleResultsError"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS images(image TEXT PRIMARY KEY, label INTEGER NOT NULL, size INTEGER NOT NULL,
    sha256 TEXT);
CREATE TABLE IF NOT EXISTS models(model TEXT PRIMARY KEY, identity TEXT NOT NULL, num_classes INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS versions(image TEXT NOT NULL, setting TEXT NOT NULL, bytes INTEGER, width INTEGER,
    height INTEGER, psnr REAL, ssim REAL, error TEXT, PRIMARY KEY(image, setting));
CREATE TABLE IF NOT EXISTS predictions(image TEXT NOT NULL, setting TEXT NOT NULL, model TEXT NOT NULL,
    rank INTEGER, top5 TEXT, error TEXT, PRIMARY KEY(image, setting, model));
CREATE TABLE IF NOT EXISTS logits(image TEXT NOT NULL, setting TEXT NOT NULL, model TEXT NOT NULL,
    dtype TEXT NOT NULL, data BLOB NOT NULL, PRIMARY KEY(image, setting, model));
CREATE TABLE IF NOT EXISTS requant(image TEXT NOT NULL, setting TEXT NOT NULL, reference TEXT NOT NULL,
    agree_y REAL, agree_all REAL, psnr REAL, error TEXT, PRIMARY KEY(image, setting));
"""

#: float16 holds logits up to this magnitude; larger ones are stored as float32.
_F16_MAX = float(np.finfo(np.float16).max)


class StaleResultsError(ValueError):
    """The results folder holds results for other images or another model of the same name."""


class ResultStore:
    """A results database (see the module docstring). Use as a context manager or call ``close``."""

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        self.db = sqlite3.connect(self.path, timeout=60)
        try:
            self.db.executescript(_SCHEMA)
            columns = [row[1] for row in self.db.execute("PRAGMA table_info(images)")]
            if "sha256" not in columns:  # a database of dctnet 0.1
                self.db.execute("ALTER TABLE images ADD COLUMN sha256 TEXT")
            self.db.commit()
        except sqlite3.DatabaseError as e:
            self.db.close()
            raise ValueError(f"{self.path}: not a readable dctnet results database ({e}); delete it or use "
                             "another --out folder") from None

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> "ResultStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- identity checks -------------------------------------------------------------
    def register_images(self, keys: list[str], labels: list[int], sizes: list[int],
                        hashes: list[str | None] | None = None) -> None:
        """Record images; raise :class:`StaleResultsError` if a key is stored with another
        label, size or content hash (``hashes``: hex SHA-256 per image, ``None`` if unknown)."""
        hashes = hashes if hashes is not None else [None] * len(keys)
        stored = {k: (lab, size, h) for k, lab, size, h in self.db.execute("SELECT image, label, size, sha256 FROM images")}
        new, fill = [], []
        for k, lab, size, h in zip(keys, labels, sizes, hashes):
            if k in stored:
                slab, ssize, sh = stored[k]
                if (slab, ssize) != (lab, size) or (sh is not None and h is not None and sh != h):
                    what = "content" if (slab, ssize) == (lab, size) else f"label {slab}, {ssize} bytes"
                    now = "changed in place" if what == "content" else f"now label {lab}, {size} bytes"
                    raise StaleResultsError(
                        f"{self.path}: holds results for a different {k!r} ({what}; {now}). Use another --out "
                        "folder or delete it.")
                if sh is None and h is not None:
                    fill.append((h, k))
            else:
                new.append((k, lab, size, h))
        self.db.executemany("INSERT INTO images VALUES (?, ?, ?, ?)", new)
        self.db.executemany("UPDATE images SET sha256 = ? WHERE image = ?", fill)
        self.db.commit()

    def register_encoder(self, settings: dict) -> None:
        """Record the encoder settings of the versions; raise :class:`StaleResultsError` if the
        database holds versions made with other (or unrecorded) settings."""
        value = json.dumps(settings, sort_keys=True)
        row = self.db.execute("SELECT value FROM meta WHERE key = 'encoder'").fetchone()
        if row is None:
            if self.db.execute("SELECT 1 FROM versions WHERE setting != 'original' LIMIT 1").fetchone():
                raise StaleResultsError(
                    f"{self.path}: holds re-encoded versions made with unrecorded encoder settings (dctnet 0.1 "
                    "used the fast forward DCT). Use another --out folder or delete it.")
            self.db.execute("INSERT INTO meta VALUES ('encoder', ?)", (value,))
            self.db.commit()
        elif row[0] != value:
            raise StaleResultsError(f"{self.path}: holds versions made with other encoder settings ({row[0]}, now "
                                    f"{value}). Use another --out folder or delete it.")

    def register_codecs(self, settings: dict) -> None:
        """Record the other codecs' options and library versions; raise :class:`StaleResultsError`
        if the database holds codec versions made with other ones."""
        value = json.dumps(settings, sort_keys=True)
        row = self.db.execute("SELECT value FROM meta WHERE key = 'codecs'").fetchone()
        if row is None:
            self.db.execute("INSERT INTO meta VALUES ('codecs', ?)", (value,))
            self.db.commit()
        elif row[0] != value:
            raise StaleResultsError(f"{self.path}: holds codec versions made with other codec settings or "
                                    f"libraries ({row[0]}, now {value}). Use another --out folder or delete it.")

    def register_model(self, name: str, identity: str, num_classes: int) -> None:
        """Record a model; raise :class:`StaleResultsError` if ``name`` is stored with another identity."""
        row = self.db.execute("SELECT identity, num_classes FROM models WHERE model = ?", (name,)).fetchone()
        if row is None:
            self.db.execute("INSERT INTO models VALUES (?, ?, ?)", (name, identity, num_classes))
            self.db.commit()
        elif tuple(row) != (identity, num_classes):
            raise StaleResultsError(
                f"{self.path}: holds results of another model named {name!r} (identity {row[0]}, "
                f"now {identity}). Use another --out folder or delete it.")

    # -- what is done ------------------------------------------------------------------
    def done_versions(self) -> set[tuple[str, str]]:
        return set(self.db.execute("SELECT image, setting FROM versions"))

    def done_predictions(self, model: str) -> set[tuple[str, str]]:
        """``(image, setting)`` pairs with a stored error, or a prediction and its logits."""
        return set(self.db.execute(
            "SELECT p.image, p.setting FROM predictions p WHERE p.model = ? AND (p.error IS NOT NULL OR EXISTS "
            "(SELECT 1 FROM logits l WHERE l.image = p.image AND l.setting = p.setting AND l.model = p.model))",
            (model,)))

    # -- writing -----------------------------------------------------------------------
    def add_versions(self, rows: Iterable[tuple]) -> None:
        """Rows ``(image, setting, bytes, width, height, psnr, ssim, error)``."""
        self.db.executemany("INSERT OR REPLACE INTO versions VALUES (?, ?, ?, ?, ?, ?, ?, ?)", list(rows))

    def add_predictions(self, rows: Iterable[tuple]) -> None:
        """Rows ``(image, setting, model, rank, top5 list | None, error)``."""
        self.db.executemany(
            "INSERT OR REPLACE INTO predictions VALUES (?, ?, ?, ?, ?, ?)",
            [(i, s, m, r, None if t is None else json.dumps([int(x) for x in t]), e) for i, s, m, r, t, e in rows])

    def add_logits(self, rows: Iterable[tuple[str, str, str, np.ndarray]]) -> None:
        """Rows ``(image, setting, model, logits float (num_classes,))``, stored as float16 (float32
        if a value is beyond float16's range)."""
        out = []
        for image, setting, model, z in rows:
            z = np.asarray(z, dtype=np.float32).reshape(-1)
            if not np.all(np.isfinite(z)):
                raise ValueError(f"logits of {image!r} at {setting} by {model} are not finite")
            dtype = "<f2" if float(np.max(np.abs(z), initial=0.0)) <= _F16_MAX else "<f4"
            out.append((image, setting, model, dtype, z.astype(dtype).tobytes()))
        self.db.executemany("INSERT OR REPLACE INTO logits VALUES (?, ?, ?, ?, ?)", out)
    def add_requant(self, rows: Iterable[tuple]) -> None:
        """Rows ``(image, setting, reference, agree_y, agree_all, psnr, error)``."""
        self.db.executemany("INSERT OR REPLACE INTO requant VALUES (?, ?, ?, ?, ?, ?, ?)", list(rows))

    def commit(self) -> None:
        self.db.commit()

    def merge_from(self, other_path: str | os.PathLike) -> None:
        """Copy every row of another results database into this one (existing rows win)."""
        self.db.execute("ATTACH DATABASE ? AS other", (os.fspath(other_path),))
        try:
            present = {r[0] for r in self.db.execute("SELECT name FROM other.sqlite_master WHERE type = 'table'")}
            for table in ("images", "models", "versions", "predictions", "meta", "logits", "requant"):
                if table in present:  # (shards of an older dctnet have no logits / requant table)
                    self.db.execute(f"INSERT OR IGNORE INTO {table} SELECT * FROM other.{table}")
            self.db.commit()
        finally:
            self.db.execute("DETACH DATABASE other")

    # -- reading -----------------------------------------------------------------------
    def versions(self) -> dict[tuple[str, str], tuple]:
        """``(image, setting) -> (bytes, width, height, psnr, ssim, error)``."""
        return {(r[0], r[1]): tuple(r[2:]) for r in self.db.execute("SELECT * FROM versions")}

    def requant(self) -> dict[tuple[str, str], tuple]:
        """``(image, setting) -> (reference, agree_y, agree_all, psnr, error)``."""
        return {(r[0], r[1]): tuple(r[2:]) for r in self.db.execute("SELECT * FROM requant")}

    def predictions(self, model: str) -> dict[tuple[str, str], tuple]:
        """``(image, setting) -> (rank, top5 list | None, error)`` for one model."""
        out = {}
        for image, setting, rank, top5, error in self.db.execute(
                "SELECT image, setting, rank, top5, error FROM predictions WHERE model = ?", (model,)):
            out[(image, setting)] = (rank, None if top5 is None else json.loads(top5), error)
        return out

    def logits(self, model: str, settings: Sequence[str] | None = None) -> dict[tuple[str, str], np.ndarray]:
        """``(image, setting) -> float16 or float32 (num_classes,)`` stored logits of one model
        (only ``settings`` if given)."""
        out = {}
        wanted = None if settings is None else set(settings)
        for image, setting, dtype, data in self.db.execute(
                "SELECT image, setting, dtype, data FROM logits WHERE model = ?", (model,)):
            if wanted is None or setting in wanted:
                out[(image, setting)] = np.frombuffer(data, dtype=np.dtype(dtype))
        return out
