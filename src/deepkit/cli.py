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

    metrics = api.evaluate(run_dir, list(data or []), split=split)
    if as_json:
        typer.echo(json.dumps(metrics))
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
    as_json: Annotated[bool, flag("--json", help="One JSON list of records.")] = False,
) -> None:
    """Predict with a trained run: one line per input (class and probability, or value)."""
    from deepkit import api

    predictor = api.load(run_dir)
    predictor.require("predict")
    records = predictor.predict_files(inputs, top_k=top_k)
    if as_json:
        typer.echo(json.dumps(records))
        return
    for r in records:
        if "value" in r:
            typer.echo(f"{r['input']}: {r['value']}")
        elif "top_k" in r:
            typer.echo(f"{r['input']}: " + ", ".join(f"{t['class']} ({t['probability']:.3f})" for t in r["top_k"]))
        else:
            typer.echo(f"{r['input']}: {r['class']} (p={r['probability']:.3f})")


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
