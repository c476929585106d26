"""`dctnet train`: exact resume, checkpoints that evaluate, JSON-lines logs, RGB models, DDP
with gloo on 2 CPU processes. Tiny models (width 8) on 64-pixel synthetic images."""

from __future__ import annotations

import json
import os
import socket

import pytest
import torch
import torch.multiprocessing as mp

from dctnet.cli import main as cli_main
from dctnet.data.synthetic import SyntheticSpec, make_synthetic_dataset
from dctnet.models import load_checkpoint, load_model
from dctnet.train import TrainConfig, train

TINY = {"width": 8}


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("train-data")
    return make_synthetic_dataset(root, SyntheticSpec(train_per_class=4, val_per_class=2, size=64))


def _config(data, out, **kw) -> TrainConfig:
    base = dict(model="small_resnet_dct_fbs4", data=data["train"], val=data["val"], classes=data["classes"],
                out=str(out), model_kwargs=dict(TINY), epochs=2, batch_size=8, lr=0.05, lr_step=1, size=48,
                stats_images=16, workers=2, quiet=True)
    base.update(kw)
    return TrainConfig(**base)


def _json_lines(path) -> list:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _state(path) -> dict:
    ckpt = load_checkpoint(path)
    return {"weights": ckpt.state_dict, "optimizer": ckpt.extra["train_state"]["optimizer"]["state"]}


def _assert_same(a, b):
    for k in a["weights"]:
        assert torch.equal(a["weights"][k], b["weights"][k]), k
    for k in a["optimizer"]:
        assert torch.equal(a["optimizer"][k]["momentum_buffer"], b["optimizer"][k]["momentum_buffer"])


def test_resume_continues_exactly(data, tmp_path):
    straight = train(_config(data, tmp_path / "straight"))
    assert len(straight["history"]) == 2
    train(_config(data, tmp_path / "split", epochs=1))
    resumed = train(_config(data, tmp_path / "split", epochs=2, resume="auto"))
    _assert_same(_state(straight["checkpoint"]), _state(resumed["checkpoint"]))
    # The learning-rate step (every epoch here) survived the interruption too.
    assert [r["lr"] for r in resumed["history"]] == pytest.approx([0.05, 0.005])
    assert resumed["history"] == load_checkpoint(resumed["checkpoint"]).extra["history"]


@pytest.mark.parametrize("model,workers", [("small_resnet_dct_fbs4", 2), ("small_resnet_rgb", 0)])
def test_resume_inside_an_epoch_continues_exactly(data, tmp_path, monkeypatch, model, workers):
    import dctnet.train.loop

    straight = train(_config(data, tmp_path / "straight", model=model, workers=workers))
    real_save = dctnet.train.loop.save_checkpoint

    def crash_after_mid_epoch_save(path, *args, extra=None, **kw):
        real_save(path, *args, extra=extra, **kw)
        state = (extra or {}).get("train_state", {})
        if state.get("epoch") == 1 and state.get("step") == 2:   # epoch 2, after its 2nd of 4 steps
            raise RuntimeError("simulated crash")

    monkeypatch.setattr(dctnet.train.loop, "save_checkpoint", crash_after_mid_epoch_save)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train(_config(data, tmp_path / "crashed", model=model, workers=workers, checkpoint_every=1))
    monkeypatch.setattr(dctnet.train.loop, "save_checkpoint", real_save)
    assert load_checkpoint(tmp_path / "crashed" / "last.pt").extra["train_state"]["step"] == 2
    resumed = train(_config(data, tmp_path / "crashed", model=model, workers=workers, resume="auto"))
    _assert_same(_state(straight["checkpoint"]), _state(resumed["checkpoint"]))
    timing = ("train_seconds", "train_images_per_s", "val_seconds")
    for a, b in zip(straight["history"], resumed["history"]):
        # (sums of the steps before and after the interruption are added in another order)
        assert {k: v for k, v in a.items() if k not in timing} == \
            pytest.approx({k: v for k, v in b.items() if k not in timing}, rel=1e-12)


def test_checkpoint_carries_what_evaluation_needs(data, tmp_path):
    result = train(_config(data, tmp_path / "run", epochs=1, stats_images=100))  # all 32 images
    ckpt = load_checkpoint(result["checkpoint"])
    assert ckpt.model == "small_resnet_dct_fbs4" and ckpt.model_kwargs == TINY
    assert ckpt.layout.mean is not None and len(ckpt.layout.std) == 12
    assert ckpt.class_names[0] == "plain disc (luma only)" and len(ckpt.class_names) == 8
    # The stored statistics are the training images' (independent float64 measurement).
    import numpy as np

    from dctnet import read_dct
    from dctnet.data.datasets import open_dataset
    from dctnet.ops import DCTLayout, to_tensor

    ds = open_dataset(data["train"], classes=data["classes"])
    x = to_tensor([read_dct(p) for p in ds.paths], DCTLayout("upsampling", 4), crop="center", size=48,
                  backend="torch").double()
    assert np.allclose(ckpt.layout.mean, x.mean(dim=(0, 2, 3)).numpy(), rtol=1e-5, atol=1e-4)
    assert np.allclose(ckpt.layout.std, x.std(dim=(0, 2, 3), unbiased=False).numpy(), rtol=1e-4, atol=1e-4)
    model = load_model(result["checkpoint"])
    assert model.layout == ckpt.layout and model.fc.out_features == 8
    # The inference API takes the checkpoint as it is.
    from dctnet import classify

    clf = classify.Classifier("small_resnet_dct_fbs4", weights=result["checkpoint"])
    preds = clf.predict(ds.paths[:3], topk=2)
    assert all(p.error is None and len(p) == 2 for p in preds)
    # Per-epoch JSON lines.
    lines = _json_lines(tmp_path / "run" / "log.jsonl")
    assert len(lines) == 1
    rec = lines[0]
    assert rec["epoch"] == 1 and rec["train_images"] == 32 and rec["val_images"] == 16
    for key in ("train_loss", "train_top1", "train_top5", "train_images_per_s", "val_loss", "val_top1", "val_top5"):
        assert isinstance(rec[key], float) and rec[key] >= 0
    assert 0 <= rec["train_top1"] <= rec["train_top5"] <= 1


def test_rgb_model_trains_with_the_rgb_loader(data, tmp_path):
    result = train(_config(data, tmp_path / "rgb", model="small_resnet_rgb", epochs=1, workers=0,
                           label_smoothing=0.1, augment="rrc", scale=(0.5, 1.0)))
    ckpt = load_checkpoint(result["checkpoint"])
    assert ckpt.layout is None and ckpt.mean is not None
    assert result["history"][0]["train_images"] == 32
    model = load_model(result["checkpoint"])
    assert model.fc.out_features == 8


def test_cli_train_reports_bad_input(tmp_path, capsys):
    code = cli_main(["train", "--model", "small_resnet_dct_fbs4", "--data", str(tmp_path / "missing"),
                     "--out", str(tmp_path / "o")])
    assert code == 1 and "not a folder" in capsys.readouterr().err
    code = cli_main(["train", "--model", "no_such_model", "--data", str(tmp_path), "--out", str(tmp_path / "o")])
    assert code == 1


def test_cli_train_runs(data, tmp_path, capsys):
    code = cli_main(["train", "-m", "small_resnet_dct_fbs2", "-d", data["train"], "--classes", data["classes"],
                     "-o", str(tmp_path / "cli"), "--model-arg", "width=8", "--epochs", "1", "-b", "16",
                     "--size", "48", "--stats-images", "8", "-j", "0"])
    out = capsys.readouterr().out
    assert code == 0 and "epoch 1/1" in out and "img/s" in out
    assert load_checkpoint(tmp_path / "cli" / "last.pt").model_kwargs == {"width": 8}


# --------------------------------------------------------------------------- DDP

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, config: TrainConfig, out_dir: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world),
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    result = train(config)
    torch.save({k: v.detach().clone() for k, v in result["model"].state_dict().items()},
               os.path.join(out_dir, f"rank{rank}.pt"))
    with open(os.path.join(out_dir, f"history{rank}.json"), "w") as f:
        json.dump(result["history"], f)


def test_ddp_two_cpu_processes_gloo(data, tmp_path):
    config = _config(data, tmp_path / "ddp", epochs=1, batch_size=8, workers=1)
    mp.start_processes(_ddp_worker, args=(2, _free_port(), config, str(tmp_path)), nprocs=2, join=True,
                       start_method="spawn")
    a = torch.load(tmp_path / "rank0.pt", weights_only=True)
    b = torch.load(tmp_path / "rank1.pt", weights_only=True)
    # DDP keeps parameters identical across ranks (gradients are averaged); BN buffers are per rank.
    for k in a:
        if "running" not in k and "num_batches" not in k:
            assert torch.equal(a[k], b[k]), k
    hist = [_json_lines(tmp_path / f"history{r}.json")[0] for r in range(2)]
    assert hist[0] == hist[1]  # metrics are reduced over the ranks
    # 32 training images, 4 per rank and step: 8 steps in all, every image once.
    assert hist[0][0]["train_images"] == 32 and hist[0][0]["val_images"] == 16
    # Only rank 0 writes the checkpoint and the log.
    saved = load_checkpoint(tmp_path / "ddp" / "last.pt")
    for k in a:
        assert torch.equal(saved.state_dict[k], a[k]), k
    assert len(_json_lines(tmp_path / "ddp" / "log.jsonl")) == 1


def test_skip_bad_files_covers_statistics_and_training_and_reports_them(data, tmp_path):
    """--skip-bad-files: a PNG named .jpg, a CMYK JPEG and a truncated file in the training set
    are dropped by the statistics pass and by every batch, and listed in OUT/skipped.txt."""
    import io
    import shutil

    from PIL import Image

    root = tmp_path / "train"
    shutil.copytree(data["train"], root)
    cls = sorted(p for p in root.iterdir() if p.is_dir())[0]
    png = cls / "png_named_jpg.jpg"
    Image.new("RGB", (64, 64), (10, 200, 30)).save(png, "PNG")
    buf = io.BytesIO()
    Image.new("CMYK", (64, 64), (10, 20, 30, 40)).save(buf, "JPEG", quality=90)
    cmyk = cls / "cmyk.jpg"
    cmyk.write_bytes(buf.getvalue())
    first = sorted(cls.glob("0*.jpg"))[0].read_bytes()
    cut = cls / "truncated.jpg"
    cut.write_bytes(first[:len(first) // 3])
    bad = {str(png), str(cmyk), str(cut)}
    bad_set = {**data, "train": str(root)}
    with pytest.raises(ValueError, match="png_named_jpg|cmyk|truncated"):
        train(_config(bad_set, tmp_path / "run", epochs=1, stats_images=1000))  # default: stop, naming the file
    result = train(_config(bad_set, tmp_path / "skip", epochs=1, stats_images=1000, on_error="skip"))
    listed = set((tmp_path / "skip" / "skipped.txt").read_text().split())
    assert listed == bad
    assert result["history"][0]["skipped_files"] == 3
    assert result["history"][0]["train_images"] <= 32  # at most the 32 good images
