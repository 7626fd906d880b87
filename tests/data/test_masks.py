"""Mask data: folder pairs, palette / index / 1-bit / RGB masks, the bad inputs (one-line errors naming the file),
joint augmentation (same geometry for image and mask, nearest-neighbour masks, photometric on the image only),
random crops, resumable order; the real datasets' layouts when they are present."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import datasets_root
from deepkit.data.mask_loader import JointAugment, MaskLoader, joint_augment, resize_pair
from deepkit.data.masks import IGNORE, MaskSet, read_mask, read_mask_folders, value_lut
from deepkit.errors import DataError
from deepkit.viz.masks import class_palette, save_palette_png

CLASSES = ["background", "cat", "dog"]


def write_pair(folder: Path, stem: str, mask: np.ndarray, mode: str = "L", size: tuple[int, int] | None = None):
    (folder / "images").mkdir(parents=True, exist_ok=True)
    (folder / "masks").mkdir(parents=True, exist_ok=True)
    h, w = size or mask.shape
    Image.fromarray(np.full((h, w, 3), 100, np.uint8)).save(folder / "images" / f"{stem}.jpg")
    if mode == "P":
        save_palette_png(mask, folder / "masks" / f"{stem}.png", class_palette(len(CLASSES)))
    elif mode == "1":
        Image.fromarray(mask.astype(bool)).save(folder / "masks" / f"{stem}.png")
    elif mode == "RGB":
        Image.fromarray(class_palette(3)[mask]).save(folder / "masks" / f"{stem}.png")
    else:
        Image.fromarray(mask.astype(np.uint8)).save(folder / "masks" / f"{stem}.png")


MASK = np.array([[0, 1, 1, 2], [0, 0, 2, 2], [1, 1, 0, 0]], np.uint8)


@pytest.mark.parametrize("mode", ["L", "P"])
def test_index_and_palette_pngs_give_the_class_indices(tmp_path, mode):
    write_pair(tmp_path, "a", MASK, mode)
    assert Image.open(tmp_path / "masks" / "a.png").mode == mode
    ds = read_mask_folders(tmp_path / "images", tmp_path / "masks", CLASSES)
    assert len(ds) == 1 and ds.samples[0].name == "a"
    assert np.array_equal(ds.samples[0].mask, MASK)


def test_one_bit_masks_read_as_zero_and_one(tmp_path):
    write_pair(tmp_path, "a", MASK > 0, "1")
    assert Image.open(tmp_path / "masks" / "a.png").mode == "1"
    ds = read_mask_folders(tmp_path / "images", tmp_path / "masks", ["background", "vessel"])
    assert np.array_equal(ds.samples[0].mask, (MASK > 0).astype(np.uint8))


def test_values_and_ignore_index_map_raw_labels(tmp_path):
    raw = np.array([[0, 255, 128], [128, 0, 7]], np.uint8)  # 7: ignored
    write_pair(tmp_path, "a", raw)
    ds = read_mask_folders(tmp_path / "images", tmp_path / "masks", ["cell", "membrane", "other"], [255, 0, 128], 7)
    assert ds.samples[0].mask.tolist() == [[1, 0, 2], [2, 1, IGNORE]]


def test_rgb_masks_map_through_a_palette_or_are_a_clear_error(tmp_path):
    write_pair(tmp_path, "a", MASK, "RGB")
    palette = class_palette(3)[:3].tolist()
    ds = read_mask_folders(tmp_path / "images", tmp_path / "masks", CLASSES, palette=palette)
    assert np.array_equal(ds.samples[0].mask, MASK)
    with pytest.raises(DataError, match=r"mask .*a\.png is an RGB image \(3 colours\); expected an index or palette "
                                         r"PNG .* or set data\.palette"):  # fmt: skip
        read_mask_folders(tmp_path / "images", tmp_path / "masks", CLASSES)
    with pytest.raises(DataError, match=r"holds colour\(s\) \[\[0, 128, 0\]\] that are not in data\.palette"):
        read_mask_folders(tmp_path / "images", tmp_path / "masks", CLASSES, palette=[palette[0], palette[1], [1, 2, 3]])


def test_a_label_outside_the_class_list_names_the_file_and_the_values(tmp_path):
    write_pair(tmp_path, "a", np.array([[0, 1], [5, 9]], np.uint8))
    with pytest.raises(DataError) as e:
        read_mask_folders(tmp_path / "images", tmp_path / "masks", CLASSES)
    msg = str(e.value)
    assert "a.png" in msg and "label value(s) 5, 9 outside the class list (3 classes: values 0-2 expected" in msg
    assert "\n" not in msg


def test_a_mask_of_another_size_than_its_image_is_an_error(tmp_path):
    write_pair(tmp_path, "a", MASK, size=(4, 5))
    with pytest.raises(DataError, match=r"mask .*a\.png is 4×3 px but its image is 5×4; expected masks of the same"):
        read_mask_folders(tmp_path / "images", tmp_path / "masks", CLASSES)


def test_an_image_without_a_mask_is_an_error_naming_it(tmp_path):
    write_pair(tmp_path, "a", MASK)
    Image.fromarray(np.zeros((3, 4, 3), np.uint8)).save(tmp_path / "images" / "lonely.png")
    with pytest.raises(DataError, match=r"1 image\(s\) without a mask in .*masks: lonely\.png \(expected a mask with "
                                         "the same stem\\)"):  # fmt: skip
        read_mask_folders(tmp_path / "images", tmp_path / "masks", CLASSES)


def test_a_mask_with_deep_values_is_an_error(tmp_path):
    path = tmp_path / "deep.png"
    Image.fromarray(np.array([[0, 300]], np.uint16)).save(path)  # a 16-bit PNG
    with pytest.raises(DataError, match="holds values up to 300; expected class indices < 255"):
        read_mask(path, value_lut(None, 3, None), CLASSES)


# --- joint augmentation ----------------------------------------------------------------------------------------------
def coded_pair(h: int = 24, w: int = 32):
    """An image whose pixel values encode the mask: image = mask / 10 (one channel), so any transform that moves
    them differently breaks the relation."""
    g = torch.Generator().manual_seed(0)
    mask = torch.randint(0, 5, (h // 4, w // 4), generator=g).repeat_interleave(4, 0).repeat_interleave(4, 1)
    return (mask.float() / 10)[None], mask


@pytest.mark.parametrize("seed", range(6))
def test_geometry_moves_image_and_mask_together(seed):
    image, mask = coded_pair()
    cfg = JointAugment(hflip=0.5, vflip=0.5, rot90=True, scale=None)
    out_img, out_mask = joint_augment(image, mask, cfg, crop=16, rng=np.random.default_rng(seed))
    assert out_img.shape == (1, 16, 16) and out_mask.shape == (16, 16)
    assert torch.equal((out_img[0] * 10).round().long(), out_mask)


def test_scaled_masks_keep_class_indices_nearest_neighbour():
    image, mask = coded_pair()
    img2, mask2 = resize_pair(image, mask, (37, 45))
    assert mask2.dtype == mask.dtype and set(mask2.unique().tolist()) <= set(mask.unique().tolist())
    assert img2.shape == (1, 37, 45)
    # interior pixels (away from block edges) agree between the bilinear image and the nearest mask
    agree = ((img2[0] * 10).round().long() == mask2).float().mean()
    assert agree > 0.8


def test_photometric_changes_touch_the_image_only():
    image, mask = coded_pair()
    cfg = JointAugment(hflip=0.0, brightness=0.3, contrast=0.5)
    out_img, out_mask = joint_augment(image, mask, cfg, None, np.random.default_rng(3))
    assert torch.equal(out_mask, mask)
    assert not torch.allclose(out_img, image)


def test_crops_pad_small_images_with_the_ignore_label():
    image, mask = coded_pair(8, 8)
    _, out_mask = joint_augment(image, mask, JointAugment(hflip=0.0), 12, np.random.default_rng(0))
    assert out_mask.shape == (12, 12) and (out_mask == IGNORE).sum() == 12 * 12 - 8 * 8


def loader_set(n: int = 6) -> MaskSet:
    from deepkit.data.masks import MaskSample

    rng = np.random.default_rng(0)
    samples = [MaskSample(rng.integers(0, 255, (20, 20), dtype=np.uint8), rng.integers(0, 3, (20, 20)).astype(np.uint8),
                          f"s{i}") for i in range(n)]  # fmt: skip
    return MaskSet(CLASSES, samples)


def test_batches_are_a_pure_function_of_seed_epoch_and_position():
    ds = loader_set()
    aug = JointAugment(hflip=0.5, rot90=True, scale=[0.8, 1.2], brightness=0.1)

    def epoch(e: int, start: int = 0):
        loader = MaskLoader(ds, 2, 1, [0.5], [0.25], shuffle=True, seed=3, augment=aug, crop=16)
        loader.set_epoch(e, start)
        return list(loader)

    first, again, later = epoch(1), epoch(1), epoch(1, start=2)
    assert all(torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(first, again, strict=True))
    assert torch.equal(first[2][0], later[0][0]) and torch.equal(first[2][1], later[0][1])  # resumed mid-epoch
    assert not torch.equal(epoch(2)[0][0], first[0][0])
    x, y = first[0]
    assert x.shape == (2, 1, 16, 16) and y.dtype == torch.int64


def test_evaluation_batches_pad_odd_sizes_with_ignore():
    from deepkit.data.masks import MaskSample

    ds = MaskSet(CLASSES, [MaskSample(np.zeros((10, 12), np.uint8), np.ones((10, 12), np.uint8), "a"),
                           MaskSample(np.zeros((14, 9), np.uint8), np.ones((14, 9), np.uint8), "b")])  # fmt: skip
    x, y = next(iter(MaskLoader(ds, 2, 1, [0.0], [1.0])))
    assert x.shape == (2, 1, 14, 12)
    assert (y[0, 10:] == IGNORE).all() and (y[1, :, 9:] == IGNORE).all() and (y[0, :10, :12] == 1).all()


# --- the real datasets (read in place; skipped when absent) -----------------------------------------------------------
def need(*parts: str) -> Path:
    path = datasets_root().joinpath(*parts)
    if not path.is_dir():
        pytest.skip(f"{path} not present (set DEEPKIT_DATA to the shared datasets folder)")
    return path


def test_chase_db1_split_and_first_observer():
    from deepkit.families.segmentation import SegmentationDataConfig, read_sets

    root = need("chase_db1", "CHASEDB1")
    sets = read_sets(SegmentationDataConfig(name="chase_db1", path=str(root)))
    assert {k: len(v) for k, v in sets.items()} == {"val": 2, "train": 18, "test": 8}
    assert [s.name for s in sets["test"].samples] == [f"Image_{n:02d}{e}" for n in (11, 12, 13, 14) for e in "LR"]
    m = sets["test"].samples[0].mask
    assert m.shape == (960, 999) and set(np.unique(m)) == {0, 1} and 0.03 < m.mean() < 0.12  # vessels ~7%


def test_isbi2012_membrane_is_the_foreground():
    from deepkit.data.masks import read_isbi2012

    ds = read_isbi2012(need("isbi2012_em", "membrane", "train"))
    assert len(ds) == 30 and [s.name for s in ds.samples[:3]] == ["0", "1", "2"]
    share = np.mean([s.mask.mean() for s in ds.samples])
    assert 0.15 < share < 0.3  # membrane (class 1) is about 22% of pixels


def test_camvid_lists_and_ignored_unlabelled():
    from deepkit.data.masks import read_camvid

    val = read_camvid(need("camvid", "CamVid"), "val")
    assert len(val) == 101 and val.samples[0].mask.shape == (360, 480)
    values = set(np.unique(np.concatenate([s.mask.reshape(-1) for s in val.samples[:10]])).tolist())
    assert values <= set(range(11)) | {IGNORE} and IGNORE in values


def test_repeats_give_each_training_image_several_crops_an_epoch():
    ds = loader_set(3)
    loader = MaskLoader(ds, 4, 1, [0.5], [0.25], shuffle=True, seed=0, augment=JointAugment(hflip=0.0), crop=8,
                        repeats=4)  # fmt: skip
    assert loader.num_samples == 12 and len(loader) == 3
    crops = [loader.sample(i)[1] for i in (0, 3, 6, 9)]  # image 0, four times
    assert len({tuple(c.reshape(-1).tolist()) for c in crops}) > 1  # different crops of the same image


def test_coco128_semantic_masks_map_panoptic_ids_and_ignore_unlabeled():
    from deepkit.data.masks import read_coco128_semantic

    ds = read_coco128_semantic(need("coco128", "semantic_segmentation").parent)
    assert len(ds) == 100 and len(ds.class_names) == 133 and ds.class_names[0] == "person"
    first = ds.samples[0]
    raw = np.asarray(Image.open(datasets_root() / "coco128" / "semantic_segmentation" / "masks" / "train2017" /
                                f"{first.name}.png"))  # fmt: skip
    assert np.array_equal(first.mask == IGNORE, raw == 0)  # unlabeled: ignored
    assert np.array_equal(first.mask == 0, raw == 1)  # panoptic id 1 (person) is class 0
