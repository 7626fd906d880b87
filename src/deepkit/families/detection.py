"""Object detection: two-stage (Faster R-CNN) and single-shot (RetinaNet, FCOS) detectors on COCO, VOC or YOLO
data, on the MNIST scenes (generated) or coco128; COCO mAP through pycocotools; boxes drawn.

Data (``data.name``): ``mnist_scenes`` (generated from MNIST: train digits -> train/val scenes, test digits -> test
scenes), ``coco128`` (DATA_ROOT/coco128, read in place), ``coco`` (instances JSON + image folder), ``voc``
(Annotations/ + JPEGImages/), ``yolo`` (data.yaml). Everything becomes one representation
(:class:`deepkit.data.detection.DetectionSet`); boxes outside an image are clipped, boxes without area dropped,
and the counts go into log.txt. Models: ``fasterrcnn_*``, ``retinanet_*``, ``fcos_*`` (torchvision's API and
names). Metrics: COCO mAP@[.5:.95], mAP@.5, mAP@.75, small/medium/large, recall and AP per class. Report: the COCO
table (``coco_table.txt``, ``results.json``), ``plots/detections.png`` (test images with boxes drawn) and a few
test images in ``samples/``. Verbs: ``predict`` (images with boxes drawn; ``--json``: COCO results; ``--conf``,
``--iou``), ``eval`` (the COCO numbers).
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

    from deepkit.data.detection import DetectionSet
    from deepkit.data.detection_loader import DetectionData
    from deepkit.recipe import Recipe
    from deepkit.tasks.base import Task

TASKS = {"detection": "object detection (Faster R-CNN, RetinaNet, FCOS): boxes + classes, COCO mAP, boxes drawn"}
DATASETS = {
    "mnist_scenes": "generated scenes of 1-8 MNIST digits (10-60 px) with clutter, 128x128 (train/test digits)",
    "coco128": "the first 128 COCO train2017 images (DATA_ROOT/coco128, instances JSON), 80 classes",
    "coco": "a COCO instances JSON (data.path) and its image folder (data.images)",
    "voc": "a Pascal VOC folder (data.path: Annotations/ + JPEGImages/)",
    "yolo": "a YOLO data.yaml (data.path: train/val/test image folders, labels/ beside images/, names)",
}


@dataclass
class DetectionTaskConfig:
    """The ``task`` section of detection recipes."""

    name: str = "detection"
    per_class_metrics: bool = True  # AP per class among the metrics (ap_<class>)


@dataclass
class ScenesSection:
    """``data.scenes``: how MNIST scenes are drawn (:class:`deepkit.data.scenes.ScenesConfig`) and how many."""

    train: int = 8000
    val: int = 500  # drawn from MNIST's training digits (other scenes than the training ones)
    test: int = 1000  # from MNIST's test digits
    canvas: int = 128
    min_digits: int = 1
    max_digits: int = 8
    min_size: int = 10
    max_size: int = 60
    max_overlap: float = 0.2
    clutter: int = 8
    noise: float = 8.0


@dataclass
class AugmentSection:
    """``data.augment``: box-aware augmentation of training images (``deepkit.data.box_augment.augment``)."""

    hflip: float | None = None  # probability of a horizontal flip (default 0.5; 0 for MNIST scenes: digits)
    scale: list[float] | None = None  # scale jitter: resize by a factor in [low, high], keep the canvas size
    crop: float = 0.0  # probability of a random crop (at least min_crop of each side)
    min_crop: float = 0.6
    min_visible: float = 0.4  # a cropped box is kept when this fraction of its area stays visible
    letterbox: int | None = None  # resize the long side to this and pad to a square (YOLO-style), last

    def check(self) -> None:
        if not 0 <= self.hflip <= 1 or not 0 <= self.crop <= 1:
            raise ConfigError(f"data.augment.hflip and crop are probabilities in [0, 1], got {self.hflip}, {self.crop}")
        if self.scale is not None and (len(self.scale) != 2 or not 0 < self.scale[0] <= self.scale[1]):
            raise ConfigError(f"data.augment.scale: expected [low, high] with 0 < low <= high, got {self.scale}")
        if not 0.1 <= self.min_crop <= 1:
            raise ConfigError(f"data.augment.min_crop must be in [0.1, 1], got {self.min_crop}")
        if self.letterbox is not None and self.letterbox < 16:
            raise ConfigError(f"data.augment.letterbox must be >= 16 px, got {self.letterbox}")


@dataclass
class DetectionDataConfig:
    """The ``data`` section of detection recipes."""

    name: str = "mnist_scenes"  # mnist_scenes, coco128, coco, voc, yolo
    path: str | None = None  # COCO JSON, VOC folder, YOLO data.yaml; MNIST folder (scenes); coco128 folder
    images: str | None = None  # COCO: the image folder (default: beside the JSON)
    val_path: str | None = None  # COCO/VOC: a separate validation set (else val_split of the training set)
    test_path: str | None = None
    classes: list[str] | None = None  # VOC: the class list (default: the names found, sorted)
    val_split: float = 0.1  # fraction held out for validation when the data has no val split
    test_split: float = 0.1  # ... and for testing
    split_seed: int = 0
    max_images: int | None = None  # at most this many images per split (quick runs)
    channels: int | None = None  # 1 or 3 (default: 1 for mnist_scenes, 3 otherwise)
    batch_size: int = 8
    eval_batch_size: int = 16
    augment: AugmentSection = field(default_factory=AugmentSection)  # training images only
    scenes: ScenesSection = field(default_factory=ScenesSection)


@dataclass
class DetectionSaved(Saved):
    """A detection run keeps its class names (and COCO category ids), its input channels and input size."""

    class_names: list[str]
    category_ids: list[int] | None = None
    channels: int = 3
    input_size: list[int] | None = None  # the model's min_size, max_size

    def meta(self) -> dict[str, Any]:
        return {"detection": {"class_names": self.class_names, "category_ids": self.category_ids,
                              "channels": self.channels, "input_size": self.input_size}}  # fmt: skip

    @classmethod
    def from_meta(cls, meta: dict[str, Any]) -> DetectionSaved:
        from deepkit.errors import CheckpointError

        d = meta.get("detection")
        if not d:
            raise CheckpointError("the checkpoint has no detection metadata (class names): not from deepkit train")
        return cls(d["class_names"], d.get("category_ids"), int(d.get("channels", 3)), d.get("input_size"))


# --- data ------------------------------------------------------------------------------------------------------------
def _split(ds: DetectionSet, fractions: dict[str, float], seed: int) -> dict[str, DetectionSet]:
    import numpy as np

    n = len(ds)
    order = np.random.default_rng(seed).permutation(n).tolist()
    out, start = {}, 0
    for name, frac in fractions.items():
        k = int(round(n * frac)) if frac > 0 else 0
        out[name] = ds.subset(sorted(order[start : start + k]))
        start += k
    out["train"] = ds.subset(sorted(order[start:]))
    return out


def _check_images(ds: DetectionSet, where: str) -> None:
    """Every image file opens and has the size its annotation says (a missing or corrupt file names its path)."""
    from deepkit.data.detection import image_size

    for im in ds.images:
        if im.pixels is not None:
            continue
        w, h = image_size(Path(im.file))
        if (w, h) != (im.width, im.height):
            raise DataError(f"{im.file} is {w}×{h} px but {where} says {im.width}×{im.height}")


def read_sets(cfg: DetectionDataConfig, class_names: list[str] | None) -> tuple[dict[str, DetectionSet], list[str]]:
    """The recipe's data as splits of :class:`DetectionSet`, and notes for the log."""
    from deepkit.data.detection import read_coco, read_voc, read_yolo, read_yolo_yaml
    from deepkit.data.sources import data_root

    name = cfg.name
    notes: list[str] = []
    if name == "mnist_scenes":
        from deepkit.data.scenes import ScenesConfig, mnist_scenes

        s = cfg.scenes
        sc = ScenesConfig(s.canvas, s.min_digits, s.max_digits, s.min_size, s.max_size, s.max_overlap, s.clutter,
                          s.noise)  # fmt: skip
        counts = {k: v if cfg.max_images is None else min(v, cfg.max_images) for k, v in
                  (("train", s.train), ("val", s.val), ("test", s.test))}  # fmt: skip
        sets = {}
        if counts["train"]:
            sets["train"] = mnist_scenes("train", counts["train"], sc, cfg.split_seed, cfg.path).to_detection_set()
        if counts["val"]:
            val = mnist_scenes("train", counts["val"], sc, cfg.split_seed + 7919, cfg.path)
            sets["val"] = val.to_detection_set(first_id=1_000_001)
        if counts["test"]:
            sets["test"] = mnist_scenes("test", counts["test"], sc, cfg.split_seed, cfg.path).to_detection_set()
        return sets, notes
    if name == "coco128":
        root = Path(cfg.path).expanduser() if cfg.path else data_root() / "coco128"
        json_path = root / "annotations" / "instances_train2017.json"
        if not json_path.is_file():
            raise DataError(f"coco128 not found: {json_path} (set DEEPKIT_DATA or data.path to the coco128 folder)")
        full = read_coco(json_path, root / "images" / "train2017")
        notes += full.notes
        sets = _split(full, {"val": cfg.val_split, "test": cfg.test_split}, cfg.split_seed)
    elif name in ("coco", "voc"):
        if not cfg.path:
            raise ConfigError(f"data.name={name} needs data.path (the {'JSON file' if name == 'coco' else 'folder'})")

        def read(path: str | None, images: str | None = None) -> DetectionSet | None:
            if path is None:
                return None
            ds = read_coco(path, images) if name == "coco" else read_voc(path, cfg.classes)
            notes.extend(ds.notes)
            return ds

        full = read(cfg.path, cfg.images)
        val, test = read(cfg.val_path), read(cfg.test_path)
        fractions = {k: f for k, f, given in (("val", cfg.val_split, val), ("test", cfg.test_split, test)) if not given}
        sets = _split(full, fractions, cfg.split_seed)
        sets.update({k: v for k, v in (("val", val), ("test", test)) if v is not None})
    elif name == "yolo":
        if not cfg.path:
            raise ConfigError("data.name=yolo needs data.path (a data.yaml)")
        folders, names = read_yolo_yaml(cfg.path)
        if "train" not in folders:
            raise DataError(f"{cfg.path} has no `train` image folder")
        sets = {}
        for split, folder in folders.items():
            ds = read_yolo(folder, names)
            notes.extend(ds.notes)
            sets[split] = ds
        fractions = {k: f for k, f in (("val", cfg.val_split), ("test", cfg.test_split)) if k not in sets}
        sets.update(_split(sets["train"], fractions, cfg.split_seed))
    else:
        raise ConfigError(f"unknown detection dataset '{name}'; expected one of {', '.join(DATASETS)}")
    names = sets["train"].class_names
    for split, ds in sets.items():
        if ds.class_names != names:
            raise DataError(f"the {split} split has classes {ds.class_names[:5]}..., the training split {names[:5]}...")
        if cfg.max_images is not None:
            sets[split] = ds.subset(list(range(min(len(ds), cfg.max_images))))
        _check_images(sets[split], f"the {split} annotations")
    if class_names is not None and class_names != names:
        raise DataError(f"the data's classes {names[:5]}... differ from the trained run's {class_names[:5]}...")
    return sets, notes


def build_detection_data(cfg: DetectionDataConfig, saved: DetectionSaved | None = None) -> DetectionData:
    import dataclasses

    from deepkit.data.detection_loader import DetectionData
    from deepkit.data.preprocess import Preprocessing

    augment = dataclasses.replace(cfg.augment)
    if augment.hflip is None:
        augment.hflip = 0.0 if cfg.name == "mnist_scenes" else 0.5
    augment.check()
    if cfg.batch_size < 1 or cfg.eval_batch_size < 1:
        raise ConfigError(f"data.batch_size and eval_batch_size must be >= 1, got {cfg.batch_size}, "
                          f"{cfg.eval_batch_size}")  # fmt: skip
    sets, notes = read_sets(cfg, saved.class_names if saved else None)
    channels = cfg.channels or (saved.channels if saved else (1 if cfg.name == "mnist_scenes" else 3))
    if channels not in (1, 3):
        raise ConfigError(f"data.channels must be 1 or 3, got {channels}")
    names = sets["train"].class_names
    for split, ds in sets.items():
        if len(ds):
            notes.append(f"{split}: {len(ds)} images, {ds.num_objects} objects, "
                         f"{sum(1 for im in ds.images if not len(im.boxes))} without objects")  # fmt: skip
    prep = Preprocessing(kind="image", input_shape=[channels, 0, 0], class_names=list(names))
    return DetectionData(list(names), sets, channels, cfg.batch_size, cfg.eval_batch_size, augment, notes, prep)


# --- the family ------------------------------------------------------------------------------------------------------
def detector_names() -> list[str]:
    from deepkit.models._detection import Detector
    from deepkit.models.registry import models_of

    return models_of(Detector)


def bind_detector(model_section: dict[str, Any], num_classes: int, channels: int) -> torch.nn.Module:
    """The detector, ``num_classes`` (objects + background) and ``in_channels`` taken from the data and checked."""
    from deepkit.models.registry import create_bound

    name = model_section["name"]
    if name not in detector_names():
        known = ", ".join(detector_names())
        raise ShapeError(f"model '{name}' is not a detector; task 'detection' needs one of {known}")
    bound = {"num_classes": num_classes, "in_channels": channels}
    return create_bound(model_section, bound, f"({num_classes - 1} classes + background, {channels}-channel images)")


class DetectionFamily(Family):
    name = "detection"
    description = "object detection: two-stage (Faster R-CNN) and single-shot (RetinaNet, FCOS) detectors"
    tasks = TASKS

    def task_config(self, task: str) -> type:
        return DetectionTaskConfig

    def data_config(self, task: str) -> type:
        return DetectionDataConfig

    def datasets(self, task: str) -> dict[str, str]:
        return DATASETS

    def build_data(self, rec: Recipe, saved: Saved | None = None, given: Any = None) -> DetectionData:
        self.check_dataset(rec)
        if given is not None:
            return given
        return build_detection_data(rec.data, saved if isinstance(saved, DetectionSaved) else None)

    def build_model(self, rec: Recipe, data: DetectionData) -> torch.nn.Module:
        return bind_detector(rec.model, len(data.class_names) + 1, data.channels)

    def build_task(self, rec: Recipe, model: torch.nn.Module, data: DetectionData) -> Task:
        from deepkit.tasks.detection import DetectionTask

        ids = getattr(data.sets.get("train"), "category_ids", None)
        return DetectionTask(model, data.class_names, ids, data.preprocessing, rec.task.per_class_metrics)

    def saved(self, rec: Recipe, data: DetectionData) -> DetectionSaved:
        from deepkit.models.registry import model_config

        ids = getattr(data.sets.get("train"), "category_ids", None)
        cfg = model_config(rec.model["name"], **{k: v for k, v in rec.model.items() if k != "name"})
        return DetectionSaved(list(data.class_names), ids, data.channels, [cfg.min_size, cfg.max_size])

    def load_saved(self, folder: Path, meta: dict[str, Any]) -> DetectionSaved:
        return DetectionSaved.from_meta(meta)

    def run_callbacks(self, rec: Recipe, run_dir: Path) -> list:
        from deepkit.train.callbacks import Callback

        class FullMetricsAtTheEnd(Callback):
            """Recall and AP per class only outside training epochs (the final evaluation, ``deepkit eval``):
            metrics.csv and the curves keep the six AP numbers (80 classes would make 80 curves)."""

            def on_fit_start(self, trainer) -> None:
                trainer.task.full_metrics = False

            def on_fit_end(self, trainer) -> None:
                trainer.task.full_metrics = True

            def on_exception(self, trainer, error: BaseException) -> None:
                trainer.task.full_metrics = True

        return [FullMetricsAtTheEnd()]

    def report(self, run: Finish) -> dict[str, Any]:
        return report_detections(run)

    def metrics_text(self, metrics: dict[str, float], run: Any) -> str | None:
        return coco_text(metrics, run.recipe, run.data)

    def predictor(self, model: torch.nn.Module, task: str, saved: Saved, run_dir: Path | None) -> Predictor:
        return DetectionPredictor(model, task, saved, run_dir)


# --- end of run ------------------------------------------------------------------------------------------------------
def coco_text(metrics: dict[str, float], rec: Recipe, data: DetectionData) -> str:
    """The COCO table (pycocotools' twelve lines, then AP per class when the task reports it)."""
    from deepkit.metrics.coco import format_table

    return format_table(metrics, data.class_names if rec.task.per_class_metrics else None)


def report_detections(run: Finish, n: int = 8) -> dict[str, Any]:
    """The COCO table (coco_table.txt), test images with predicted boxes drawn (plots/detections.png; ground truth
    in plots/ground_truth.png) and a few test images as files in samples/."""
    import numpy as np
    from PIL import Image

    from deepkit.viz.boxes import draw_boxes, save_grid

    data, task = run.data, run.task
    names = data.class_names
    table = coco_text(run.metrics, run.recipe, data)
    (run.run_dir / "coco_table.txt").write_text(table + "\n")
    ds = data.sets[run.split]
    loader = data.loader(run.split)
    images, targets = [], []
    for i in range(min(n, len(ds))):
        img, t = loader.sample(i)
        images.append(img.to(run.trainer.device))
        targets.append(t)
    task.model.eval()
    dets = task.detect(images) if images else []
    drawn, truth = [], []
    scale = 2 if max((im.shape[-1] for im in images), default=256) < 256 else 1
    for i, (img, t, d) in enumerate(zip(images, targets, dets, strict=True)):
        pixels = (img.cpu().clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()
        pixels = pixels[..., 0] if pixels.shape[2] == 1 else pixels
        keep = (d["scores"] >= 0.5).cpu().numpy()
        drawn.append(draw_boxes(pixels, d["boxes"].cpu().numpy()[keep], d["labels"].cpu().numpy()[keep], names,
                                d["scores"].cpu().numpy()[keep], scale=scale))  # fmt: skip
        truth.append(draw_boxes(pixels, t["boxes"].numpy(), (t["labels"] - 1).numpy(), names, scale=scale))
        Image.fromarray(pixels).save(run.samples / f"test_{i:02d}.png")
    if drawn:
        save_grid(drawn, run.plots / "detections.png")
        save_grid(truth, run.plots / "ground_truth.png")
    per_class = {k[3:]: v for k, v in run.metrics.items() if k.startswith("ap_") and np.isfinite(v)}
    return {"coco_table": table.splitlines(), "ap_per_class": per_class}


# --- using a trained run -------------------------------------------------------------------------------------------
class DetectionPredictor(Predictor):
    """A trained detector: ``predict`` images (paths or (C, H, W) arrays in [0, 1]) into boxes, classes, scores.

    Example:
        >>> p = deepkit.load("runs/scenes_frcnn")                      # doctest: +SKIP
        >>> p.predict(["scene.png"], conf=0.5)[0]["labels"]             # doctest: +SKIP
    """

    kind = "detection run"
    verbs = {"predict": ("predict", "predict_files")}

    def __init__(self, model: torch.nn.Module, task_name: str, saved: DetectionSaved, run_dir: Path | None = None):
        super().__init__(model, task_name, saved, run_dir)
        self.class_names, self.channels = saved.class_names, saved.channels
        self.category_ids = saved.category_ids or list(range(1, len(self.class_names) + 1))

    def export_spec(self) -> ExportSpec:
        """Images ``(B, C, S, S)`` in [0, 1] (S: the model's ``min_size``, the side it resizes to) -> ``boxes``
        ``(B, D, 4)`` (xyxy, the input's pixels), ``scores``, ``labels`` (class indices, -1 in padding slots) and
        ``count`` (B,), best first, D = the model's detections per image. Normalization, resize, box decoding,
        the score threshold and per-class NMS are in the graph (``models._detection.DetectionExport``); a user
        keeps the detections scoring at least their ``conf``, as ``predict`` does."""
        import torch

        from deepkit.models._detection import DetectionExport

        side = int(self.model.cfg.min_size)
        module = DetectionExport(self.model, side, side).eval()
        score, iou = self.model.postprocess_thresholds()
        max_det = self.model.export_limits()[1]

        def sample(batch: int, seed: int) -> dict[str, torch.Tensor]:
            g = torch.Generator().manual_seed(seed)
            return {"image": torch.rand(batch, self.channels, side, side, generator=g)}

        sidecar = {
            "task": self.task_name,
            "inputs": {"image": {"dtype": "float32", "shape": [self.channels, side, side], "kind": "image",
                                 "channels": self.channels, "height": side, "width": side, "range": [0.0, 1.0]}},
            "outputs": {
                "boxes": {"shape": [max_det, 4], "format": "xyxy", "units": "pixels of the input image"},
                "scores": {"shape": [max_det]},
                "labels": {"shape": [max_det], "classes": list(self.class_names), "padding": -1},
                "count": {"shape": []},
            },
            "postprocess": {"score_threshold": score, "nms_iou": iou, "max_detections": max_det,
                            "note": "detections are sorted by score; keep those scoring at least your conf"},
            "page": {"input": "image", "show": "boxes"},
        }  # fmt: skip
        return ExportSpec(module, sample(2, 0), ["boxes", "scores", "labels", "count"], sidecar, sample)

    def _images(self, images) -> list[torch.Tensor]:
        import numpy as np
        import torch

        from deepkit.data.detection import read_image_file
        from deepkit.data.detection_loader import to_tensor

        if isinstance(images, str | Path) or hasattr(images, "shape"):
            images = [images]
        out = []
        for x in images:
            if isinstance(x, str | Path):
                if not Path(x).is_file():
                    raise DataError(f"input file not found: {x}")
                out.append(to_tensor(read_image_file(x), self.channels))
                continue
            t = torch.as_tensor(np.asarray(x), dtype=torch.float32)
            if t.ndim != 3 or t.shape[0] != self.channels:
                raise ShapeError(f"expected images ({self.channels}, H, W) in [0, 1], got shape {tuple(t.shape)}")
            out.append(t)
        return out

    def predict(self, images, conf: float = 0.25, iou: float | None = None) -> list[dict[str, np.ndarray]]:
        """Per image: ``boxes`` (N, 4) xyxy pixels, ``labels`` (N,) class indices, ``names``, ``scores``; only
        detections scoring at least ``conf``; ``iou``: the NMS IoU threshold (default: the model's)."""
        import torch

        if not 0 <= conf <= 1 or (iou is not None and not 0 < iou <= 1):
            raise ConfigError(f"--conf must be in [0, 1] and --iou in (0, 1], got {conf}, {iou}")
        x = [t.to(self.device) for t in self._images(images)]
        old = self.model.postprocess_thresholds()
        self.model.set_postprocess_thresholds(min(conf, old[0]), iou if iou is not None else old[1])
        try:
            with torch.no_grad():
                out = self.model(x)
        finally:
            self.model.set_postprocess_thresholds(*old)
        from deepkit.tasks.detection import without_background

        results = []
        for d in map(without_background, out):
            keep = d["scores"] >= conf
            labels = d["labels"][keep].cpu().numpy()
            results.append({"boxes": d["boxes"][keep].cpu().numpy(), "labels": labels,
                            "names": [self.class_names[i] for i in labels],
                            "scores": d["scores"][keep].cpu().numpy()})  # fmt: skip
        return results

    def predict_files(
        self, paths: list[str | Path], top_k: int = 1, conf: float = 0.25, iou: float | None = None,
        out: str | Path | None = None,
    ) -> list[dict[str, Any]]:  # fmt: skip
        """Detect in image files and write each with its boxes, classes and scores drawn (``out``, default
        RUN_DIR/predictions). One record per image: ``input``, ``output`` (the drawn image), ``summary`` and
        ``results`` (COCO-format detections: image_id = the file's position, 1-based, and file_name)."""
        from deepkit.data.detection import read_image_file
        from deepkit.metrics.coco import coco_detections
        from deepkit.viz.boxes import draw_boxes

        folder = Path(out) if out is not None else (self.run_dir or Path(".")) / "predictions"
        folder.mkdir(parents=True, exist_ok=True)
        records = []
        for i, path in enumerate(paths, 1):
            det = self.predict([path], conf, iou)[0]
            pixels = read_image_file(path)
            target = folder / (Path(path).stem + ".png")
            scale = 2 if max(pixels.shape[:2]) < 256 else 1
            draw_boxes(pixels, det["boxes"], det["labels"], self.class_names, det["scores"], scale=scale).save(target)
            results = coco_detections(i, det["boxes"], det["scores"], det["labels"], self.category_ids)
            for r, name in zip(results, det["names"], strict=True):
                r.update(file_name=str(path), category=name)
            found = ", ".join(f"{n} {s:.2f}" for n, s in zip(det["names"], det["scores"], strict=True))
            summary = f"{len(results)} object(s){': ' + found if found else ''} -> {target}"
            records.append({"input": str(path), "output": str(target), "summary": summary, "results": results})
        return records


FAMILY = DetectionFamily()
