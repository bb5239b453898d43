"""YOLO-format dataset loading: good layouts load, bad ones fail naming file:line."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from yolo_ov.errors import DatasetError
from yolo_ov.eval.dataset import find_images, load_dataset


def make_dataset(root: Path, labels: dict[str, str | None], names: str = "names: [cat, dog]") -> Path:
    """A tiny dataset: one 32x48 image per entry; ``None`` = no label file (background)."""
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    img = np.full((32, 48, 3), 100, np.uint8)
    for stem, text in labels.items():
        cv2.imwrite(str(root / "images" / f"{stem}.jpg"), img)
        if text is not None:
            (root / "labels" / f"{stem}.txt").write_text(text, encoding="utf-8")
    (root / "data.yaml").write_text(f"val: images\ntrain: images\n{names}\n", encoding="utf-8")
    return root


def test_shared_coco96_loads(shared):
    ds = load_dataset(shared.coco96)
    assert len(ds) == 96
    assert ds.num_classes == 80 and ds.names[0] == "person"
    assert ds.instances == sum(
        len(p.read_text(encoding="utf-8").split("\n")) - (p.read_text(encoding="utf-8").endswith("\n"))
        for p in (shared.coco96 / "labels").glob("*.txt")
    )
    backgrounds = [it for it in ds if it.label_file is None]
    assert len(backgrounds) == 2


def test_boxes_polygons_and_backgrounds(tmp_path):
    root = make_dataset(tmp_path / "ds", {
        "a": "0 0.5 0.5 0.5 0.25\n\n1 0.25 0.25 0.1 0.1\n",
        "b": "1 0.1 0.2 0.3 0.2 0.3 0.6 0.1 0.6\n",  # polygon -> box x 0.1..0.3, y 0.2..0.6
        "c": None,
    }, names="names:\n  0: cat\n  1: dog")
    ds = load_dataset(root)
    assert [it.image.stem for it in ds] == ["a", "b", "c"]
    a, b, c = ds.items
    np.testing.assert_array_equal(a.class_id, [0, 1])
    np.testing.assert_allclose(a.xyxy((100, 200)), [[50, 37.5, 150, 62.5], [40, 20, 60, 30]])
    np.testing.assert_allclose(b.xywhn, [[0.2, 0.4, 0.2, 0.4]], atol=1e-6)
    assert len(c) == 0 and c.label_file is None
    assert ds.instances == 3
    assert load_dataset(root / "data.yaml").names == {0: "cat", 1: "dog"}


def test_dataset_without_any_labels(tmp_path):
    root = make_dataset(tmp_path / "ds", {"a": None, "b": None})
    with pytest.raises(DatasetError, match=r"no label files for the 2 'val' images"):
        load_dataset(root)


def test_out_of_range_class_names_file_and_line(tmp_path):
    root = make_dataset(tmp_path / "ds", {"a": "0 0.5 0.5 0.2 0.2\n2 0.5 0.5 0.2 0.2\n"})
    with pytest.raises(DatasetError, match=r"a\.txt:2: class id 2 is out of range; the dataset names 2 classes"):
        load_dataset(root)


@pytest.mark.parametrize(("line", "why"), [
    ("0 0.5 0.5 0.2", "malformed label line"),
    ("0 0.5 0.5 0.2 0.2 0.3", "malformed label line"),
    ("cat 0.5 0.5 0.2 0.2", "non-numeric"),
    ("0.5 0.5 0.5 0.2 0.2", "class id must be an integer"),
    ("0 0.5 0.5 0 0.2", "zero or negative width"),
    ("0 50 60 20 20", "outside the image"),
    ("0 nan 0.5 0.2 0.2", "NaN or infinite"),
])
def test_malformed_lines(tmp_path, line, why):
    root = make_dataset(tmp_path / "ds", {"a": "1 0.5 0.5 0.2 0.2\n", "b": f"0 0.5 0.5 0.2 0.2\n{line}\n"})
    with pytest.raises(DatasetError, match=rf"b\.txt:2: .*{why}"):
        load_dataset(root)


def test_missing_yaml_names_and_split(tmp_path):
    with pytest.raises(DatasetError, match="no such dataset folder"):
        load_dataset(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"no data\.yaml"):
        load_dataset(tmp_path / "empty")
    root = make_dataset(tmp_path / "ds", {"a": "0 0.5 0.5 0.2 0.2\n"}, names="nc: 2")
    with pytest.raises(DatasetError, match="no class 'names'"):
        load_dataset(root)
    (root / "data.yaml").write_text("train: images\nnames: [a, b]\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="no 'val' entry"):
        load_dataset(root)
    (root / "data.yaml").write_text("val: elsewhere\nnames: [a, b]\n", encoding="utf-8")
    with pytest.raises(DatasetError, match="is not an image folder"):
        load_dataset(root)


def test_find_images_for_calibration(tmp_path, shared):
    assert len(find_images(shared.coco96)) == 96
    assert find_images(shared.coco96 / "images") == shared.coco96_images
    root = make_dataset(tmp_path / "ds", {"a": None})  # labels are not needed to calibrate
    assert [p.name for p in find_images(root)] == ["a.jpg"]
    (tmp_path / "txt").mkdir()
    (tmp_path / "txt" / "notes.txt").write_text("x", encoding="utf-8")
    with pytest.raises(DatasetError, match="holds no image files"):
        find_images(tmp_path / "txt")
    with pytest.raises(DatasetError, match="no such dataset or image folder"):
        find_images(tmp_path / "missing")
