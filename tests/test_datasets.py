"""Dataset layouts and class lists (dctnet.data.datasets)."""

from __future__ import annotations

import shutil

import pytest

from jpeg_fixtures import CLASSES_TSV, sample_photos
from dctnet.data.datasets import imagenet_classes, load_class_list, open_dataset


def test_shipped_imagenet_classes_equal_the_shared_list():
    shipped = imagenet_classes()
    shared = load_class_list(CLASSES_TSV)
    assert len(shipped) == 1000
    assert shipped.synsets == shared.synsets and shipped.names == shared.names
    assert shipped.synsets[0] == "n01440764" and shipped.names[0] == "tench"
    assert shipped.lookup("n15075141") == 999 and shipped.lookup("goldfish") == 1 and shipped.lookup("x") is None


def test_synset_prefixed_flat_folder_is_the_shared_sample():
    all_photos = sample_photos()
    ds = open_dataset(all_photos[0].parent, classes=CLASSES_TSV)
    classes = imagenet_classes()
    assert ds.layout == "synset-prefix" and len(ds) == len(all_photos) == 100
    for key, label in zip(ds.keys, ds.labels):
        assert classes.synsets[label] == key.split("_")[0]
    assert len(open_dataset(all_photos[0].parent, limit=5)) == 5


@pytest.fixture()
def few_photos():
    return sample_photos()[:4]


def test_class_folders_use_the_class_list_indices(tmp_path, few_photos):
    for p in few_photos:
        synset = p.name.split("_")[0]
        (tmp_path / synset).mkdir()
        shutil.copy(p, tmp_path / synset / "a.jpg")
    ds = open_dataset(tmp_path)
    assert ds.layout == "class-folders"
    assert [imagenet_classes().synsets[i] for i in ds.labels] == [p.name.split("_")[0] for p in few_photos]
    # Folders that are not classes of the list: sorted folder names, like ImageFolder.
    other = tmp_path / "other"
    for name in ("zebra", "apple"):
        (other / name / "sub").mkdir(parents=True)
        shutil.copy(few_photos[0], other / name / "sub" / "x.JPEG")
    ds = open_dataset(other)
    assert ds.classes.names == ("apple", "zebra") and ds.labels == [0, 1]
    assert ds.keys == ["apple/sub/x.JPEG", "zebra/sub/x.JPEG"]
    with pytest.raises(ValueError, match="not in"):
        open_dataset(other, classes=CLASSES_TSV)


def test_flat_folder_with_labels_file(tmp_path, few_photos):
    data = tmp_path / "val"
    data.mkdir()
    for i, p in enumerate(few_photos):
        shutil.copy(p, data / f"ILSVRC2012_val_{i + 1:08d}.JPEG")
    labels = tmp_path / "labels.txt"
    labels.write_text("ILSVRC2012_val_00000001.JPEG 0\nILSVRC2012_val_00000002.JPEG n01443537\n"
                      "ILSVRC2012_val_00000003,999\nILSVRC2012_val_00000004.JPEG\t5\n")
    ds = open_dataset(data, labels=labels)
    assert ds.layout == "labels-file" and ds.labels == [0, 1, 999, 5]
    kaggle = tmp_path / "LOC_val_solution.csv"
    kaggle.write_text("ImageId,PredictionString\n" + "".join(
        f"ILSVRC2012_val_{i + 1:08d},n01440764 1 2 3 4 n01440764 5 6 7 8\n" for i in range(4)))
    assert open_dataset(data, labels=kaggle).labels == [0, 0, 0, 0]
    devkit = tmp_path / "ILSVRC2012_validation_ground_truth.txt"
    devkit.write_text("490\n361\n171\n822\n")
    with pytest.raises(ValueError, match="ILSVRC2012_IDs"):
        open_dataset(data, labels=devkit)
    partial = tmp_path / "partial.txt"
    partial.write_text("ILSVRC2012_val_00000001.JPEG 0\n")
    with pytest.raises(ValueError, match="3 images have no label"):
        open_dataset(data, labels=partial)
    bad = tmp_path / "bad.txt"
    bad.write_text("ILSVRC2012_val_00000001.JPEG 1000\n")
    with pytest.raises(ValueError, match="outside 0..999"):
        open_dataset(data, labels=bad)


def test_unlabelled_flat_folder_and_bad_class_lists(tmp_path, few_photos):
    shutil.copy(few_photos[0], tmp_path / "holiday.jpg")
    with pytest.raises(ValueError, match="synset prefix"):
        open_dataset(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="no JPEG files"):
        open_dataset(empty)
    dup = tmp_path / "dup.tsv"
    dup.write_text("a\tx\nb\ty\na\tz\n")
    with pytest.raises(ValueError, match="dup.tsv:3: duplicate"):
        load_class_list(dup)
    with pytest.raises(ValueError, match="not a folder"):
        open_dataset(tmp_path / "missing")
