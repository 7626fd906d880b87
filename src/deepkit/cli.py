"""The ``deepkit`` command: thin wrappers that resolve arguments and call the Python API."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="deepkit: train, evaluate and use deep-learning models from recipes.\n\n"
    "Example (offline, ~1 minute on 2 CPU cores):\n\n"
    "  deepkit train digits_cnn --out runs/demo\n\n"
    "  deepkit eval runs/demo --json\n\n"
    "  deepkit predict runs/demo runs/demo/samples/*.png\n\n"
    "Add --debug to any command for a full traceback on errors.",
)


@app.command()
def train(
    recipe: Annotated[
        str | None, typer.Argument(help="Bundled recipe name (see `deepkit recipes`) or YAML path.")
    ] = None,
    overrides: Annotated[
        list[str] | None, typer.Argument(help="Dotted overrides, e.g. trainer.epochs=3 model.width=64")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Run directory (default runs/NAME[-N]).")] = None,
    resume: Annotated[Path | None, typer.Option("--resume", help="Continue the run stored in this directory.")] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace --out if it holds a run.")] = False,
    explain_speed: Annotated[
        bool,
        typer.Option("--explain-speed", help="Print which fast-path switches apply and why (bf16, compile, ...)."),
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
    if explain_speed:
        overrides.append("trainer.speed.explain=true")
    if resume is None and recipe is None:
        raise _usage("train needs a RECIPE (a name from `deepkit recipes` or a YAML path), or --resume RUN_DIR")
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
    result = api.train(recipe or "", *overrides, out=out, resume=resume, overwrite=overwrite, command=sys.argv)
    if not distributed.is_main_process():
        return
    typer.echo(f"run directory: {result.run_dir}")
    typer.echo("test metrics: " + "  ".join(f"{k} {v:.4f}" for k, v in result.metrics.items()))
    if result.peak_memory:
        from deepkit.train.speed import format_memory

        typer.echo(f"peak memory: {format_memory(result.peak_memory)}")


@app.command()
def bench(
    recipe: Annotated[str, typer.Argument(help="Bundled recipe name (see `deepkit recipes`) or YAML path.")],
    overrides: Annotated[
        list[str] | None, typer.Argument(help="Dotted overrides, e.g. trainer.precision=bf16 data.batch_size=256")
    ] = None,
    steps: Annotated[int, typer.Option("--steps", help="Timed optimizer steps.")] = 50,
    warmup: Annotated[int, typer.Option("--warmup", help="Untimed steps first (compilation, warm-up).")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
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


@app.command("eval")
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="A run directory written by `deepkit train`.")],
    data: Annotated[
        list[str] | None,
        typer.Option("--data", help="Data override KEY=VALUE (repeatable), e.g. --data path=other.csv"),
    ] = None,
    split: Annotated[str, typer.Option(help="train, val or test.")] = "test",
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object of metric -> number.")] = False,
) -> None:
    """Metrics of the best checkpoint on the test split (or another split/data)."""
    from deepkit import api

    metrics = api.evaluate(run_dir, list(data or []), split=split)
    if as_json:
        typer.echo(json.dumps(metrics))
    else:
        for k, v in metrics.items():
            typer.echo(f"{k:>10}  {v:.4f}")


@app.command()
def predict(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (or checkpoint) written by deepkit.")],
    inputs: Annotated[list[Path], typer.Argument(help="Image files, .npy arrays or CSV files (one row per input).")],
    top_k: Annotated[int, typer.Option("--top-k", help="Classes to show per input.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON list of records.")] = False,
) -> None:
    """Predict with a trained run: one line per input (class and probability, or value)."""
    from deepkit import api

    records = api.load(run_dir).predict_files(inputs, top_k=top_k)
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


@app.command()
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


@app.command()
def models() -> None:
    """List registered models."""
    from deepkit.models import get_entry, list_models

    for name in list_models():
        typer.echo(f"{name:<14} {get_entry(name).description}")


@app.command()
def recipes() -> None:
    """List bundled recipes."""
    from deepkit.recipe import list_recipes

    for name, desc in list_recipes().items():
        typer.echo(f"{name:<22} {desc}")


@app.command()
def generate(
    run_dir: Annotated[Path, typer.Argument(help="A language-model run directory (e.g. from char_shakespeare).")],
    prompt: Annotated[str, typer.Option("--prompt", help="Text to continue.")] = "\n",
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", help="Tokens to generate.")] = 300,
    temperature: Annotated[float, typer.Option("--temperature", help="0 = greedy; <1 safer, >1 wilder.")] = 0.8,
    top_k: Annotated[int | None, typer.Option("--top-k", help="Sample among the K most likely tokens.")] = None,
    top_p: Annotated[
        float | None, typer.Option("--top-p", help="Sample from the smallest set of tokens with mass >= P (nucleus).")
    ] = None,
    repetition_penalty: Annotated[
        float, typer.Option("--repetition-penalty", help=">1 discourages tokens already present (CTRL); 1 = off.")
    ] = 1.0,
    num_beams: Annotated[
        int, typer.Option("--num-beams", help="Beam search with N beams (deterministic; ignores sampling options).")
    ] = 1,
    length_penalty: Annotated[
        float, typer.Option("--length-penalty", help="Beam search: rank by log p / length**L (>1 favours longer).")
    ] = 1.0,
    stop: Annotated[
        list[str] | None, typer.Option("--stop", help="Stop before this text (repeatable; '\\n' is a newline).")
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed for reproducible samples.")] = None,
    on_long_prompt: Annotated[
        str, typer.Option("--on-long-prompt", help="Prompt longer than the context: truncate (keep the end) or error.")
    ] = "truncate",
    no_cache: Annotated[bool, typer.Option("--no-cache", help="Do not reuse past keys/values (Transformers).")] = False,
    no_stream: Annotated[bool, typer.Option("--no-stream", help="Print the text at the end, not as it comes.")] = False,
) -> None:
    """Generate text with a trained language model: prints the prompt and its continuation as it is generated.

    Example: deepkit generate runs/shakespeare_char_gpt --prompt "ROMEO:" --top-p 0.9 --stop "\\n\\n"
    """
    from deepkit import api

    predictor = api.load(run_dir)
    if not hasattr(predictor, "stream"):
        raise _usage(f"{run_dir} is not a language-model run; `deepkit generate` needs one (e.g. char_shakespeare)")
    stops = [s.encode("latin-1", "backslashreplace").decode("unicode_escape") for s in stop or []]
    pieces = predictor.stream(
        prompt,
        max_new_tokens,
        temperature,
        top_k,
        seed,
        top_p=top_p,
        repetition_penalty=repetition_penalty,
        num_beams=num_beams,
        length_penalty=length_penalty,
        stop=stops,
        use_cache=not no_cache,
        on_long_prompt=on_long_prompt,
    )
    if no_stream:
        typer.echo(prompt + "".join(pieces))
        return
    typer.echo(prompt, nl=False)
    for piece in pieces:
        typer.echo(piece, nl=False)
        sys.stdout.flush()
    typer.echo()


@app.command()
def chat(
    run_dir: Annotated[Path, typer.Argument(help="A language-model run directory.")],
    max_new_tokens: Annotated[int, typer.Option("--max-new-tokens", help="Most tokens per reply.")] = 200,
    temperature: Annotated[float, typer.Option("--temperature", help="0 = greedy; <1 safer, >1 wilder.")] = 0.8,
    top_k: Annotated[int | None, typer.Option("--top-k", help="Sample among the K most likely tokens.")] = None,
    top_p: Annotated[float | None, typer.Option("--top-p", help="Nucleus sampling mass.")] = None,
    repetition_penalty: Annotated[float, typer.Option("--repetition-penalty", help="CTRL penalty; 1 = off.")] = 1.0,
    stop: Annotated[
        list[str] | None,
        typer.Option("--stop", help="A reply ends before this text (repeatable; default a blank line)."),
    ] = None,
    seed: Annotated[int | None, typer.Option("--seed", help="Seed for reproducible replies.")] = None,
) -> None:
    """Interactive generation: every line you type joins the conversation and the model continues it, streamed,
    until a stop string. The conversation so far is the prompt (its last tokens once it outgrows the context).
    An empty line or Ctrl-D ends the session.
    """
    import warnings

    from deepkit import api
    from deepkit.models.generation import LongPromptWarning

    predictor = api.load(run_dir)
    if not hasattr(predictor, "stream"):
        raise _usage(f"{run_dir} is not a language-model run; `deepkit chat` needs one (e.g. char_shakespeare)")
    stops = [s.encode("latin-1", "backslashreplace").decode("unicode_escape") for s in stop or ["\\n\\n"]]
    history = ""
    for turn, line in enumerate(sys.stdin):
        line = line.rstrip("\n")
        if not line:
            break
        history += line + "\n"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LongPromptWarning)  # a long conversation is expected to outgrow it
            pieces = predictor.stream(
                history,
                max_new_tokens,
                temperature,
                top_k,
                None if seed is None else seed + turn,
                top_p=top_p,
                repetition_penalty=repetition_penalty,
                stop=stops,
            )
            reply = ""
            for piece in pieces:
                reply += piece
                typer.echo(piece, nl=False)
                sys.stdout.flush()
        typer.echo()
        history += reply + "\n"


@app.command()
def embeddings(
    run_dir: Annotated[Path, typer.Argument(help="A word2vec run directory (or a word2vec/GloVe .txt file).")],
    neighbours: Annotated[str | None, typer.Option("--neighbours", help="Show the words nearest to WORD.")] = None,
    analogy: Annotated[
        tuple[str, str, str] | None, typer.Option("--analogy", help="A B C: words D with A : B :: C : D.")
    ] = None,
    k: Annotated[int, typer.Option("-k", help="How many words to show.")] = 10,
    export: Annotated[Path | None, typer.Option("--export", help="Write the vectors in word2vec text format.")] = None,
) -> None:
    """Query word vectors: nearest neighbours, analogies, export to the word2vec text format."""
    from deepkit.embeddings import WordVectors

    vecs = WordVectors.load(run_dir) if run_dir.is_file() else WordVectors.from_run(run_dir)
    if not (neighbours or analogy or export):
        raise _usage("embeddings needs --neighbours WORD, --analogy A B C or --export PATH")
    if neighbours:
        for word, sim in vecs.neighbours(neighbours, k):
            typer.echo(f"{word:<20} {sim:.3f}")
    if analogy:
        for word, sim in vecs.analogy(*analogy, k=k):
            typer.echo(f"{word:<20} {sim:.3f}")
    if export:
        typer.echo(f"wrote {vecs.save(export)} ({len(vecs.words)} words, {vecs.vectors.shape[1]} dimensions)")


@app.command()
def sample(
    run_dir: Annotated[Path, typer.Argument(help="A GAN or VAE run directory written by `deepkit train`.")],
    n: Annotated[int, typer.Option("-n", help="Number of images.")] = 64,
    label: Annotated[int | None, typer.Option("--label", help="Class to generate (conditional GAN).")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="PNG grid to write (default RUN_DIR/samples.png).")] = None,
    seed: Annotated[int, typer.Option("--seed", help="Noise seed.")] = 0,
) -> None:
    """Generate images with a trained GAN or VAE and write them as a PNG grid."""
    from deepkit import generative

    path = generative.sample(run_dir, n=n, label=label, out=out, seed=seed)
    typer.echo(f"wrote {n} samples to {path}")


@app.command()
def embed(
    run_dir: Annotated[Path, typer.Argument(help="An autoencoder or VAE run directory written by `deepkit train`.")],
    out: Annotated[
        Path | None, typer.Option("--out", help=".csv or .npz (default RUN_DIR/embeddings_SPLIT.csv).")
    ] = None,
    split: Annotated[str, typer.Option(help="train, val or test.")] = "test",
) -> None:
    """Write the latent codes (with labels) of a data split, encoded by a trained autoencoder or VAE."""
    from deepkit import generative

    path, rows, dims = generative.embed(run_dir, out=out, split=split)
    typer.echo(f"wrote {rows} codes of dimension {dims} to {path}")


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
        app(args=argv, prog_name="deepkit")  # click handles its own usage errors (exit 2) in standalone mode
    except DeepkitError as e:
        if debug:
            raise
        if os.environ.get("RANK", "0") == "0":  # several processes (torchrun, --nproc): rank 0 speaks for all
            print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
