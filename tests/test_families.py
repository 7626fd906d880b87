"""The family seam (issue 12): one registry of task names, one run pipeline that names no task, per-family config
sections, one predictor shape whose verbs match the CLI's, and an import graph without cycles."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest
import yaml

import deepkit
from deepkit.cli import app
from deepkit.errors import ConfigError
from deepkit.families import Predictor, families, family_of, tasks
from deepkit.recipe import bundled_recipes, prune_stored, read_recipe_file, resolve_recipe

SRC = Path(deepkit.__file__).parent
HEADS = {"mlm", "classification", "token_classification", "question_answering", "none"}  # Transformer model heads


# --- the registry ----------------------------------------------------------------------------------------------------
def test_every_task_has_one_family_and_every_bundled_recipe_resolves_to_one():
    owners: dict[str, str] = {}
    for family in families():
        assert family.name and family.tasks, family
        for task in family.tasks:
            assert task not in owners, f"task '{task}' in families {owners.get(task)} and {family.name}"
            owners[task] = family.name
    assert set(owners) == set(tasks())
    assert len(families()) >= 6 and len(owners) >= 17
    for name in bundled_recipes():
        rec = resolve_recipe(name)
        assert rec.family is family_of(rec.task.name), name


def test_a_misspelt_task_is_one_line_suggesting_the_nearest_task_of_any_family(deepkit_cli, tmp_path):
    with pytest.raises(ConfigError, match=r"unknown task 'languag_model' \(did you mean 'language_model'\?\)"):
        family_of("languag_model")
    code, _, err = deepkit_cli("train", "char_shakespeare", "task.name=languag_model", "--out", tmp_path / "r")
    assert code == 2 and err.strip() == "error: unknown task 'languag_model' (did you mean 'language_model'?)"
    code, _, err = deepkit_cli("train", "digits_cnn", "task.name=gann", "--out", tmp_path / "r")
    assert code == 2 and "did you mean 'gan'" in err
    assert not (tmp_path / "r").exists()


# --- per-family config sections --------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(bundled_recipes()))
def test_a_recipe_resolves_to_its_family_sections_only(name):
    rec = resolve_recipe(name)
    resolved = rec.to_dict()
    assert list(resolved) == ["name", "description", "task", "model", "data", "trainer", *rec.family.sections]
    data_keys = set(resolved["data"])
    if rec.family.name in ("supervised", "generative"):
        assert not data_keys & {"text", "series", "long_range"}, data_keys
    elif rec.family.name == "detection":  # its own, box-aware augment section; none of the tensor families' keys
        assert not data_keys & {"text", "series", "long_range", "normalize", "channels_last", "image_size"}, data_keys
        assert set(resolved["data"]["augment"]) == {"hflip", "scale", "crop", "min_crop", "min_visible", "letterbox"}
    elif rec.family.name == "segmentation":  # its own joint (image + mask) augment section
        assert not data_keys & {"text", "series", "long_range", "normalize", "channels_last", "image_size"}, data_keys
        assert set(resolved["data"]["augment"]) == {"hflip", "vflip", "rot90", "scale", "brightness", "contrast"}
    elif rec.family.name == "speech":  # its own waveform augment section (SpecAugment is a model setting)
        assert not data_keys & {"text", "series", "long_range", "normalize", "channels_last", "image_size"}, data_keys
        assert set(resolved["data"]["augment"]) == {"gain_db", "shift_ms"}
    else:
        assert not data_keys & {"augment", "normalize", "channels_last", "image_size"}, data_keys
    other_options = {"gan", "vae", "autoencoder"} - {rec.task.name}
    assert not set(resolved["task"]) & other_options, resolved["task"]


def test_the_demo_run_config_holds_only_its_family_sections(digits_run):
    out, _ = digits_run
    config = yaml.safe_load((out / "config.yaml").read_text())
    assert set(config) == {"name", "description", "task", "model", "data", "trainer", "finetune", "meta"}
    assert set(config["task"]) == {"name", "loss", "huber_delta", "label_smoothing", "pos_weight"}
    assert not set(config["data"]) & {"text", "series", "long_range"}


@pytest.mark.parametrize(
    "recipe,override,fragment",
    [
        ("char_shakespeare", "data.text.tokenizr=char", "unknown key 'data.text.tokenizr' (did you mean 'tokenizer'?)"),
        ("airline_lstm", "data.series.windw=12", "unknown key 'data.series.windw' (did you mean 'window'?)"),
        ("digits_cnn", "data.text.max_len=3", "unknown key 'data.text'"),
        ("mnist_vae", "task.vae.bta=2", "unknown key 'task.vae.bta' (did you mean 'beta'?)"),
        ("mnist_vae", "finetune.weights=x", "unknown key 'finetune'"),
        ("airline_lstm", "task.label_smoothing=0.1", "unknown key 'task.label_smoothing'"),
    ],
)
def test_unknown_keys_suggest_the_nearest_key_of_that_family(recipe, override, fragment):
    with pytest.raises(ConfigError) as info:
        resolve_recipe(recipe, [override])
    assert fragment in str(info.value)


def test_a_config_written_before_the_family_seam_reads_without_its_other_families_sections():
    old = read_recipe_file(Path(__file__).parent / "fixtures" / "release_a57365d" / "vae" / "config.yaml")
    assert "text" in old["data"] and "gan" in old["task"]  # the union schema of release a57365d
    rec = resolve_recipe(prune_stored(old))
    assert rec.task.vae.iw_samples == 2 and rec.family.name == "generative"
    assert "text" not in rec.to_dict()["data"] and "finetune" not in rec.to_dict()


# --- one pipeline, no task names outside the families --------------------------------------------------------------
def _strings(node: ast.AST) -> set[str]:
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return set().union(*(_strings(e) for e in node.elts)) if node.elts else set()
    return set()


def task_name_branches(root: Path) -> list[str]:
    """Comparisons with a task name (``x == "gan"``, ``x in ("gan", "vae")``) and tables keyed by task names, in
    the modules outside ``families/``. A Transformer's model head (``cfg.head == "classification"``) is a model
    setting that shares some task names; comparisons of a ``head`` and tables keyed by head names only are not
    task-name branches."""
    names = set(tasks())
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] == "families":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Compare):
                sides = [node.left, *node.comparators]
                literals = set().union(*(_strings(s) for s in sides)) & names
                subjects = [ast.unparse(s) for s in sides if not _strings(s)]
                if literals and not (literals <= HEADS and all(s.endswith("head") for s in subjects)):
                    found.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
            elif isinstance(node, ast.Dict):
                keys = set().union(*(_strings(k) for k in node.keys if k is not None))
                if len(keys & names) >= 2 and not keys <= HEADS:  # a dispatch table; {"vae": ...} names one thing
                    found.append(f"{rel}:{node.lineno}: a table keyed by {sorted(keys & names)}")
            elif isinstance(node, ast.Match):
                found.append(f"{rel}:{node.lineno}: match statement")
    return found


def test_no_module_outside_the_families_branches_on_a_task_name():
    assert task_name_branches(SRC) == []


def test_the_branch_finder_finds_branches(tmp_path):
    (tmp_path / "api.py").write_text(
        "def f(rec, cfg):\n"
        "    if rec.task.name in ('gan', 'vae'):\n        return 1\n"
        "    if cfg.head == 'classification':\n        return 2\n"
        "    return {'forecast': 1, 'regression': 2}[rec.task.name]\n"
    )
    found = task_name_branches(tmp_path)
    assert len(found) == 2 and "api.py:2" in found[0] and "a table keyed by" in found[1]


def import_graph(root: Path) -> dict[str, set[str]]:
    """Module -> the modules of the package it imports, anywhere in the file (inside functions and
    ``if TYPE_CHECKING:`` blocks too)."""
    modules = {}
    for path in root.rglob("*.py"):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path

    def resolve(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, set[str]] = {m: set() for m in modules}
    for mod, path in modules.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text())):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(pkg + ([node.module] if node.module else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            for t in targets:
                found = resolve(t)
                if found and found != mod:
                    graph[mod].add(found)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_module_takes_part_in_an_import_cycle():
    assert cycles(import_graph(SRC)) == []


def test_the_cycle_finder_finds_cycles(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pkg import b\n")
    (pkg / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.a import f\n")
    (pkg / "c.py").write_text("from pkg import a\n")
    assert cycles(import_graph(pkg)) == [["pkg.a", "pkg.b"]]


def test_the_generic_modules_name_no_family():
    generic = ["api.py", "cli.py", "bench.py", "recipe.py", "rundir.py", "train/trainer.py", "train/distributed.py"]
    family_modules = {f"deepkit.families.{p.stem}" for p in (SRC / "families").glob("*.py")}
    family_modules -= {"deepkit.families.base", "deepkit.families.registry", "deepkit.families.__init__"}
    graph = import_graph(SRC)
    for rel in generic:
        mod = "deepkit." + rel[:-3].replace("/", ".")
        assert not graph[mod] & family_modules, f"{rel} imports {graph[mod] & family_modules}"


# --- one predictor shape: every Python verb has its CLI verb and the reverse ---------------------------------------
def _predictor_classes() -> list[type[Predictor]]:
    out, todo = [], [Predictor]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if sub.__module__.startswith("deepkit.families."):
                out.append(sub)
            todo.append(sub)
    return out


def test_every_python_verb_has_its_cli_verb_and_the_reverse():
    cli_verbs = {info.name or info.callback.__name__ for info in app.registered_commands if not info.hidden}
    classes = _predictor_classes()
    assert len(classes) >= 8
    offered: dict[str, set[str]] = {}
    for cls in classes:
        for verb, methods in cls.verbs.items():
            assert verb in cli_verbs, f"{cls.__name__} offers '{verb}', which is no CLI verb"
            offered.setdefault(verb, set()).update(methods)
            for method in methods:
                assert callable(getattr(cls, method, None)), f"{cls.__name__}.{method} is listed but missing"
        for name, member in vars(cls).items():
            if name.startswith("_") or not inspect.isfunction(member):
                continue
            if name in vars(Predictor):  # an interface hook of every predictor (export_spec), not a verb
                continue
            verbs = {v for v, ms in cls.verbs.items() if name in ms}
            assert verbs, f"{cls.__name__}.{name} is a public method but no verb lists it"
    builtin = [f for f in families() if type(f).__module__.startswith("deepkit.families.")]
    family_verbs = {getattr(fn, "verb", fn.__name__) for f in builtin for fn in f.commands}
    assert family_verbs | {"predict"} == set(offered), (family_verbs, set(offered))
    assert {
        "predict",
        "generate",
        "chat",
        "translate",
        "forecast",
        "sample",
        "encode",
        "word-vectors",
    } <= family_verbs | {"predict"}


def test_a_verb_the_run_does_not_offer_names_what_it_offers(digits_run, deepkit_cli):
    out, _ = digits_run
    predictor = deepkit.load(out)
    assert isinstance(predictor, Predictor) and predictor.verbs == {
        "predict": ("predict", "predict_proba", "predict_files")
    }
    with pytest.raises(ConfigError, match=r"`generate` needs a language-model run; .* use `deepkit predict`"):
        predictor.generate("x")
    assert not hasattr(predictor, "translate")
    code, _, err = deepkit_cli("forecast", out, "--values", "1,2,3")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "`forecast` needs a forecasting run" in err
