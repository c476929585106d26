"""multiqf, Yang et al.'s 11-input topology: its versions are `dctnet eval`'s, one shared
backbone, the mean-of-logits head, checkpoints, DCT backbones, `dctnet train` (frozen backbone,
--unfreeze-last) and `dctnet eval` of the trained model. Tiny models on synthetic images."""

from __future__ import annotations

import json
import pytest
import torch

from dctnet.cli import main as cli_main
from dctnet.data.datasets import open_dataset
from dctnet.data.encode import DEFAULT_QFS as EVAL_QFS, encode_setting, make_settings
from dctnet.data.synthetic import SyntheticSpec, make_synthetic_dataset
from dctnet.evaluate.predictors import make_predictor
from dctnet.evaluate.study import run_study
from dctnet.models import create_model, load_checkpoint, resolve, save_checkpoint
from dctnet.models.multiqf import DEFAULT_QFS, MultiQFNet, backbone_blocks
from dctnet.pipeline import jpeg_versions
from dctnet.train import TrainConfig, train

TINY = {"backbone": "small_resnet_rgb", "width": 8}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("multiqf-data")
    return make_synthetic_dataset(root, SyntheticSpec(train_per_class=4, val_per_class=2, size=128))


def _files(data, n=3):
    return open_dataset(data["val"], classes=data["classes"]).paths[:n]


def test_default_qualities_are_the_evaluation_ones():
    assert DEFAULT_QFS == tuple(EVAL_QFS)


def test_versions_are_byte_for_byte_the_evaluation_settings(data):
    path = _files(data, 1)[0]
    with open(path, "rb") as f:
        original = f.read()
    expected = [encode_setting(original, s) for s in make_settings(DEFAULT_QFS)[1:]]
    assert list(jpeg_versions(original, DEFAULT_QFS)) == expected
    # ... and the pipeline feeds each of them through the backbone's own pipeline.
    bundle = resolve("multiqf", weights=False, num_classes=8, **TINY)
    assert bundle.kind == "rgb" and bundle.versions == DEFAULT_QFS
    batch = bundle.pipeline(threads=2)([path])
    assert batch.inputs.shape == (1, 11, 3, 112, 112) and batch.paths == ["versions-rgb"]
    inner = resolve("small_resnet_rgb", weights=False, num_classes=8, width=8).pipeline(threads=2)
    direct = inner([original] + expected).inputs
    torch.testing.assert_close(batch.inputs[0], direct, rtol=0, atol=0)


def test_shared_backbone_and_the_mean_of_logits_head(data):
    torch.manual_seed(0)
    net = create_model("multiqf", weights=False, num_classes=8, **TINY).eval()
    assert isinstance(net, MultiQFNet) and net.fc.in_features == 11 * 8
    x = torch.randn(2, 11, 3, 112, 112)
    with torch.no_grad():
        per_version = torch.stack([net.backbone(x[:, v]) for v in range(11)], 1)
        torch.testing.assert_close(net(x), per_version.mean(1))
        # The head is a trainable linear layer over the concatenation, not a fixed mean.
        net.fc.weight[:, 8:].zero_()
        net.fc.weight[:, :8] = torch.eye(8)
        torch.testing.assert_close(net(x), per_version[:, 0])
        # Chunked backbone calls (no gradient) give the same numbers.
        net.max_backbone_batch = 5
        torch.testing.assert_close(net(x), per_version[:, 0])
    with pytest.raises(ValueError, match=r"takes \(B, 11, C, H, W\) inputs"):
        net(torch.zeros(2, 10, 3, 112, 112))
    # head="features": the pooled features concatenated; fc starts as the backbone classifier / V.
    feat = create_model("multiqf", weights=False, num_classes=8, head="features", **TINY).eval()
    with torch.no_grad():
        per_version = torch.stack([feat.backbone(x[:, v]) for v in range(11)], 1)
        torch.testing.assert_close(feat(x), per_version.mean(1), rtol=1e-4, atol=1e-5)
    assert feat.fc.in_features == 11 * feat.backbone.fc.in_features
    with pytest.raises(ValueError, match="head must be one of"):
        create_model("multiqf", weights=False, head="probs", **TINY)
    with pytest.raises(ValueError, match="its own backbone"):
        create_model("multiqf", weights=False, backbone="multiqf")


def test_checkpoint_round_trip_keeps_backbone_head_and_qualities(tmp_path, data):
    torch.manual_seed(1)
    net = create_model("multiqf", weights=False, num_classes=8, qfs=(90, 50), head="features", **TINY)
    with torch.no_grad():
        net.fc.weight.normal_()
    path = tmp_path / "m.pt"
    save_checkpoint(path, net.eval(), class_names=[f"c{i}" for i in range(8)])
    ckpt = load_checkpoint(path)
    assert ckpt.model == "multiqf" and ckpt.model_kwargs == {"backbone": "small_resnet_rgb", "head": "features",
                                                             "qfs": [90, 50], "width": 8}
    bundle = resolve(None, weights=str(path))
    assert bundle.versions == (90, 50) and bundle.class_names[0] == "c0" and bundle.trained
    files = _files(data, 2)
    batch = bundle.pipeline(threads=2)(files)
    assert batch.inputs.shape == (2, 3, 3, 112, 112)
    with torch.no_grad():
        torch.testing.assert_close(bundle.model.eval()(batch.inputs), net(batch.inputs))
    # The identity (stored eval results are reused only for it) depends on the qualities.
    other = resolve("multiqf", weights=False, num_classes=8, qfs=(90, 40), head="features", **TINY)
    assert other.identity != resolve("multiqf", weights=False, num_classes=8, qfs=(90, 50), head="features",
                                     **TINY).identity


def test_dct_backbone_reads_every_version_as_coefficients(data):
    bundle = resolve("multiqf", weights=False, num_classes=8, backbone="small_resnet_dct_fbs8", width=8)
    assert bundle.kind == "dct" and bundle.input.kind == "upsampling"
    files = _files(data, 2)
    batch = bundle.pipeline(threads=2)(files + [b"not a jpeg"])
    assert batch.inputs.shape == (3, 11, 24, 14, 14) and batch.paths == ["versions-dct"] * 2 + [None]
    assert batch.errors[2] is not None and "<bytes #2>" in str(batch.errors[2])
    assert torch.count_nonzero(batch.inputs[2]) == 0
    inner = resolve("small_resnet_dct_fbs8", weights=False, num_classes=8, width=8).pipeline(threads=2)
    with open(files[1], "rb") as f:
        original = f.read()
    direct = inner([original, encode_setting(original, make_settings((10,))[1])]).inputs
    torch.testing.assert_close(batch.inputs[1, [0, 10]], direct, rtol=0, atol=0)
    with torch.no_grad():
        assert bundle.model.eval()(batch.inputs).shape == (3, 8)


def test_pretrained_default_weights_are_the_backbones_with_a_mean_head():
    bundle = resolve("multiqf")  # efficientnet_lite0's ImageNet weights
    assert bundle.trained and bundle.num_classes == 1000 and bundle.versions == DEFAULT_QFS
    net = bundle.model
    ref = resolve("efficientnet_lite0").model
    for k, v in ref.state_dict().items():
        assert torch.equal(net.backbone.state_dict()[k], v), k
    torch.testing.assert_close(net.fc.weight[:, :1000], torch.eye(1000) / 11)


def _backbone_checkpoint(data, tmp_path) -> str:
    """A multiqf checkpoint whose backbone was trained alone for a few epochs (the way to start
    multiqf from any trained backbone through the API)."""
    torch.manual_seed(0)
    run = train(TrainConfig(model="small_resnet_rgb", data=data["train"], classes=data["classes"],
                            out=str(tmp_path / "backbone"), model_kwargs={"width": 8}, epochs=4, batch_size=8,
                            lr=0.05, lr_step=10, augment="crop", workers=0, quiet=True))
    net = create_model("multiqf", weights=False, num_classes=8, **TINY)
    net.backbone.load_state_dict(run["model"].state_dict())
    net.reset_head()
    path = str(tmp_path / "start.pt")
    save_checkpoint(path, net)
    return path


def test_trains_end_to_end_with_the_backbone_frozen_and_evaluates(data, tmp_path):
    start = _backbone_checkpoint(data, tmp_path)
    before = load_checkpoint(start).state_dict
    out = tmp_path / "multiqf"
    code = cli_main(["train", "--model", "multiqf", "--weights", start, "--data", data["train"], "--val", data["val"],
                     "--classes", data["classes"], "--out", str(out), "--epochs", "5", "-b", "32", "--lr", "0.2",
                     "--lr-step", "10", "-j", "0", "--quiet"])
    assert code == 0
    with open(out / "log.jsonl") as f:
        log = [json.loads(line) for line in f]
    losses = [r["train_loss"] for r in log]
    # One full batch a step on fixed features (a convex problem): the loss falls every epoch.
    assert all(b < a for a, b in zip(losses, losses[1:])) and losses[-1] < losses[0] - 0.1, losses
    after = load_checkpoint(out / "last.pt")
    assert after.model == "multiqf" and after.model_kwargs["backbone"] == "small_resnet_rgb"
    for k, v in before.items():
        if k.startswith("backbone."):  # frozen: weights and BatchNorm statistics unchanged
            assert torch.equal(after.state_dict[k], v), k
    assert not torch.equal(after.state_dict["fc.weight"], before["fc.weight"])
    # `dctnet eval`'s API on the trained model (its input is the original file).
    ds = open_dataset(data["val"], classes=data["classes"])
    pred = make_predictor("multiqf", str(out / "last.pt"), threads=2, batch_size=8)
    summary = run_study(ds, [pred], make_settings([50]), str(tmp_path / "eval"), progress=False,
                        report_options={"plots": False})
    with open(summary) as f:
        got = json.load(f)["models"]["multiqf"]
    assert got["count"] == len(ds) and got["settings"]["original"]["top1"] == pytest.approx(
        100 * log[-1]["val_top1"], abs=1e-6)
    assert set(got["selectors"]) >= {"HRS", "MEANPROB"}


def test_unfreeze_last_trains_only_the_last_blocks(data, tmp_path):
    start = _backbone_checkpoint(data, tmp_path)
    before = load_checkpoint(start).state_dict
    net = resolve(None, weights=start).model
    blocks = backbone_blocks(net.backbone)
    last = {f"backbone.{n}" for n, m in net.backbone.named_modules() if m is blocks[-1][0]}
    result = train(TrainConfig(model="multiqf", weights=start, data=data["train"], classes=data["classes"],
                               out=str(tmp_path / "unfrozen"), epochs=1, batch_size=16, lr=0.05, workers=0,
                               unfreeze_last=2, quiet=True))  # the backbone's fc and its last block
    after = result["model"].state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    prefix = next(iter(last))
    assert any(k.startswith(prefix + ".") for k in changed)
    assert "backbone.fc.weight" in changed and "fc.weight" in changed
    assert all(k.startswith((prefix + ".", "backbone.fc.", "fc.")) for k in changed), sorted(changed)


def test_training_options_fail_clearly(data, tmp_path):
    base = dict(data=data["train"], classes=data["classes"], epochs=1, batch_size=8, workers=0, quiet=True)
    with pytest.raises(ValueError, match="--unfreeze-last is for models with a frozen backbone"):
        train(TrainConfig(model="small_resnet_rgb", out=str(tmp_path / "a"), unfreeze_last=1,
                          model_kwargs={"width": 8}, **base))
    with pytest.raises(ValueError, match="--weights default: multiqf has no default weights for 8 classes"):
        train(TrainConfig(model="multiqf", out=str(tmp_path / "b"), weights="default", **base))
    net = create_model("multiqf", weights=False, num_classes=8, **TINY)
    with pytest.raises(ValueError, match="must be >= 0"):
        net.set_trainable_blocks(-1)
    net.set_trainable_blocks(99)  # more than there are: every block (the stem is no block)
    frozen = [n for n, p in net.named_parameters() if not p.requires_grad]
    assert frozen and all(n.startswith("backbone.stem_") for n in frozen), frozen
    net.set_trainable_blocks(0)
    assert [n for n, p in net.named_parameters() if p.requires_grad] == ["fc.weight", "fc.bias"]
    net.train()
    assert net.training and not net.backbone.training and not net.backbone.layer1[0].bn1.training
