"""The ``deepkit`` command: thin wrappers that resolve arguments and call the Python API."""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from deepkit.cli_options import DEBUG_EPILOG, flag


class _FlagHelp:
    """Shows ``--help`` as the flag it is (typer renders flags as ``--help <bool>``)."""

    def get_help_option(self, ctx):
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option


class _Command(_FlagHelp, typer.core.TyperCommand):
    pass


class _Group(_FlagHelp, typer.core.TyperGroup):
    pass


app = typer.Typer(
    cls=_Group,
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="deepkit: train, evaluate and use deep-learning models from recipes.\n\n"
    "Example (offline, ~1 minute on 2 CPU cores):\n\n"
    "  deepkit train digits_cnn --out runs/demo\n\n"
    "  deepkit eval runs/demo --json\n\n"
    "  deepkit predict runs/demo runs/demo/samples/*.png\n\n"
    "  deepkit doctor runs/demo\n\n"
    "  deepkit lr-find digits_mlp\n\n"
    "Add --debug to any command for a full traceback on errors.",
)


def _version(value: bool) -> None:
    if value:
        from deepkit.version import __version__

        typer.echo(f"deepkit {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: Annotated[
        bool,
        typer.Option("--version", help="Print the version and exit.", metavar="", callback=_version, is_eager=True),
    ] = False,
) -> None:
    """deepkit: train, evaluate and use deep-learning models from recipes."""


@app.command(epilog=DEBUG_EPILOG, cls=_Command)
def train(
    recipe: Annotated[
        str | None, typer.Argument(help="Bundled recipe name (see `deepkit recipes`) or YAML path.")
    ] = None,
    overrides: Annotated[
        list[str] | None, typer.Argument(help="Dotted overrides, e.g. trainer.epochs=3 model.width=64")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Run directory (default runs/NAME[-N]).")] = None,
    resume: Annotated[Path | None, typer.Option("--resume", help="Continue the run stored in this directory.")] = None,
    overwrite: Annotated[bool, flag("--overwrite", help="Replace --out if it holds a run.")] = False,
    explain_speed: Annotated[
        bool,
        flag(
            "--explain-speed", help="Print which fast-path switches apply here and why (bf16, compile, ...); then stop."
        ),
    ] = False,
    nproc: Annotated[
        int | None,
        typer.Option(
            "--nproc",
            help="Train with N local processes (DistributedDataParallel; gloo on CPU, NCCL on GPUs). "
            "data.batch_size stays the GLOBAL batch (split over the N processes, must divide evenly); each process "
            "uses max(1, cores // N) threads unless OMP_NUM_THREADS is set; only rank 0 writes files. "
            "trainer.strategy=fsdp shards the model (FSDP2). Multi-node: torchrun (see README).",
        ),
    ] = None,
) -> None:
    """Train a model from a recipe; prints the run directory, the final metrics and the peak memory.

    Examples: `deepkit train digits_mlp trainer.epochs=5`, `deepkit train mnist_cnn data.path=~/data/mnist`,
    `deepkit train --resume runs/mnist_cnn`, `deepkit train digits_mlp --nproc 2`.
    """
    from deepkit import api
    from deepkit.train import distributed

    overrides = list(overrides or [])
    if recipe is not None and "=" in recipe:  # `deepkit train --resume DIR key=value`
        overrides.insert(0, recipe)
        recipe = None
    if resume is None and recipe is None:
        raise _usage("train needs a RECIPE (a name from `deepkit recipes` or a YAML path), or --resume RUN_DIR")
    if explain_speed:  # the plan on this machine, for the whole run; nothing is trained or written
        from deepkit.bench import explain
        from deepkit.recipe import prune_stored, read_recipe_file

        spec = recipe if resume is None else prune_stored(read_recipe_file(resume / "config.yaml"))
        typer.echo(explain(spec, *overrides).table())
        return
    if resume is not None and recipe is not None:
        stored = resume / "config.yaml"
        if stored.is_file():
            import yaml

            name = (yaml.safe_load(stored.read_text()) or {}).get("name")
            if name not in (recipe, Path(recipe).stem):
                raise _usage(f"--resume {resume} holds a run of recipe '{name}', not '{recipe}'")
    if nproc is not None and nproc != 1:
        if nproc < 1:
            raise _usage(f"--nproc must be >= 1, got {nproc}")
        if distributed.env_world_size() > 1:
            raise _usage(
                f"--nproc {nproc} inside a launched job (WORLD_SIZE={distributed.env_world_size()}); "
                "leave --nproc out under torchrun"
            )
        api.check_launch(recipe, overrides, resume, nproc)  # one-line errors before any process starts
        args = ["train", *([recipe] if recipe else []), *overrides]
        args += [*(["--out", str(out)] if out else []), *(["--resume", str(resume)] if resume else [])]
        distributed.launch(nproc, args + (["--overwrite"] if overwrite else []))
        return
    try:
        result = api.train(recipe or "", *overrides, out=out, resume=resume, overwrite=overwrite, command=sys.argv)
    except KeyboardInterrupt as e:  # here: typer would turn it into a silent exit 130
        _interrupted(e)
    if not distributed.is_main_process():
        return
    typer.echo(f"run directory: {result.run_dir}")
    typer.echo("test metrics: " + "  ".join(f"{k} {v:.4f}" for k, v in result.metrics.items()))
    if result.peak_memory:
        from deepkit.train.speed import format_memory

        typer.echo(f"peak memory: {format_memory(result.peak_memory)}")


@app.command(epilog=DEBUG_EPILOG, cls=_Command)
def bench(
    recipe: Annotated[str, typer.Argument(help="Bundled recipe name (see `deepkit recipes`) or YAML path.")],
    overrides: Annotated[
        list[str] | None, typer.Argument(help="Dotted overrides, e.g. trainer.precision=bf16 data.batch_size=256")
    ] = None,
    steps: Annotated[int, typer.Option("--steps", help="Timed optimizer steps.")] = 50,
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed steps first (compilation, warm-up).")] = 10,
    as_json: Annotated[bool, flag("--json", help="Print one JSON object.")] = False,
) -> None:
    """Training speed of a recipe: steps/s, samples/s (tokens/s for text), peak memory, FLOPs and MFU.

    Builds data, model and task exactly as `deepkit train` does and runs the same fast path, but writes no run
    directory. MFU needs the device's peak: known for H100/H200/A100/L4/A10G, else set DEEPKIT_PEAK_TFLOPS.
    Example: `deepkit bench mnist_cnn --steps 30 --warmup 5`.
    """
    from deepkit.bench import bench as run_bench
    from deepkit.bench import format_result

    result = run_bench(recipe, *(overrides or []), steps=steps, warmup=warmup)
    if as_json:
        typer.echo(json.dumps({k: v for k, v in result.items() if k != "plan_table"}))
    else:
        typer.echo(format_result(result))


@app.command("eval", epilog=DEBUG_EPILOG, cls=_Command)
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by `deepkit train`.")],
    data: Annotated[
        list[str] | None,
        typer.Option("--data", help="Data override KEY=VALUE (repeatable), e.g. --data path=other.csv"),
    ] = None,
    split: Annotated[str, typer.Option(help="train, val or test.")] = "test",
    as_json: Annotated[bool, flag("--json", help="Print one JSON object of metric -> number.")] = False,
) -> None:
    """Metrics of the best checkpoint on the test split (or another split/data)."""
    from deepkit import api

    metrics, text = api.evaluation_report(run_dir, list(data or []), split=split)
    if as_json:
        typer.echo(json.dumps(metrics))
    elif text:  # the family's own table (COCO's twelve lines, per-class IoU)
        typer.echo(text)
    else:
        for k, v in metrics.items():
            typer.echo(f"{k:>10}  {v:.4f}")


@app.command(epilog=DEBUG_EPILOG, cls=_Command)
def predict(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (or checkpoint) written by deepkit.")],
    inputs: Annotated[
        list[Path],
        typer.Argument(help="Image files, .npy arrays or CSV files (one row per input); text files (one per line)."),
    ],
    top_k: Annotated[int, typer.Option("--top-k", help="Classes to show per input.")] = 1,
    as_json: Annotated[
        bool, flag("--json", help="One JSON list of records (runs that return per-input results: those, flat).")
    ] = False,
    conf: Annotated[
        float | None, typer.Option("--conf", help="Lowest score a prediction needs to be shown (detectors).")
    ] = None,
    iou: Annotated[
        float | None, typer.Option("--iou", help="IoU threshold of non-maximum suppression (detectors).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Folder for images the predictor draws (default RUN_DIR/predictions).")
    ] = None,
) -> None:
    """Predict with a trained run: one line per input (class and probability, value, or what was found).

    Options beyond --top-k go to the predictor only when given; a run whose predictor does not take one says so.
    """
    from deepkit import api

    predictor = api.load(run_dir)
    predictor.require("predict")
    options = {k: v for k, v in (("conf", conf), ("iou", iou), ("out", out)) if v is not None}
    accepted = inspect.signature(predictor.predict_files).parameters
    for key in options:
        if key not in accepted:
            raise _usage(f"--{key} does not apply to {run_dir} (a '{predictor.task_name}' run)")
    records = predictor.predict_files(inputs, top_k=top_k, **options)
    if as_json:
        flat = bool(records) and all(isinstance(r.get("results"), list) for r in records)
        typer.echo(json.dumps([x for r in records for x in r["results"]] if flat else records))
        return
    for r in records:
        if "summary" in r:
            typer.echo(f"{r['input']}: {r['summary']}")
        elif "value" in r:
            typer.echo(f"{r['input']}: {r['value']}")
        elif "top_k" in r:
            typer.echo(f"{r['input']}: " + ", ".join(f"{t['class']} ({t['probability']:.3f})" for t in r["top_k"]))
        else:
            typer.echo(f"{r['input']}: {r['class']} (p={r['probability']:.3f})")


@app.command("export", epilog=DEBUG_EPILOG, cls=_Command)
def export_run(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (or checkpoint) written by deepkit.")],
    fmt: Annotated[
        str, typer.Option("--format", help="onnx, pt2 (torch.export), safetensors or hf (transformers folder).")
    ] = "onnx",
    out: Annotated[Path | None, typer.Option("--out", help="Output folder (default RUN_DIR/export).")] = None,
    opset: Annotated[int | None, typer.Option("--opset", help="ONNX opset (default: the exporter's).")] = None,
    dynamic_batch: Annotated[bool, flag("--dynamic-batch", help="Let the batch size vary (onnx, pt2).")] = False,
) -> None:
    """Export a trained run with its preprocessing: the model file and deepkit.json (inputs, outputs, classes).

    The normalization a run learned and the post-processing (softmax, target units) are inside the graph; an ONNX
    export is checked against eager PyTorch on fresh inputs before it is kept.
    Example: `deepkit export runs/demo --format onnx --dynamic-batch`.
    """
    from deepkit import api
    from deepkit.export import export

    result = export(api.load(run_dir), fmt, out, opset, dynamic_batch)
    check = (
        f" (onnxruntime vs eager: max |diff| {result.max_diff:.2g} on fresh inputs)"
        if result.max_diff is not None
        else ""
    )
    typer.echo(f"{result.path}{check}")
    typer.echo(f"{result.sidecar}")


@app.command(epilog=DEBUG_EPILOG, cls=_Command)
def serve(
    path: Annotated[Path, typer.Argument(help="A run directory, or a folder / model.onnx written by deepkit export.")],
    host: Annotated[str, typer.Option("--host", help="Address to bind (loopback only unless told otherwise).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8000,
    backend: Annotated[
        str | None, typer.Option("--backend", help="torch or onnx (default: torch for a run, onnx for an export).")
    ] = None,
    max_batch: Annotated[int, typer.Option("--max-batch", help="Samples per model call (1: no batching).")] = 32,
    max_wait_ms: Annotated[
        float, typer.Option("--max-wait-ms", help="How long a request waits for others to batch with.")
    ] = 5.0,
    max_body_mb: Annotated[float, typer.Option("--max-body-mb", help="Largest request body (413 above).")] = 10.0,
    threads: Annotated[int | None, typer.Option("--threads", help="onnxruntime threads (default: its own).")] = None,
    workers: Annotated[
        int, typer.Option("--workers", help="Server processes, each with its own copy of the model (and batcher).")
    ] = 1,
) -> None:
    """Serve a trained run or an ONNX export over HTTP: GET /health, GET /info, POST /predict, docs at /docs.

    POST /predict takes JSON ({"inputs": [[...]]}, or {"text": "..."} for text classifiers), NumPy bytes
    (application/x-npy, application/x-npz), an image file or, for audio classifiers, an audio file (multipart
    field 'file', or the raw image/* or audio/* body). Runs with more than a graph add their own routes: POST
    /generate/stream (language models: server-sent events), POST /recommend (recommenders), POST /transcribe
    (CTC recognizers: an audio file in multipart field 'audio'), POST /speak (TTS: JSON text and speaker -> a
    WAV). The page at / fits the run: class bars, boxes drawn on the image (detection), a mask overlay
    (segmentation), a streamed continuation, a user's list, an audio upload's class or transcript, an audio
    player for typed digits. Bad requests get a 4xx JSON error naming what was received and what was expected.
    Example: `deepkit serve runs/demo --port 8000`, then `curl -F file=@runs/demo/samples/test_00_label_0.png
    http://127.0.0.1:8000/predict`.
    """
    import uvicorn

    from deepkit.errors import ConfigError
    from deepkit.serve import ServeConfig, create_app, open_backend

    if workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {workers}")
    served = open_backend(path, backend, threads)  # checked here, so a bad path is one line before any worker starts
    cfg = ServeConfig(max_batch=max_batch, max_wait_ms=max_wait_ms, max_body_bytes=int(max_body_mb * 2**20))
    where = f"http://{host}:{port}  (docs: /docs)"
    if workers == 1:
        typer.echo(f"serving {served.source} ({served.name}) on {where}", err=True)
        uvicorn.run(create_app(served, cfg), host=host, port=port, log_level="warning")
        return
    import dataclasses
    import json
    import os

    from deepkit.serve.app import WORKER_ENV

    # an ONNX backend made from a run was exported once, here: the workers load that export
    name = served.name
    source = served.source if name == "onnx" else str(path)
    os.environ[WORKER_ENV] = json.dumps(
        {"path": source, "backend": name, "threads": threads, "config": dataclasses.asdict(cfg)}
    )
    del served
    typer.echo(f"serving {source} ({name}) with {workers} workers on {where}", err=True)
    uvicorn.run("deepkit.serve.app:worker_app", factory=True, workers=workers, host=host, port=port,
                log_level="warning")  # fmt: skip


@app.command(epilog=DEBUG_EPILOG, cls=_Command)
def convert(
    source: Annotated[Path, typer.Argument(help="COCO instances .json, YOLO data.yaml, or a Pascal VOC folder.")],
    dest: Annotated[Path, typer.Argument(help="Output folder.")],
    to: Annotated[str, typer.Option("--to", help="Output format: coco, voc or yolo.")],
    source_format: Annotated[str, typer.Option("--from", help="Input format (auto: from the path).")] = "auto",
    split: Annotated[str, typer.Option("--split", help="Split name (YOLO: which split of data.yaml).")] = "train",
    images: Annotated[
        Path | None, typer.Option("--images", help="COCO input: the image folder (default beside the JSON).")
    ] = None,
    copy: Annotated[bool, flag("--copy", help="Copy the images (default: symbolic links).")] = False,
) -> None:
    """Convert object-detection annotations between COCO JSON, Pascal VOC XML and YOLO txt (+ data.yaml).

    Example: `deepkit convert coco128/annotations/instances_train2017.json out/coco128_yolo --to yolo`.
    Boxes outside their image are clipped and boxes without area dropped (counted on stderr).
    """
    from deepkit.data.detection import convert as convert_data

    target, ds = convert_data(source, dest, to, source_format, split, images, copy)
    for note in ds.notes:
        typer.echo(f"warning: {note}", err=True)
    typer.echo(f"{len(ds)} images, {ds.num_objects} boxes, {len(ds.class_names)} classes -> {target}")


@app.command(epilog=DEBUG_EPILOG, cls=_Command)
def viz(
    path: Annotated[
        Path,
        typer.Argument(help="A run directory (CNN or Transformer), or a Hugging Face checkpoint directory."),
    ],
    attention: Annotated[
        str | None,
        typer.Option("--attention", help="Transformers: text whose per-layer, per-head attention maps to plot."),
    ] = None,
    image: Annotated[
        Path | None, typer.Option("--image", help="CNNs: image for feature maps and Grad-CAM (default: a test image).")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for the PNGs (default RUN_DIR/plots/inside, or PATH/plots for attention)."),
    ] = None,
    top_k: Annotated[int, typer.Option("--top-k", help="CNNs: misclassified test images to show.")] = 16,
) -> None:
    """See inside a model: CNN filters, feature maps, Grad-CAM and worst mistakes; or Transformer attention maps."""
    if attention is None and not (path / "config.yaml").is_file():
        raise _usage(
            f"viz needs --attention TEXT for {path} (not a deepkit run directory: the CNN views need one, "
            "with config.yaml)"
        )
    if attention is not None:
        from deepkit.viz.attention import attention_report

        target = out or (path / "plots" if path.is_dir() else path.parent / "plots")
        files = attention_report(path, attention, target)
    else:
        from deepkit.viz.run_report import visualize_run

        files = visualize_run(path, image=image, out_dir=out, top_k=top_k)
    for file in files:
        typer.echo(str(file))


@app.command(epilog=DEBUG_EPILOG, cls=_Command)
def doctor(
    run_dir: Annotated[Path, typer.Argument(help="A run directory: finished, failed, interrupted or still training.")],
    as_json: Annotated[bool, flag("--json", help="Print the findings as one JSON object.")] = False,
    out: Annotated[
        Path | None,
        typer.Option("--out", help="Folder for report.html, findings.json and plots (default RUN_DIR/doctor)."),
    ] = None,
) -> None:
    """Diagnose a run: what went wrong (learning rate, vanishing/exploding gradients, dead ReLUs, saturation,
    over/underfitting, unnormalized inputs, label noise, leakage, class imbalance, slow data loading), ranked by
    severity, each with its evidence, a plot and the change to make; or "healthy".

    Reads the run read-only (a run that is still training can be diagnosed) and writes RUN_DIR/doctor/report.html
    and findings.json. Example (offline): `deepkit train digits_mlp trainer.epochs=5 trainer.optimizer.lr=0.5
    --out runs/hot`, then `deepkit doctor runs/hot`.
    """
    from deepkit.doctor import diagnose

    d = diagnose(run_dir, out=out)
    if as_json:
        typer.echo(json.dumps({**d.to_dict(), "report": str(d.report)}))
        return
    typer.echo(f"{run_dir} ({d.name}, {d.state}): {d.headline}")
    for note in d.notes:
        typer.echo(f"  note: {note}")
    for i, f in enumerate(d.findings, 1):
        typer.echo(f"{i}. [{f.severity}] {f.title}: {f.summary}")
        typer.echo(f"   change: {f.change}")
    typer.echo(f"report: {d.report}")


@app.command("lr-find", epilog=DEBUG_EPILOG, cls=_Command)
def lr_find(
    recipe: Annotated[str, typer.Argument(help="Bundled recipe name, YAML path, or a run directory (its config).")],
    overrides: Annotated[list[str] | None, typer.Argument(help="Dotted overrides, e.g. model.width=64")] = None,
    steps: Annotated[int, typer.Option("--steps", help="Optimizer steps of the sweep.")] = 100,
    start: Annotated[float, typer.Option("--start", help="First learning rate.")] = 1e-7,
    end: Annotated[float, typer.Option("--end", help="Last learning rate.")] = 10.0,
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Where to write the PNG (default lr-find-NAME.png here).")
    ] = None,
    as_json: Annotated[bool, flag("--json", help="Print one JSON object (the sweep and the suggestion).")] = False,
) -> None:
    """Learning-rate range test: train a fresh model for --steps steps while the learning rate grows exponentially
    from --start to --end; plot the smoothed loss and suggest a learning rate (the valley of the curve). Writes no
    run directory, only the plot. Example (offline, ~10 s): `deepkit lr-find digits_mlp`.
    """
    from deepkit.doctor import lr_find as run

    name = Path(recipe).name if Path(recipe).is_dir() else Path(recipe).stem
    target = plot if plot is not None else Path(f"lr-find-{name}.png")
    result = run(recipe, *(overrides or []), start=start, end=end, steps=steps, plot=target, quiet=as_json)
    if as_json:
        typer.echo(json.dumps(result.to_dict()))
        return
    a, b = result.valley
    typer.echo(
        f"suggested trainer.optimizer.lr={result.suggestion:.2g} (the recipe has {result.current:g}); valley "
        f"{result.lrs[a]:.2g}-{result.lrs[b]:.2g}; {len(result.lrs)} steps, {result.stopped}"
    )
    for note in result.notes:
        typer.echo(f"note: {note}")
    typer.echo(f"plot: {result.plot}")
    typer.echo(
        f"try: deepkit train {recipe} {' '.join(overrides or [])} trainer.optimizer.lr={result.suggestion:.2g}".replace(
            "  ", " "
        )
    )


@app.command(epilog=DEBUG_EPILOG, cls=_Command)
def models() -> None:
    """List registered models."""
    from deepkit.models import get_entry, list_models

    for name in list_models():
        typer.echo(f"{name:<14} {get_entry(name).description}")


@app.command(epilog=DEBUG_EPILOG, cls=_Command)
def recipes(
    name: Annotated[
        str | None, typer.Argument(help="A bundled recipe: print its YAML (copy it to make your own).")
    ] = None,
) -> None:
    """List bundled recipes, or print one: `deepkit recipes digits_cnn > my_recipe.yaml`."""
    from deepkit.recipe import bundled_recipes, list_recipes

    if name is not None:
        from deepkit.errors import ConfigError, suggest

        found = bundled_recipes().get(name)
        if found is None:
            raise ConfigError(f"unknown recipe '{name}'{suggest(name, bundled_recipes())}")
        typer.echo(found.read_text(), nl=False)
        return
    for recipe_name, desc in list_recipes().items():
        typer.echo(f"{recipe_name:<22} {desc}")


@app.command(epilog=DEBUG_EPILOG, cls=_Command)
def tasks() -> None:
    """List the task families and their tasks (the recipe's task.name)."""
    from deepkit.families import families

    for family in families():
        typer.echo(f"{family.name}: {family.description}")
        for name, desc in family.tasks.items():
            typer.echo(f"  {name:<22} {desc}")


# --- the families' verbs -------------------------------------------------------------------------------------------
RUN_DIR = Annotated[Path, typer.Argument(help="A run directory written by `deepkit train` (or a file the verb reads).")]


def family_command(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A family's verb ``fn(predictor, **options)`` as a typer command ``fn(run_dir, **options)``: the run's
    predictor is loaded, and a run that does not offer the verb is a one-line error naming those it offers."""
    verb = getattr(fn, "verb", fn.__name__)
    sig = inspect.signature(fn, eval_str=True)
    params = list(sig.parameters.values())[1:]

    @functools.wraps(fn)
    def command(run_dir: Path, **options: Any) -> Any:
        from deepkit import api

        predictor = api.load(run_dir)
        predictor.require(verb)
        return fn(predictor, **options)

    run_param = inspect.Parameter("run_dir", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=RUN_DIR)
    command.__signature__ = sig.replace(parameters=[run_param, *params])  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in [run_param, *params]}
    return command


def add_family_commands(app: typer.Typer) -> None:
    """Every family's verbs (generate, chat, translate, forecast, sample, encode, word-vectors, ...), once each;
    called again, it adds the verbs of families registered since."""
    from deepkit.families import families

    known = {info.name for info in app.registered_commands}
    for family in families():
        for fn in family.commands:
            verb = getattr(fn, "verb", fn.__name__)
            if verb in known:
                continue
            command = family_command(fn)
            app.command(verb, epilog=DEBUG_EPILOG, cls=_Command)(command)
            for alias in getattr(fn, "aliases", ()):  # former names, kept working but not listed
                app.command(alias, hidden=True, epilog=DEBUG_EPILOG, cls=_Command)(command)
            known.add(verb)


def _usage(message: str):
    from deepkit.errors import ConfigError

    return ConfigError(message)


def _one_line_warnings() -> None:
    """deepkit's own warnings (an image resized, a file skipped) print as ``warning: ...``, one line each."""
    import warnings

    default = warnings.formatwarning

    def fmt(message, category, filename, lineno, line=None):
        if category.__module__.startswith("deepkit"):
            return f"warning: {message}\n"
        return default(message, category, filename, lineno, line)

    warnings.formatwarning = fmt


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors print one line and exit 2 (a traceback only with --debug or DEEPKIT_DEBUG=1)."""
    from deepkit.errors import DeepkitError

    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or bool(os.environ.get("DEEPKIT_DEBUG"))
    argv = [a for a in argv if a != "--debug"]
    if not debug:
        _one_line_warnings()
    try:
        add_family_commands(app)  # families registered since this module was imported (plugins)
        app(args=argv, prog_name="deepkit")  # click handles its own usage errors (exit 2) in standalone mode
    except DeepkitError as e:
        if debug:
            raise
        if os.environ.get("RANK", "0") == "0":  # several processes (torchrun, --nproc): rank 0 speaks for all
            print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt as e:
        _interrupted(e)


def _interrupted(e: KeyboardInterrupt) -> NoReturn:
    """Ctrl-C: one line on stderr (``deepkit train``: where the run stopped, its last checkpoint and the command that
    continues it; rank 0 speaks for all processes) and exit code 130."""
    if os.environ.get("RANK", "0") == "0":
        print(str(e) or "interrupted", file=sys.stderr)
    sys.exit(130)


with contextlib.suppress(Exception):  # a broken plugin family: main() reports it as a one-line error
    add_family_commands(app)

if __name__ == "__main__":
    main()
