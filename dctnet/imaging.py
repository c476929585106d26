"""Pixels: JPEG <-> RGB with libjpeg-turbo, and the standard RGB preprocessing.

The one place dctnet decodes a JPEG to pixels, encodes pixels to a JPEG, resizes and crops
pixels (``docs/architecture.md``, layer 2 of 9). Everything that needs pixels (RGB models,
`dctnet eval`'s re-encoded versions, `dctnet prepare`, the exact conversion, the synthetic
set, the Classifier's fallback for images smaller than the crop) calls these functions.

* :func:`decode_rgb`: libjpeg-turbo through simplejpeg (islow IDCT, fancy upsampling; it
  releases the GIL and turns every libjpeg warning, i.e. corrupt data, into an error).
  The header is checked first with :func:`dctnet.read_header` against the same pixel limit
  as the coefficient reader, so a tiny file claiming 65500x65500 is refused before anything
  image-sized is allocated.
* :func:`encode_jpeg`: libjpeg-turbo through PyTurboJPEG (one handle per thread: handles are
  not thread-safe) with the settings of cjpeg, Pillow and the studies dctnet reproduces: the
  accurate integer forward DCT (islow; TurboJPEG's default is the fast one), the standard
  tables scaled by IJG quality, no Huffman optimisation, baseline. Byte-identical to
  ``cjpeg -quality Q -sample 2x2 -dct int -baseline`` from the same pixels (tested);
  :data:`ENCODER` records these settings.
* :func:`resize_shorter` / :func:`center_crop` / :func:`resize_for_crop`: the ImageNet
  evaluation geometry (torchvision's ``Resize(256)`` + ``CenterCrop(224)``) written without
  torchvision: Pillow ``BILINEAR`` (antialiased when downscaling), new size
  ``(round(w*s), round(h*s))`` with ``s = resize / min(w, h)``, crop at
  ``((w - crop) // 2, (h - crop) // 2)``.
* :class:`RGBPreprocess`: decode + resize + crop + normalise as one declared, hashable value
  (what an RGB model's bundle records as its input).
"""

from __future__ import annotations

import io
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Literal, Sequence

import numpy as np
import simplejpeg
import PIL
from PIL import Image, features
from turbojpeg import (TJFLAG_ACCURATEDCT, TJPF_GRAY, TJPF_RGB, TJSAMP_420, TJSAMP_422, TJSAMP_444, TJSAMP_GRAY,
                       TurboJPEG)

from .codec import (DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, DEFAULT_MAX_SCAN_BLOCKS, DEFAULT_MAX_SCANS,
                    LIBJPEG_TURBO_VERSION, JPEGError, JPEGHeader, JPEGSource, read_header, read_source)

__all__ = ["CODECS", "ENCODER", "IMAGENET_MEAN", "IMAGENET_STD", "RGBPreprocess", "center_crop", "check_codec",
           "check_decode_limits", "codec_versions", "decode_image", "decode_rgb", "encode_image", "encode_jpeg",
           "prepare_jpeg", "read_bytes", "reencode_quality", "resize_for_crop", "resize_shorter"]

#: ImageNet's per-channel mean and standard deviation of RGB values scaled to [0, 1].
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Subsampling = Literal["444", "422", "420", "gray"]


def read_bytes(src: JPEGSource, name: str | None = None, *,
               max_bytes: int | None = DEFAULT_MAX_BYTES) -> tuple[bytes | bytearray | memoryview, str]:
    """The bytes of a JPEG path or bytes-like source and its name (the path, or ``name`` /
    ``"<bytes>"``), opened as the coefficient reader opens files (:func:`dctnet.codec.read_source`:
    regular files only, size checked against ``max_bytes`` and the SOI marker checked before
    the rest is read). Raises :class:`~dctnet.JPEGError` naming the source."""
    try:
        data, default = read_source(src, max_bytes=max_bytes)
    except JPEGError as e:
        raise JPEGError(name or e.source, e.reason) from None
    except OSError as e:
        path = os.fsdecode(src) if isinstance(src, (str, os.PathLike)) else "<bytes>"
        raise JPEGError(name or path, f"cannot open: {e.strerror or e}") from None
    return data, name or default


def check_decode_limits(data, name: str, *, max_pixels: int | None = DEFAULT_MAX_PIXELS,
                        max_scans: int | None = DEFAULT_MAX_SCANS,
                        max_scan_blocks: int | None = DEFAULT_MAX_SCAN_BLOCKS) -> JPEGHeader:
    """The coefficient reader's limits for a decoder that has none (simplejpeg, PyTurboJPEG):
    checked on the header and the marker count before anything is decoded.

    Pixels: ``width * height`` from the header. Scans: SOS markers counted in the bytes (an
    SOS cannot occur inside entropy-coded data, where every 0xFF byte is stuffed; an embedded
    EXIF thumbnail adds its own, so the count is an upper bound). Scan work: scans x the
    image's 8x8 blocks, an upper bound of what entropy decoding costs.

    Returns the header. Raises :class:`~dctnet.JPEGError` naming ``name``.
    """
    try:
        header = read_header(data)
    except JPEGError as e:
        raise JPEGError(name, e.reason) from None
    pixels = header.width * header.height
    if max_pixels and pixels > max_pixels:
        raise JPEGError(name, f"{header.width}x{header.height} = {pixels} pixels exceeds the limit of "
                              f"{max_pixels} (max_pixels)")
    if header.progressive:
        scans = bytes(data).count(b"\xff\xda")
        if max_scans and scans > max_scans:
            raise JPEGError(name, f"progressive file has {scans} scans, more than {max_scans} (limit max_scans)")
        work = scans * -(-header.width // 8) * -(-header.height // 8)
        if max_scan_blocks and work > max_scan_blocks:
            raise JPEGError(name, f"progressive file of {scans} scans over {header.width}x{header.height} would "
                                  f"decode about {work} blocks, more than {max_scan_blocks} (limit max_scan_blocks)")
    return header


def decode_rgb(src: JPEGSource, *, name: str | None = None, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a JPEG to RGB with libjpeg-turbo (islow IDCT, fancy upsampling).

    Args:
        src: a path or the JPEG's bytes (files are opened by :func:`read_bytes`).
        name: the source's name in errors (default: the path, or ``"<bytes>"``).
        max_pixels: refuse images with more pixels than this (checked on the header, before
            decoding); ``None`` for no limit. The coefficient reader's scan limits apply
            too (:func:`check_decode_limits`).

    Returns:
        ``uint8 (H, W, 3)``. Grayscale files give three equal channels.

    Raises:
        JPEGError: naming the source, for anything libjpeg-turbo rejects or warns about
            (corrupt data is an error, as in :func:`dctnet.read_dct`) and for the pixel limit.
    """
    data, name = read_bytes(src, name)
    if len(data) == 0:
        raise JPEGError(name, "empty input (0 bytes)")
    check_decode_limits(data, name, max_pixels=max_pixels)
    try:
        return simplejpeg.decode_jpeg(data, colorspace="RGB", fastdct=False, fastupsample=False, strict=True)
    except ValueError as e:
        raise JPEGError(name, str(e)) from None


_tls = threading.local()


def _turbo():
    """This thread's TurboJPEG handle (handles are not thread-safe)."""
    tj = getattr(_tls, "tj", None)
    if tj is None:
        tj = _tls.tj = TurboJPEG()
    return tj


#: What :func:`encode_jpeg` does, recorded with results that depend on it (`dctnet eval`).
ENCODER = {"library": "libjpeg-turbo (TurboJPEG API via PyTurboJPEG)", "dct": "islow (accurate integer)",
           "tables": "ITU-T T.81 Annex K scaled by IJG quality", "huffman": "standard tables (not optimised)",
           "mode": "baseline sequential", "reference": "cjpeg -quality Q -sample 2x2 -dct int -baseline"}


def encode_jpeg(pixels: np.ndarray, quality: int, *, subsampling: Subsampling = "420",
                dct: Literal["islow", "fast"] = "islow") -> bytes:
    """Encode pixels as a baseline JPEG with libjpeg-turbo.

    Args:
        pixels: ``uint8 (H, W, 3)`` RGB, or ``uint8 (H, W)`` / ``(H, W, 1)`` gray (then
            ``subsampling`` must be ``"gray"``).
        quality: IJG quality 1..100 (the standard Annex K tables scaled by it).
        subsampling: chroma sampling of a colour image (``"444"``, ``"422"``, ``"420"``), or
            ``"gray"`` for a one-component file.
        dct: the forward DCT: ``"islow"`` (accurate integer, cjpeg's and Pillow's default) or
            ``"fast"`` (TurboJPEG's default, IFAST: slightly different files).

    Returns:
        The JPEG's bytes (baseline, standard Huffman tables, no restart markers; see :data:`ENCODER`).
    """
    if dct not in ("islow", "fast"):
        raise ValueError(f"dct must be 'islow' or 'fast', not {dct!r}")
    flags = TJFLAG_ACCURATEDCT if dct == "islow" else 0
    if not 1 <= int(quality) <= 100:
        raise ValueError(f"JPEG quality must be 1..100, not {quality}")
    pixels = np.ascontiguousarray(pixels)
    if pixels.dtype != np.uint8:
        raise ValueError(f"pixels must be uint8, not {pixels.dtype}")
    if subsampling == "gray":
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        if pixels.ndim != 3 or pixels.shape[2] != 1:
            raise ValueError(f"gray pixels must be (H, W) or (H, W, 1), not {pixels.shape}")
        return _turbo().encode(pixels, quality=int(quality), pixel_format=TJPF_GRAY, jpeg_subsample=TJSAMP_GRAY,
                               flags=flags)
    samp = {"444": TJSAMP_444, "422": TJSAMP_422, "420": TJSAMP_420}.get(subsampling)
    if samp is None:
        raise ValueError(f"subsampling must be '444', '422', '420' or 'gray', not {subsampling!r}")
    if pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"RGB pixels must be (H, W, 3), not {pixels.shape}")
    return _turbo().encode(pixels, quality=int(quality), pixel_format=TJPF_RGB, jpeg_subsample=samp, flags=flags)


def reencode_quality(estimated: float | None, default: int = 95) -> int:
    """The IJG quality to re-encode a file at: its estimated quality rounded into 1..100, or
    ``default`` when its tables are not IJG-scaled (``estimated is None``)."""
    return default if estimated is None else int(round(min(max(estimated, 1), 100)))


def resize_for_crop(crop: int) -> int:
    """The shorter side an image is resized to before a centre crop of ``crop`` pixels:
    ``round(crop * 256 / 224)`` (ImageNet's 256 -> 224 ratio; 256 for 224)."""
    return round(crop * 256 / 224)


def resize_shorter(image: np.ndarray, size: int) -> np.ndarray:
    """Resize ``uint8 (H, W, C)`` so its shorter side is ``size`` (Pillow BILINEAR, antialiased).

    The new size is ``(round(w * s), round(h * s))`` with ``s = size / min(w, h)``.
    """
    h, w = image.shape[:2]
    s = size / min(w, h)
    new_w, new_h = round(w * s), round(h * s)
    if (new_w, new_h) == (w, h):
        return image
    return np.asarray(Image.fromarray(image).resize((new_w, new_h), Image.BILINEAR))


def center_crop(image: np.ndarray, size: int) -> np.ndarray:
    """Crop ``size x size`` at ``((w - size) // 2, (h - size) // 2)`` of ``(H, W, C)``."""
    h, w = image.shape[:2]
    if h < size or w < size:
        raise ValueError(f"image of {w}x{h} is smaller than the {size}x{size} crop")
    top, left = (h - size) // 2, (w - size) // 2
    return image[top:top + size, left:left + size]


@dataclass(frozen=True)
class RGBPreprocess:
    """Decode + resize + centre crop + normalise, as one callable (an RGB model's input).

    Args:
        resize: shorter side after resizing (pixels); ``None`` skips the resize.
        crop: side of the square centre crop (pixels).
        mean, std: per-channel normalisation of values scaled to [0, 1].
    """

    resize: int | None = 256
    crop: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD

    @classmethod
    def for_crop(cls, crop: int, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD) -> "RGBPreprocess":
        """The ImageNet evaluation preprocessing for a ``crop``-pixel model: resize the shorter
        side to :func:`resize_for_crop` (``crop``), centre crop, normalise."""
        return cls(resize=resize_for_crop(crop), crop=int(crop), mean=tuple(mean), std=tuple(std))

    def to_dict(self) -> dict:
        return {"resize": self.resize, "crop": self.crop, "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict) -> "RGBPreprocess":
        return cls(resize=d.get("resize"), crop=int(d["crop"]), mean=tuple(d["mean"]), std=tuple(d["std"]))

    def pixels(self, src: JPEGSource | np.ndarray, *, name: str | None = None) -> np.ndarray:
        """Decoded, resized and cropped pixels: ``uint8 (crop, crop, 3)``. ``src`` may also be
        an already decoded image, ``uint8 (H, W, 3)`` (e.g. another codec's decode in
        `dctnet eval`), which is resized and cropped the same way."""
        if isinstance(src, np.ndarray):
            name = name or "<pixels>"
            if src.dtype != np.uint8 or src.ndim != 3 or src.shape[2] != 3:
                raise JPEGError(name, f"decoded pixels must be uint8 (H, W, 3), not {src.dtype} {src.shape}")
            image = src
        else:
            data, name = read_bytes(src, name)
            image = decode_rgb(data, name=name)
        if self.resize is not None:
            image = resize_shorter(image, self.resize)
        try:
            return center_crop(image, self.crop)
        except ValueError as e:
            raise JPEGError(name, str(e)) from None

    def normalize(self, pixels: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """``uint8 (H, W, 3)`` -> ``float32 (3, H, W)``: ``(x / 255 - mean) / std``."""
        scale = (1.0 / (255.0 * np.asarray(self.std, np.float32))).astype(np.float32)
        offset = (-np.asarray(self.mean, np.float32) / np.asarray(self.std, np.float32)).astype(np.float32)
        if out is None:
            out = np.empty((3,) + pixels.shape[:2], np.float32)
        chw = pixels.transpose(2, 0, 1)
        np.multiply(chw, scale[:, None, None], out=out, casting="unsafe")
        out += offset[:, None, None]
        return out

    def __call__(self, src: JPEGSource, *, name: str | None = None) -> np.ndarray:
        """One image: ``float32 (3, crop, crop)``."""
        return self.normalize(self.pixels(src, name=name))

    def batch(self, srcs: Sequence[JPEGSource], *, threads: int | None = None, out: np.ndarray | None = None,
              names: Sequence[str] | None = None) -> tuple[np.ndarray, list[Exception | None]]:
        """Many images on a thread pool (decoding and resizing release the GIL).

        Args:
            srcs: N paths, JPEG bytes or decoded ``uint8 (H, W, 3)`` images.
            threads: pool size (default: all cores).
            out: ``float32 (N, 3, crop, crop)`` to write into.
            names: the sources' names in errors (default: paths, ``"<bytes>"``).

        Returns:
            ``(float32 (N, 3, crop, crop), errors)``: ``errors[i]`` is item i's
            :class:`~dctnet.JPEGError` (its rows are zero) or ``None`` (the batch-result
            convention of ``docs/architecture.md``).
        """
        n = len(srcs)
        if out is None:
            out = np.empty((n, 3, self.crop, self.crop), np.float32)
        elif out.shape != (n, 3, self.crop, self.crop) or out.dtype != np.float32:
            raise ValueError(f"out must be float32 {(n, 3, self.crop, self.crop)}, got {out.dtype} {out.shape}")
        errors: list[Exception | None] = [None] * n

        def work(i: int) -> None:
            try:
                self.normalize(self.pixels(srcs[i], name=None if names is None else names[i]), out=out[i])
            except (JPEGError, OSError) as e:
                out[i] = 0.0
                errors[i] = e if isinstance(e, JPEGError) else JPEGError(str(getattr(e, "filename", "?")), str(e))

        threads = threads or os.cpu_count() or 1
        if threads == 1 or n == 1:
            for i in range(n):
                work(i)
        else:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(work, range(n)))
        return out, errors


def prepare_jpeg(data: bytes, *, resize: int = 256, crop: int = 224, quality: int | None = None,
                 name: str = "<bytes>") -> bytes:
    """A JPEG as the papers prepare them for DCT models: decode (libjpeg-turbo), resize the
    shorter side to ``resize`` (Pillow bilinear, as :class:`~dctnet.imaging.RGBPreprocess`),
    take the ``crop x crop`` centre crop with its offsets rounded down to 16-pixel
    (4:2:0 macroblock) boundaries, and encode it with libjpeg-turbo at ``quality`` (default:
    the source's estimated IJG quality, 95 when its tables are not IJG-scaled), 4:2:0.

    The result is exactly the crop's blocks of the resized image encoded whole, so the RGB
    network (on its libjpeg-turbo decode) and the DCT network (on its coefficients) see the
    same pixels. Returns the JPEG bytes (``crop x crop``, 4:2:0).
    """
    if crop % 16:
        raise ValueError(f"crop must be a multiple of 16 pixels (4:2:0 macroblocks), not {crop}")
    rgb = decode_rgb(data, name=name)
    if resize is not None:
        rgb = resize_shorter(rgb, resize)
    h, w = rgb.shape[:2]
    if h < crop or w < crop:
        raise JPEGError(name, f"{w}x{h} is smaller than the {crop}x{crop} crop")
    top, left = ((h - crop) // 2) // 16 * 16, ((w - crop) // 2) // 16 * 16
    pixels = np.ascontiguousarray(rgb[top:top + crop, left:left + crop])
    if quality is None:
        quality = reencode_quality(read_header(data).quality)
    return encode_jpeg(pixels, int(quality), subsampling="420")


# --- other image codecs (`dctnet eval --codecs`) -----------------------------------------------

#: The codecs `dctnet eval --codecs` compares with JPEG, and what each one's parameter means.
#: Every codec is 8-bit, 4:2:0 (YCbCr for JPEG 2000 through its irreversible colour transform).
CODECS = {
    "jpeg2000": {"library": "OpenJPEG through Pillow", "param": "cr",
                 "meaning": "target compression ratio against 24-bit RGB (quality_mode='rates'); higher = smaller",
                 "options": "J2K codestream, irreversible 9/7 wavelet, colour transform (mct=1), one layer"},
    "heif": {"library": "libheif + x265 (HEVC intra, the codec of BPG) through pillow-heif", "param": "q",
             "meaning": "libheif quality 0..100; higher = larger", "options": "4:2:0, x265 defaults"},
    "avif": {"library": "libavif + aom (AV1 intra) through Pillow", "param": "q",
             "meaning": "Pillow/libavif quality 0..100; higher = larger", "options": "4:2:0, speed 6"},
    "webp": {"library": "libwebp through Pillow", "param": "q",
             "meaning": "libwebp quality 0..100; higher = larger", "options": "lossy, 4:2:0, method 4"},
}

_PIL_FEATURE = {"jpeg2000": "jpg_2000", "avif": "avif", "webp": "webp"}
_PIL_FORMAT = {"jpeg2000": "JPEG2000", "heif": "HEIF", "avif": "AVIF", "webp": "WEBP"}


def check_codec(codec: str) -> None:
    """Raise ``ValueError`` naming the problem when ``codec`` is unknown or this installation
    cannot encode and decode it (Pillow built without it, pillow-heif missing)."""
    if codec not in CODECS:
        raise ValueError(f"unknown codec {codec!r}; choose from {', '.join(CODECS)}")
    if codec == "heif":
        try:
            import pillow_heif  # noqa: F401
        except ImportError as e:
            raise ValueError(f"codec heif needs pillow-heif, which is not installed ({e}): "
                             "`pip install pillow-heif` (a dctnet dependency)") from None
        return
    if not features.check(_PIL_FEATURE[codec]):
        raise ValueError(f"codec {codec} is not available: this Pillow ({PIL.__version__}) was built without "
                         f"{_PIL_FEATURE[codec]} support (install a Pillow wheel from PyPI)")


def codec_versions() -> dict:
    """Library versions behind :data:`CODECS` and the JPEG path (``None``: not available)."""
    out = {"pillow": PIL.__version__, "simplejpeg": getattr(simplejpeg, "__version__", None),
           "libjpeg-turbo (reader)": LIBJPEG_TURBO_VERSION}
    for key, feat in (("openjpeg", "jpg_2000"), ("libwebp", "webp"), ("libavif", "avif")):
        out[key] = features.version(feat) if features.check(feat) else None
    try:
        from PIL import AvifImagePlugin
        out["aom"] = AvifImagePlugin.get_codec_version("aom")
    except (ImportError, AttributeError):
        out["aom"] = None
    try:
        import pillow_heif
        info = pillow_heif.libheif_info()
        out["pillow-heif"], out["libheif"], out["x265"] = pillow_heif.__version__, info.get("libheif"), info.get("HEIF")
    except ImportError:
        out["pillow-heif"] = out["libheif"] = out["x265"] = None
    return out


def encode_image(pixels: np.ndarray, codec: str, param: int) -> bytes:
    """Encode ``uint8 (H, W, 3)`` RGB with one of :data:`CODECS` at its parameter ``param``
    (JPEG 2000: the compression ratio; the others: quality 0..100), with the options
    :data:`CODECS` records. Raises ``ValueError`` for an unknown / unavailable codec or a bad
    parameter."""
    check_codec(codec)
    pixels = np.ascontiguousarray(pixels)
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != 3:
        raise ValueError(f"pixels must be uint8 (H, W, 3), not {pixels.dtype} {pixels.shape}")
    param = int(param)
    if codec == "jpeg2000":
        if param < 1:
            raise ValueError(f"JPEG 2000 compression ratio must be >= 1, not {param}")
    elif not 0 <= param <= 100:
        raise ValueError(f"{codec} quality must be 0..100, not {param}")
    buf = io.BytesIO()
    img = Image.fromarray(pixels, "RGB")
    if codec == "jpeg2000":
        img.save(buf, "JPEG2000", no_jp2=True, irreversible=True, mct=1, quality_mode="rates",
                 quality_layers=[float(param)])
    elif codec == "heif":
        import pillow_heif
        pillow_heif.from_pillow(img).save(buf, format="HEIF", quality=param, chroma=420)
    elif codec == "avif":
        img.save(buf, "AVIF", quality=param, subsampling="4:2:0", speed=6)
    else:
        img.save(buf, "WEBP", quality=param, method=4)
    return buf.getvalue()


def decode_image(data: bytes, codec: str, *, name: str = "<bytes>",
                 max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode a file of one of :data:`CODECS` to ``uint8 (H, W, 3)`` RGB (8 bits).

    The format is checked against ``codec`` and the size against ``max_pixels`` before the
    pixels are decoded. Raises :class:`~dctnet.JPEGError` naming ``name`` for anything the
    decoder rejects (the evaluation's per-item error type)."""
    check_codec(codec)
    try:
        if codec == "heif":
            import pillow_heif
            heif = pillow_heif.open_heif(io.BytesIO(data), convert_hdr_to_8bit=True)
            w, h = heif.size
            if max_pixels and w * h > max_pixels:
                raise ValueError(f"{w}x{h} exceeds the limit of {max_pixels} pixels (max_pixels)")
            img = heif.to_pillow()
        else:
            img = Image.open(io.BytesIO(data), formats=[_PIL_FORMAT[codec]])
            w, h = img.size
            if max_pixels and w * h > max_pixels:
                raise ValueError(f"{w}x{h} exceeds the limit of {max_pixels} pixels (max_pixels)")
            img.load()
        return np.asarray(img.convert("RGB"))
    except (OSError, ValueError, RuntimeError, SyntaxError) as e:
        raise JPEGError(name, f"{codec} decode failed: {e}") from None
