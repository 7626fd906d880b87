"""Semantic segmentation: U-Net, FCN and DeepLabv3 on street scenes (CamVid), medical images (CHASE_DB1 retinal
vessels, ISBI 2012 EM membranes), MNIST scenes or any folder of image + mask pairs; mIoU that honours the ignore
label; masks drawn.

Data (``data.name``): ``mnist_scenes`` (generated; digit pixels labelled by class, 11 classes with the background),
``camvid`` (SegNet's CamVid in DATA_ROOT/camvid/CamVid: train/val/test lists, 11 classes, label 11 Unlabelled
ignored), ``coco128`` (its semantic masks: 100 photos, 133 panoptic classes, 0 ignored; val/test fractions),
``chase_db1`` (DATA_ROOT/chase_db1/CHASEDB1: the first 20 photos in name order train, the last 8 test, the first
observer's masks; ``data.val_split`` of the training photos validate), ``isbi2012`` (DATA_ROOT/isbi2012_em/
membrane/train: slices 0-22 train, 23-24 val, 25-29 test; membrane is the foreground), ``folder`` (``data.images`` +
``data.masks`` folders with the same stems, or ``data.path`` holding ``images/`` and ``masks/``, or
``{train,val,test}/{images,masks}``). Models: every registered segmenter (``unet``, ``unet_small``,
``unet_encoder``, ``fcn_*``, ``deeplabv3_*``). Metrics (:mod:`deepkit.metrics.segmentation`): mIoU (the rule for
the background and the ignore label is written in ``results.json`` and ``iou_table.txt``), per-class IoU, pixel
accuracy, Dice (binary tasks: the foreground's Dice/F1 and IoU, pixel error). Report: ``plots/segmentation.png``
(rows of image / truth / prediction), ``iou_table.txt``, a few test images in ``samples/``. Verbs: ``predict`` (a
palette mask PNG and an overlay PNG per image), ``eval`` (the metrics with one IoU per class).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from deepkit.errors import ConfigError, DataError, ShapeError
from deepkit.families.base import ExportSpec, Family, Finish, Predictor, Saved

if TYPE_CHECKING:
    import numpy as np
    import torch

    from deepkit.data.mask_loader import SegmentationData
    from deepkit.data.masks import MaskSet
    from deepkit.recipe import Recipe
    from deepkit.tasks.base import Task

TASKS = {"segmentation": "semantic segmentation (U-Net, FCN, DeepLabv3): a class per pixel, mIoU, masks drawn"}
DATASETS = {
    "mnist_scenes": "generated scenes of MNIST digits; each digit's pixels labelled with its class (11 classes)",
    "camvid": "SegNet's CamVid (DATA_ROOT/camvid/CamVid): 367/101/233 street frames, 11 classes, Unlabelled ignored",
    "chase_db1": "CHASE_DB1 retinal vessels (DATA_ROOT/chase_db1/CHASEDB1): 20 train / 8 test photos, observer 1",
    "isbi2012": "ISBI 2012 EM membranes (DATA_ROOT/isbi2012_em/membrane/train): 30 slices, 23/2/5 split",
    "coco128": "coco128's semantic masks (DATA_ROOT/coco128): 100 photos, 133 COCO panoptic classes, 0 ignored",
    "folder": "image + mask folders with the same stems (index, palette or 1-bit PNG masks)",
}
GREY_MEAN, GREY_STD = [0.5], [0.25]
MAX_PER_CLASS_CURVES = 20  # more classes: IoU per class only in the final evaluation, not in every epoch's logs
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


@dataclass
class SegmentationTaskConfig:
    """The ``task`` section of segmentation recipes."""

    name: str = "segmentation"
    loss: str = "ce"  # ce, dice, focal, or a sum: ce+dice, focal+dice
    class_weights: list[float] | None = None  # one per class (cross-entropy, Dice and focal weights)
    aux_weight: float = 0.5  # the auxiliary head's loss weight (FCN, DeepLabv3)
    focal_gamma: float = 2.0
    tile: int | None = None  # evaluate images larger than this with overlapping tiles of this side (px)
    tile_overlap: float = 0.25


@dataclass
class SegScenesSection:
    """``data.scenes``: how many MNIST scenes and how they are drawn (:class:`deepkit.data.scenes.ScenesConfig`)."""

    train: int = 2000
    val: int = 200
    test: int = 500
    canvas: int = 64
    min_digits: int = 1
    max_digits: int = 4
    min_size: int = 14
    max_size: int = 40
    max_overlap: float = 0.1
    clutter: int = 4
    noise: float = 8.0


@dataclass
class SegAugmentSection:
    """``data.augment``: joint augmentation of training images and masks (``deepkit.data.mask_loader.JointAugment``)."""

    hflip: float | None = None  # probability of a horizontal flip (default 0.5; 0 for MNIST scenes: digits)
    vflip: float = 0.0
    rot90: bool = False  # random multiples of 90° (orientation-free images: EM slices, fundus photos)
    scale: list[float] | None = None  # scale jitter [low, high] before cropping
    brightness: float = 0.0
    contrast: float = 0.0


@dataclass
class SegmentationDataConfig:
    """The ``data`` section of segmentation recipes."""

    name: str = "mnist_scenes"  # mnist_scenes, camvid, chase_db1, isbi2012, folder
    path: str | None = None  # the dataset's folder (default under DATA_ROOT); folder: holds images/ and masks/
    images: str | None = None  # folder: the image folder
    masks: str | None = None  # folder: the mask folder (same stems)
    classes: list[str] | None = None  # folder: class names (default: class_0 ... from the largest mask value)
    values: list[int] | None = None  # folder: the raw mask value of each class (default: 0, 1, 2, ...)
    ignore_index: int | None = None  # folder: a raw mask value no loss or metric counts (VOC: 255)
    palette: list[list[int]] | None = None  # folder: one RGB colour per class, to read RGB masks
    background: str | None = None  # the background class's name (default: 'background' when there is one)
    observer: int = 1  # chase_db1: whose vessel masks are the truth (1 or 2)
    val_split: float = 0.1  # fraction of the training images held out when the data has no val split
    test_split: float = 0.1  # folder without a test split: fraction held out for testing
    split_seed: int = 0
    max_images: int | None = None  # at most this many images per split (quick runs)
    channels: int | None = None  # 1 or 3 (default: the dataset's)
    resize: list[int] | None = None  # [h, w]: every image and mask resized first (CamVid at a lower resolution)
    crop: int | None = None  # training: random crops of this side (px); None: whole images
    repeats: int = 1  # training: each image this many times an epoch, a new crop each time (few large images)
    mean: list[float] | None = None  # normalization (default: ImageNet's for RGB, 0.5/0.25 for grey)
    std: list[float] | None = None
    batch_size: int = 8
    eval_batch_size: int = 8
    augment: SegAugmentSection = field(default_factory=SegAugmentSection)  # training images and masks
    scenes: SegScenesSection = field(default_factory=SegScenesSection)


@dataclass
class SegmentationSaved(Saved):
    """What a segmentation run keeps to predict: classes, input channels and normalization, resize, tiles."""

    class_names: list[str]
    channels: int = 3
    mean: list[float] = field(default_factory=lambda: list(GREY_MEAN))
    std: list[float] = field(default_factory=lambda: list(GREY_STD))
    background: int | None = None
    resize: list[int] | None = None
    tile: int | None = None
    tile_overlap: float = 0.25
    palette: list[list[int]] | None = None

    def meta(self) -> dict[str, Any]:
        keys = ("class_names", "channels", "mean", "std", "background", "resize", "tile", "tile_overlap", "palette")
        return {"segmentation": {k: getattr(self, k) for k in keys}}

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> SegmentationSaved:
        from deepkit.errors import CheckpointError

        d = meta.get("segmentation")
        if not d:
            raise CheckpointError("the checkpoint has no segmentation metadata (class names): not from deepkit train")
        return cls(**d)


# --- data ------------------------------------------------------------------------------------------------------------
def _split(ds: MaskSet, fractions: dict[str, float], seed: int) -> dict[str, MaskSet]:
    import numpy as np

    order = np.random.default_rng(seed).permutation(len(ds)).tolist()
    out, start = {}, 0
    for name, frac in fractions.items():
        k = int(round(len(ds) * frac)) if frac > 0 else 0
        out[name] = ds.subset(sorted(order[start : start + k]))
        start += k
    out["train"] = ds.subset(sorted(order[start:]))
    return out


def _root(cfg: SegmentationDataConfig, *default: str) -> Path:
    from deepkit.data.sources import data_root

    root = Path(cfg.path).expanduser() if cfg.path else data_root().joinpath(*default)
    if not root.is_dir():
        raise DataError(f"{cfg.name} folder not found: {root} (set DEEPKIT_DATA or data.path)")
    return root


def _folder_classes(cfg: SegmentationDataConfig, masks: Path) -> list[str]:
    if cfg.classes:
        return list(cfg.classes)
    if cfg.values:
        return [f"class_{v}" for v in cfg.values]
    raise ConfigError(f"data.name=folder needs data.classes (the class names, in mask-value order) for {masks}")


def read_sets(cfg: SegmentationDataConfig) -> dict[str, MaskSet]:
    """The recipe's data as splits of :class:`MaskSet`."""
    from deepkit.data import masks as m

    name = cfg.name
    if name == "mnist_scenes":
        from deepkit.data.scenes import ScenesConfig, mnist_scenes

        s = cfg.scenes
        sc = ScenesConfig(s.canvas, s.min_digits, s.max_digits, s.min_size, s.max_size, s.max_overlap, s.clutter,
                          s.noise)  # fmt: skip
        counts = {k: v if cfg.max_images is None else min(v, cfg.max_images)
                  for k, v in (("train", s.train), ("val", s.val), ("test", s.test))}  # fmt: skip
        seeds = {"train": ("train", cfg.split_seed), "val": ("train", cfg.split_seed + 7919),
                 "test": ("test", cfg.split_seed)}  # fmt: skip
        return {k: m.scenes_mask_set(mnist_scenes(seeds[k][0], n, sc, seeds[k][1], cfg.path))
                for k, n in counts.items() if n}  # fmt: skip
    if name == "camvid":
        root = _root(cfg, "camvid", "CamVid")
        sets = {
            split: m.read_camvid(root, split) for split in ("train", "val", "test") if (root / f"{split}.txt").is_file()
        }
        if "train" not in sets:
            raise DataError(f"CamVid in {root} has no train.txt")
    elif name == "chase_db1":
        full = m.read_chase_db1(_root(cfg, "chase_db1", "CHASEDB1"), cfg.observer)
        if len(full) != 28:
            raise DataError(f"CHASE_DB1 should have 28 photos, found {len(full)} in {cfg.path or 'DATA_ROOT'}")
        sets = _split(full.subset(list(range(20))), {"val": cfg.val_split}, cfg.split_seed)
        sets["test"] = full.subset(list(range(20, 28)))
    elif name == "isbi2012":
        full = m.read_isbi2012(_root(cfg, "isbi2012_em", "membrane", "train"))
        if len(full) != 30:
            raise DataError(f"ISBI 2012 should have 30 slices, found {len(full)}")
        sets = {"train": full.subset(list(range(23))), "val": full.subset([23, 24]),
                "test": full.subset(list(range(25, 30)))}  # fmt: skip
    elif name == "coco128":
        full = m.read_coco128_semantic(_root(cfg, "coco128"))
        sets = _split(full, {"val": cfg.val_split, "test": cfg.test_split}, cfg.split_seed)
    elif name == "folder":
        sets = _read_folder(cfg)
    else:
        raise ConfigError(f"unknown segmentation dataset '{name}'; expected one of {', '.join(DATASETS)}")
    if cfg.max_images is not None:
        sets = {k: v.subset(list(range(min(len(v), cfg.max_images)))) for k, v in sets.items()}
    return sets


def _read_folder(cfg: SegmentationDataConfig) -> dict[str, MaskSet]:
    from deepkit.data.masks import read_mask_folders

    def read(images: Path, masks: Path) -> MaskSet:
        classes = _folder_classes(cfg, masks)
        return read_mask_folders(images, masks, classes, cfg.values, cfg.ignore_index, cfg.palette)

    if cfg.images or cfg.masks:
        if not (cfg.images and cfg.masks):
            raise ConfigError("data.name=folder: give both data.images and data.masks (or data.path)")
        full = read(Path(cfg.images), Path(cfg.masks))
        return _split(full, {"val": cfg.val_split, "test": cfg.test_split}, cfg.split_seed)
    if not cfg.path:
        raise ConfigError("data.name=folder needs data.images and data.masks, or data.path holding images/ and masks/")
    root = Path(cfg.path).expanduser()
    if (root / "train" / "images").is_dir():
        sets = {s: read(root / s / "images", root / s / "masks") for s in ("train", "val", "test")
                if (root / s / "images").is_dir()}  # fmt: skip
        fractions = {k: f for k, f in (("val", cfg.val_split), ("test", cfg.test_split)) if k not in sets}
        sets.update(_split(sets["train"], fractions, cfg.split_seed))
        return sets
    full = read(root / "images", root / "masks")
    return _split(full, {"val": cfg.val_split, "test": cfg.test_split}, cfg.split_seed)


def build_segmentation_data(cfg: SegmentationDataConfig, saved: SegmentationSaved | None = None) -> SegmentationData:
    from deepkit.data.mask_loader import JointAugment, SegmentationData
    from deepkit.data.preprocess import Preprocessing

    if cfg.batch_size < 1 or cfg.eval_batch_size < 1:
        raise ConfigError(f"data.batch_size and eval_batch_size must be >= 1, got {cfg.batch_size}, "
                          f"{cfg.eval_batch_size}")  # fmt: skip
    if cfg.repeats < 1:
        raise ConfigError(f"data.repeats must be >= 1, got {cfg.repeats}")
    if cfg.crop is not None and cfg.crop < 8:
        raise ConfigError(f"data.crop must be at least 8 px, got {cfg.crop}")
    if cfg.resize is not None and (len(cfg.resize) != 2 or min(cfg.resize) < 8):
        raise ConfigError(f"data.resize: expected [height, width] of at least 8 px, got {cfg.resize}")
    a = cfg.augment
    hflip = a.hflip if a.hflip is not None else (0.0 if cfg.name == "mnist_scenes" else 0.5)
    augment = JointAugment(hflip, a.vflip, a.rot90, a.scale, a.brightness, a.contrast)
    augment.check()
    sets = read_sets(cfg)
    names = sets["train"].class_names
    if saved is not None and saved.class_names != names:
        raise DataError(f"the data's classes {names[:5]}... differ from the trained run's {saved.class_names[:5]}...")
    grey = cfg.name in ("mnist_scenes", "isbi2012")
    channels = cfg.channels or (saved.channels if saved else (1 if grey else 3))
    if channels not in (1, 3):
        raise ConfigError(f"data.channels must be 1 or 3, got {channels}")
    mean = cfg.mean or (saved.mean if saved else (IMAGENET_MEAN if channels == 3 else GREY_MEAN))
    std = cfg.std or (saved.std if saved else (IMAGENET_STD if channels == 3 else GREY_STD))
    if len(mean) != channels or len(std) != channels or min(std) <= 0:
        raise ConfigError(f"data.mean/std: expected {channels} value(s) each (std > 0), got {mean}, {std}")
    background = _background(cfg, names)
    notes = [f"{split}: {len(ds)} images" for split, ds in sets.items() if len(ds)]
    ignored = {"camvid": "label 11 (Unlabelled)", "coco128": "label 0 (unlabeled)"}.get(cfg.name)
    if cfg.name == "folder" and cfg.ignore_index is not None:
        ignored = f"mask value {cfg.ignore_index}"
    prep = Preprocessing(kind="image", input_shape=[channels, 0, 0], class_names=list(names))
    return SegmentationData(list(names), sets, channels, list(mean), list(std), cfg.batch_size, cfg.eval_batch_size,
                            augment, cfg.crop, cfg.repeats, cfg.resize, background, ignored, notes, prep)  # fmt: skip


def _background(cfg: SegmentationDataConfig, names: list[str]) -> int | None:
    if cfg.background is not None:
        if cfg.background not in names:
            raise ConfigError(f"data.background={cfg.background!r} is not a class; classes: {', '.join(names)}")
        return names.index(cfg.background)
    default = {"isbi2012": "cell"}.get(cfg.name, "background")  # ISBI 2012: the membrane is the foreground
    return names.index(default) if default in names else None


# --- the family ------------------------------------------------------------------------------------------------------
def segmenter_names() -> list[str]:
    from deepkit.models._segmentation import Segmenter
    from deepkit.models.registry import models_of

    return models_of(Segmenter)


def bind_segmenter(model_section: dict[str, Any], num_classes: int, channels: int) -> torch.nn.Module:
    """The segmenter with ``num_classes`` and ``in_channels`` from the data (a model section that disagrees is a
    one-line error)."""
    from deepkit.models.registry import create_bound

    name = model_section["name"]
    if name not in segmenter_names():
        raise ShapeError(f"model '{name}' is not a segmentation model; task 'segmentation' needs one of "
                         f"{', '.join(segmenter_names())}")  # fmt: skip
    bound = {"num_classes": num_classes, "in_channels": channels}
    return create_bound(model_section, bound, f"({num_classes} classes, {channels}-channel images)")


def load_encoder(model: torch.nn.Module, weights: str, trust_pickle: bool = False) -> str | None:
    """A classifier run's weights into a ``unet_encoder``'s encoder (its head dropped); None when ``weights`` is not
    a classifier's. Returns the log line."""
    from deepkit.models.base import Classifier
    from deepkit.models.registry import get_entry, load_state_dict_checked
    from deepkit.weights import load_weights

    state, meta = load_weights(weights, trust_pickle=trust_pickle)
    name = meta.get("model")
    if not name or not issubclass(get_entry(name).cls, Classifier):
        return None
    encoder = getattr(model, "encoder", None)
    if encoder is None:
        raise ConfigError(f"finetune.weights={weights} is a classifier ('{name}'); only model unet_encoder takes a "
                          "classifier's weights (as its encoder)")  # fmt: skip
    if name != model.cfg.encoder:
        raise ConfigError(f"finetune.weights={weights} holds a '{name}' but model.encoder is '{model.cfg.encoder}'")
    own = encoder.state_dict()
    kept = {k: v for k, v in state.items() if k in own}
    load_state_dict_checked(encoder, kept, str(weights), hint=" (the classifier run's model settings expected)")
    dropped = sorted({k.split(".")[0] for k in state if k not in own})
    return (f"finetune: encoder ({name}) loaded from {weights}: {len(kept)} tensors; not used: "
            f"{', '.join(dropped) or 'nothing'} (the classifier's head)")  # fmt: skip


class SegmentationFamily(Family):
    name = "segmentation"
    description = "semantic segmentation: U-Net, FCN and DeepLabv3; masks that move with their images; mIoU"
    tasks = TASKS
    sections = ("finetune",)

    def task_config(self, task: str) -> type:
        return SegmentationTaskConfig

    def data_config(self, task: str) -> type:
        return SegmentationDataConfig

    def section_config(self, section: str) -> type:
        from deepkit.train.finetune import FinetuneConfig

        return FinetuneConfig

    def datasets(self, task: str) -> dict[str, str]:
        return DATASETS

    def build_data(self, rec: Recipe, saved: Saved | None = None, given: Any = None) -> SegmentationData:
        self.check_dataset(rec)
        if given is not None:
            return given
        return build_segmentation_data(rec.data, saved if isinstance(saved, SegmentationSaved) else None)

    def build_model(self, rec: Recipe, data: SegmentationData) -> torch.nn.Module:
        return bind_segmenter(rec.model, len(data.class_names), data.channels)

    def setup(self, rec: Recipe, model: torch.nn.Module, data: SegmentationData, fresh: bool) -> list:
        import dataclasses

        from deepkit.train.finetune import FinetuneLog, setup_finetune

        ft = rec.finetune
        if ft is None:
            return []
        line = load_encoder(model, ft.weights, ft.trust_pickle) if fresh and ft.weights else None
        if line is None:
            return setup_finetune(ft, model, rec.trainer.optimizer, load=fresh)
        return [FinetuneLog([line]), *setup_finetune(dataclasses.replace(ft, weights=None), model,
                                                     rec.trainer.optimizer, load=fresh)]  # fmt: skip

    def build_task(self, rec: Recipe, model: torch.nn.Module, data: SegmentationData) -> Task:
        from deepkit.tasks.segmentation import SegmentationTask

        t = rec.task
        return SegmentationTask(model, data.class_names, data.preprocessing, t.loss, t.class_weights, t.aux_weight,
                                t.focal_gamma, data.background, t.tile, t.tile_overlap)  # fmt: skip

    def saved(self, rec: Recipe, data: SegmentationData) -> SegmentationSaved:
        t = rec.task
        return SegmentationSaved(list(data.class_names), data.channels, list(data.mean), list(data.std),
                                 data.background, data.resize, t.tile, t.tile_overlap, rec.data.palette)  # fmt: skip

    def load_saved(self, folder: Path, meta: dict[str, Any]) -> SegmentationSaved:
        return SegmentationSaved.from_meta(meta)

    def run_callbacks(self, rec: Recipe, run_dir: Path) -> list:
        from deepkit.train.callbacks import Callback

        class PerClassAtTheEnd(Callback):
            """With many classes (coco128: 133), IoU per class only outside training epochs (the final evaluation,
            ``deepkit eval``): metrics.csv and the curves keep the means."""

            def on_fit_start(self, trainer) -> None:
                trainer.task.per_class = len(trainer.task.class_names) <= MAX_PER_CLASS_CURVES

            def on_fit_end(self, trainer) -> None:
                trainer.task.per_class = True

            def on_exception(self, trainer, error: BaseException) -> None:
                trainer.task.per_class = True

        return [PerClassAtTheEnd()]

    def report(self, run: Finish) -> dict[str, Any]:
        return report_segmentation(run)

    def metrics_text(self, metrics: dict[str, float], run: Any) -> str | None:
        table, rule = iou_text(metrics, run.data)
        return f"{table}\n\n{rule}"

    def predictor(self, model: torch.nn.Module, task: str, saved: Saved, run_dir: Path | None) -> Predictor:
        return SegmentationPredictor(model, task, saved, run_dir)


# --- end of run ------------------------------------------------------------------------------------------------------
def _pixels(x: torch.Tensor) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W) or (H, W, 3) uint8."""
    p = (x.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
    return p[..., 0] if p.shape[2] == 1 else p


def iou_text(metrics: dict[str, float], data: Any) -> tuple[str, str]:
    """The per-class IoU table (with the means) and the sentence saying what the means cover."""
    from deepkit.metrics.segmentation import format_iou_table, mean_rule

    return format_iou_table(metrics, data.class_names), mean_rule(data.class_names, data.background, data.ignored)


def report_segmentation(run: Finish, n: int = 6) -> dict[str, Any]:
    """``iou_table.txt`` (per-class IoU, the means and the rule they follow), ``plots/segmentation.png`` (rows of
    test image / truth / prediction) and those test images in ``samples/``."""
    import torch
    from PIL import Image

    from deepkit.viz.masks import class_palette, save_triptychs

    data, task = run.data, run.task
    names = data.class_names
    table, rule = iou_text(run.metrics, data)
    (run.run_dir / "iou_table.txt").write_text(f"{table}\n\n{rule}\n")
    run.trainer.log(f"mean IoU rule: {rule}", echo=False)
    loader = data.loader(run.split, shuffle=False)
    rows = []
    task.model.eval()
    for i in range(min(n, len(data.sets[run.split]))):
        image, truth = loader.raw(i)
        x = ((image - loader.mean) / loader.std)[None].to(run.trainer.device)
        with torch.no_grad():
            pred = task.logits(x)[0].argmax(0).cpu().numpy().astype("uint8")
        rows.append((_pixels(image), truth.numpy().astype("uint8"), pred))
        Image.fromarray(rows[-1][0]).save(run.samples / f"test_{i:02d}.png")  # inputs for `deepkit predict`
    if rows:
        palette = class_palette(len(names), run.recipe.data.palette)
        scale = 2 if max(rows[0][1].shape) < 128 else 1
        save_triptychs(rows, palette, run.plots / "segmentation.png", scale=scale)
    return {"iou_table": table.splitlines(), "mean_rule": rule}


# --- using a trained run -------------------------------------------------------------------------------------------
class SegmentationPredictor(Predictor):
    """A trained segmenter: ``predict`` images (paths or (C, H, W) arrays in [0, 1]) into (H, W) class-index masks.

    Example:
        >>> p = deepkit.load("runs/scenes_unet")                        # doctest: +SKIP
        >>> p.predict(["scene.png"])[0].shape                           # doctest: +SKIP
    """

    kind = "segmentation run"
    verbs = {"predict": ("predict", "predict_files")}

    def __init__(self, model: torch.nn.Module, task_name: str, saved: SegmentationSaved, run_dir: Path | None = None):
        super().__init__(model, task_name, saved, run_dir)
        self.class_names, self.channels = saved.class_names, saved.channels

    def _image(self, x) -> torch.Tensor:
        import numpy as np
        import torch

        from deepkit.data.detection import read_image_file
        from deepkit.data.detection_loader import to_tensor

        if isinstance(x, str | Path):
            if not Path(x).is_file():
                raise DataError(f"input file not found: {x}")
            return to_tensor(read_image_file(x), self.channels)
        t = torch.as_tensor(np.asarray(x), dtype=torch.float32)
        if t.ndim != 3 or t.shape[0] != self.channels:
            raise ShapeError(f"expected images ({self.channels}, H, W) in [0, 1], got shape {tuple(t.shape)}")
        return t

    def predict(self, images) -> list[np.ndarray]:
        """(H, W) uint8 class indices per image, at each image's own size."""
        import torch
        import torch.nn.functional as F

        from deepkit.tasks.segmentation import sliding_window

        if isinstance(images, str | Path) or hasattr(images, "shape"):
            images = [images]
        s = self.saved
        mean = torch.tensor(s.mean).view(-1, 1, 1)
        std = torch.tensor(s.std).view(-1, 1, 1)
        out = []
        for img in images:
            x = self._image(img)
            h, w = x.shape[-2:]
            if s.resize is not None:
                x = F.interpolate(x[None], size=tuple(s.resize), mode="bilinear", align_corners=False,
                                  antialias=True)[0]  # fmt: skip
            x = ((x - mean) / std)[None].to(self.device)
            with torch.no_grad():
                if s.tile is not None and max(x.shape[-2:]) > s.tile:
                    logits = sliding_window(self.model, x, s.tile, s.tile_overlap)
                else:
                    logits = self.model(x)["out"].float()
            if tuple(logits.shape[-2:]) != (h, w):
                logits = F.interpolate(logits, size=(h, w), mode="bilinear", align_corners=False)
            out.append(logits[0].argmax(0).byte().cpu().numpy())
        return out

    def export_spec(self) -> ExportSpec:
        """Images (B, C, H, W) in [0, 1] -> class probabilities (B, K, H, W); ``predict``'s masks are their argmax
        over the class axis. Normalization and the run's resize (and back) are in the graph; the height and width
        are those of the example (the run's resize, else 64×64). Runs that predict in tiles are not exported yet."""
        import torch

        from deepkit.errors import ExportError
        from deepkit.tasks.segmentation import SegmentationInference
        from deepkit.viz.masks import class_palette

        s = self.saved
        palette = class_palette(len(self.class_names), s.palette)
        if s.tile is not None:
            raise ExportError(
                f"{self._where()} predicts in tiles of {s.tile} px: tiled inference is not in a graph yet"
            )
        module = SegmentationInference(self.model, s.mean, s.std, s.resize).eval()
        h, w = s.resize or (64, 64)

        def sample(batch: int, seed: int) -> dict[str, torch.Tensor]:
            return {"image": torch.rand(batch, s.channels, h, w, generator=torch.Generator().manual_seed(seed))}

        sidecar = {
            "task": self.task_name,
            "inputs": {"image": {"dtype": "float32", "shape": [s.channels, h, w], "kind": "image",
                                 "channels": s.channels, "height": h, "width": w, "range": [0.0, 1.0]}},
            "outputs": {"probabilities": {"shape": [len(self.class_names), h, w], "class_axis": 0,
                                          "classes": list(self.class_names)}},
            "page": {"input": "image", "show": "mask", "palette": palette[: len(self.class_names)].tolist()},
        }  # fmt: skip
        return ExportSpec(module, sample(2, 0), ["probabilities"], sidecar, sample)

    def predict_files(
        self, paths: list[str | Path], top_k: int = 1, out: str | Path | None = None
    ) -> list[dict[str, Any]]:
        """Segment image files: ``STEM_mask.png`` (palette PNG: pixel values are class indices) and
        ``STEM_overlay.png`` (the classes' colours over the image) in ``out`` (default RUN_DIR/predictions). One
        record per image: ``input``, ``mask``, ``overlay``, ``classes`` (share of pixels per class) and ``summary``."""
        import numpy as np

        from deepkit.data.detection import read_image_file
        from deepkit.viz.masks import class_palette, overlay, save_palette_png

        folder = Path(out) if out is not None else (self.run_dir or Path(".")) / "predictions"
        folder.mkdir(parents=True, exist_ok=True)
        palette = class_palette(len(self.class_names), self.saved.palette)
        records = []
        for path in paths:
            mask = self.predict([path])[0]
            stem = Path(path).stem
            mask_file = save_palette_png(mask, folder / f"{stem}_mask.png", palette)
            from PIL import Image

            over = folder / f"{stem}_overlay.png"
            Image.fromarray(overlay(read_image_file(path), mask, palette)).save(over)
            counts = np.bincount(mask.reshape(-1), minlength=len(self.class_names))
            shares = {n: float(c) / mask.size for n, c in zip(self.class_names, counts, strict=False) if c}
            top = sorted(shares.items(), key=lambda kv: -kv[1])[: max(3, top_k)]
            summary = ", ".join(f"{n} {100 * v:.1f}%" for n, v in top) + f" -> {mask_file}, {over}"
            records.append({"input": str(path), "mask": str(mask_file), "overlay": str(over), "classes": shares,
                            "summary": summary})  # fmt: skip
        return records


FAMILY = SegmentationFamily()
