"""Suites as data: the benchmark catalogue, suite YAML validation and expansion into Cases.

Pure data: nothing here touches GPUs, processes or pytest. Every user mistake is a
SuiteError naming the file, the line, the key path, the allowed values and the fix.
"""
from __future__ import annotations

import functools
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pytest_mig.datadir import data_path, override_dir, packaged_dir
from pytest_mig.errors import GpuError, LayoutError, SuiteError, did_you_mean
from pytest_mig.gpu.layouts import cached_layout, layout_on_gpu
from pytest_mig.gpu.planner import check_fits, layout_main_profile, smallest_fitting
from pytest_mig.gpu.profiles import get_model
from pytest_mig.types import TEST_MODES, Case, RunProfile
from pytest_mig.yamlload import safe_load
from pytest_mig.yamlpos import YNode, load_yaml

PROFILE_RE = re.compile(r"^[1-9][0-9]*g\.[1-9][0-9]*gb(\+me)?$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
LIFETIMES = ("per-test", "session")
MAX_MIG_SLOTS = 7  # no MIG GPU offers more than seven compute instances
SUBMISSION_PROFILE = "submission"
SUBMISSION_MIN_DURATION_MS = 600_000  # MLPerf rules: at least 600 s per performance run
SUITE_KEYS = ("suite", "class", "description", "round", "benchmarks", "gpus", "modes", "background",
              "harness", "run_profiles", "default_run_profile", "layouts")
# The catalogue of each MLPerf round: benchmarks.yaml is the default round (v1.1); another
# round R lives in benchmarks-R.yaml beside it and is chosen by a suite's `round: R`.
DEFAULT_ROUND = "v1.1"
CATALOG_BENCHMARK_KEYS = ("scenarios", "accuracy", "rounds", "memory_gib", "latency")
LATENCY_KEYS = ("server_ms", "multistream_ms", "ttft_ms", "tpot_ms", "interactive_ttft_ms",
                "interactive_tpot_ms")
RUN_PROFILE_KEYS = ("min_duration_ms", "min_query_count", "server_target_qps",
                    "start_time_buffer_s", "end_time_buffer_min_s",
                    "background_min_duration_ms", "sample_count")


@dataclass(frozen=True)
class BenchmarkInfo:
    """One catalogue entry: scenarios per suite class and the accuracy target inputs."""

    name: str
    scenarios: dict[str, tuple[str, ...]]  # suite class -> scenarios
    metric: str
    reference: float
    fractions: tuple[float, ...]
    others: dict[str, float] = field(default_factory=dict)  # further accuracy targets
    rounds: tuple[str, ...] = ()  # MLPerf rounds that have it (informational)
    memory_gib: float | None = None  # GPU memory one instance needs; None: fits any profile
    latency: dict[str, float] = field(default_factory=dict)  # server_ms, ttft_ms, tpot_ms, ...


@dataclass(frozen=True)
class Catalog:
    """The benchmark catalogue (fixtures/benchmarks.yaml) plus the GPU model keys."""

    path: Path
    source: str
    suite_classes: tuple[str, ...]
    scenarios: tuple[str, ...]
    benchmarks: dict[str, BenchmarkInfo]
    aliases: dict[str, tuple[str, ...]]
    # fixtures/gpus/<model>.yaml stem -> MIG profile names found in it (empty: not known).
    gpu_models: dict[str, frozenset[str]] = field(default_factory=dict)
    round: str = DEFAULT_ROUND

    def benchmarks_for(self, suite_class: str) -> tuple[str, ...]:
        return tuple(n for n, b in self.benchmarks.items() if suite_class in b.scenarios)


@dataclass(frozen=True)
class SuiteBenchmark:
    name: str
    scenarios: tuple[str, ...]
    accuracy_fraction: float


@dataclass(frozen=True)
class GpuEntry:
    model: str
    profiles: tuple[str, ...]
    slots: int


@dataclass(frozen=True)
class BackgroundSpec:
    """What runs beside the main: an alias name or an explicit list, and its lifetime."""

    spec: str | tuple[str, ...]
    lifetime: str = "per-test"

    @property
    def label(self) -> str:
        return self.spec if isinstance(self.spec, str) else "explicit"


@dataclass(frozen=True)
class Suite:
    name: str
    path: Path
    suite_class: str
    description: str
    benchmarks: dict[str, SuiteBenchmark]
    gpus: dict[str, GpuEntry]
    modes: tuple[str, ...]
    background: BackgroundSpec
    harness: dict[str, str]
    run_profiles: dict[str, RunProfile]
    default_run_profile: str
    catalog: Catalog = field(repr=False)
    # A layout suite: the named MIG layouts (mig-parted NAME or FILE:NAME) every case runs
    # under in turn; empty for a profile suite.
    layouts: tuple[str, ...] = ()

    def run_profile(self, name: str | None = None) -> RunProfile:
        """The named run profile (default: the suite's default_run_profile)."""
        name = name or self.default_run_profile
        if name not in self.run_profiles:
            names = list(self.run_profiles)
            raise SuiteError(f"unknown run profile '{name}'{did_you_mean(name, names)}; "
                             f"this suite defines: {', '.join(names)}",
                             file=str(self.path), key="run_profiles",
                             fix=f"use one of: {', '.join(names)}")
        return self.run_profiles[name]

    def unsupported_reason(self, gpu_model: str) -> str | None:
        """Why this suite has no cases on `gpu_model`, or None when it has some."""
        if gpu_model in self.gpus:
            return None
        return (f"suite '{self.name}' lists no MIG profiles for GPU model '{gpu_model}'"
                f"{did_you_mean(gpu_model, self.gpus)}; it supports: {', '.join(self.gpus)} "
                f"(add it under 'gpus:' in {self.path})")

    def expand(self, gpu_model: str, run_profile: str | None = None,
               free_slots: int | None = None) -> list[Case]:
        """One Case per benchmark x scenario x profile x mode; [] for an unlisted GPU model.

        free_slots overrides the background partitions available (default: slots - 1).
        """
        profile = self.run_profile(run_profile)
        gpu = self.gpus.get(gpu_model)
        if gpu is None:
            return []
        if self.layouts:
            return self._expand_layouts(gpu_model, profile)
        slots = gpu.slots - 1 if free_slots is None else free_slots
        if slots < 0:
            raise SuiteError(f"free_slots must be >= 0, got {slots}", file=str(self.path),
                             key=f"gpus.{gpu_model}.slots")
        cases = []
        for bench in self.benchmarks.values():
            info = self.catalog.benchmarks[bench.name]
            background = resolve_background(self.background.spec, bench.name, slots, self.catalog)
            requested = resolve_background(self.background.spec, bench.name, 1 << 20,
                                           self.catalog)
            profiles, skip = _profiles_for(info, gpu)
            for scenario in bench.scenarios:
                for mig_profile in profiles:
                    for mode in self.modes:
                        cases.append(Case(
                            suite=self.name, benchmark=bench.name, scenario=scenario,
                            profile=mig_profile, mode=mode, gpu_model=gpu_model,
                            background=background, background_spec=self.background.label,
                            run_profile=profile, accuracy_fraction=bench.accuracy_fraction,
                            accuracy_metric=info.metric, accuracy_reference=info.reference,
                            harness_options=dict(self.harness),
                            background_lifetime=self.background.lifetime,
                            background_requested=requested, skip_reason=skip))
        return cases


    def _expand_layouts(self, gpu_model: str, profile: RunProfile) -> list[Case]:
        """One Case per benchmark x scenario x layout x mode: the main on the layout's largest
        instance, every other instance running the background set in turn (layout_fill)."""
        mix = background_mix(self.background.spec, self.catalog)
        cases = []
        for bench in self.benchmarks.values():
            info = self.catalog.benchmarks[bench.name]
            for name in self.layouts:
                main, slices, skip = _layout_main(name, gpu_model, info)
                for scenario in bench.scenarios:
                    for mode in self.modes:
                        cases.append(Case(
                            suite=self.name, benchmark=bench.name, scenario=scenario,
                            profile=main, mode=mode, gpu_model=gpu_model,
                            background=layout_fill(mix, slices - 1),
                            background_spec=self.background.label, run_profile=profile,
                            accuracy_fraction=bench.accuracy_fraction,
                            accuracy_metric=info.metric, accuracy_reference=info.reference,
                            harness_options=dict(self.harness), background_lifetime="per-test",
                            background_requested=mix, skip_reason=skip, layout=name))
        return cases


def background_mix(spec: str | Sequence[str], catalog: Catalog) -> tuple[str, ...]:
    """A layout suite's workload mix: an alias's names, or an explicit list in its order."""
    if isinstance(spec, str):
        return tuple(sorted(set(catalog.aliases.get(spec, ()))))
    return tuple(spec)


def layout_fill(mix: Sequence[str], slots: int) -> tuple[str, ...]:
    """`slots` background benchmarks taken from `mix` in turn (repeated as needed): every
    instance of a layout runs a workload, so layouts of more, smaller slices carry more."""
    return tuple(mix[i % len(mix)] for i in range(max(slots, 0))) if mix else ()


def _layout_main(spec: str, gpu_model: str, info: BenchmarkInfo) -> tuple[str, int, str | None]:
    """(main profile, instance count, skip reason) of a layout on a GPU model."""
    try:
        model = get_model(gpu_model)
        wanted = layout_on_gpu(cached_layout(spec), 0, model.pci_device_id, gpu_model)
        if isinstance(wanted, str):
            return "none", 1, wanted
        check_fits(model, wanted)
    except (GpuError, LayoutError) as exc:
        return "none", 1, f"layout '{spec}' on {gpu_model}: {exc}"
    main = layout_main_profile(model, wanted)
    have = model.profile(main).memory_mb / 1024
    if info.memory_gib is not None and have < info.memory_gib:
        return main, sum(wanted.values()), (
            f"{info.name} needs {info.memory_gib:g} GiB of GPU memory; the largest instance of "
            f"layout '{spec}' on {gpu_model}, {main}, has {have:.2f} GiB")
    return main, sum(wanted.values()), None


def _profiles_for(info: BenchmarkInfo, gpu: GpuEntry) -> tuple[tuple[str, ...], str | None]:
    """The listed profiles a benchmark runs on, and a skip reason when none has the memory.

    Without a memory need (or a profile table for the GPU model) every listed profile is
    used; with one, the planner picks the smallest listed profile with enough memory.
    """
    if info.memory_gib is None:
        return gpu.profiles, None
    try:
        model = get_model(gpu.model)
    except GpuError:
        return gpu.profiles, None
    chosen = smallest_fitting(model, gpu.profiles, info.memory_gib)
    if chosen is not None:
        return (chosen,), None
    largest = max(gpu.profiles, key=lambda p: model.profile(p).memory_mb)
    have = model.profile(largest).memory_mb / 1024
    return (largest,), (f"{info.name} needs {info.memory_gib:g} GiB of GPU memory "
                        f"(fixtures/benchmarks-*.yaml memory_gib); the largest profile listed for "
                        f"{gpu.model}, {largest}, has {have:.2f} GiB")


def resolve_background(spec: str | Sequence[str], main: str, free_slots: int,
                       catalog: Catalog | None = None) -> tuple[str, ...]:
    """Background benchmarks for one main run (NVIDIA's rule).

    Alias or list -> sorted distinct names; when they do not fit in free_slots the main
    benchmark is dropped from them; then they are cut to free_slots.
    """
    if catalog is None and not isinstance(spec, str):
        # A case's already-resolved list, re-cut to a GPU's free instances: any round's names.
        catalog = next((c for c in map(_round_catalog, known_rounds())
                        if all(n in c.benchmarks for n in spec)), None) or load_catalog()
    catalog = catalog or load_catalog()
    if isinstance(spec, str):
        if spec not in catalog.aliases:
            aliases = list(catalog.aliases)
            raise SuiteError(f"unknown background alias '{spec}'{did_you_mean(spec, aliases)}; "
                             f"allowed: {', '.join(aliases)}", file=str(catalog.path),
                             key="aliases", fix="use an alias or a list of benchmark names")
        names = sorted(set(catalog.aliases[spec]))
    else:
        for name in spec:
            if name not in catalog.benchmarks:
                known = list(catalog.benchmarks)
                raise SuiteError(f"unknown background benchmark '{name}'"
                                 f"{did_you_mean(name, known)}; allowed: {', '.join(known)}",
                                 file=str(catalog.path), key="benchmarks")
        names = sorted(set(spec))
    free_slots = max(free_slots, 0)
    if len(names) > free_slots and main in names:
        names.remove(main)
    return tuple(names[:free_slots])


def background_cut(requested: Sequence[str], used: Sequence[str], main: str,
                   free_slots: int) -> str:
    """'' when every requested background (the main aside) runs, else the sentence saying
    which were cut for lack of free slots."""
    wanted = [b for b in requested if b != main]
    dropped = [b for b in wanted if b not in used]
    if not dropped:
        return ""
    return (f"background cut to {len(used)} of {len(wanted)}: {', '.join(dropped)} not run "
            f"(only {free_slots} free slot(s) beside the main)")


def find_suites(root: Path) -> list[Path]:
    """Every suite.yaml under root (hidden folders and virtualenvs skipped), sorted."""
    found = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not d.startswith((".", "__")) and d != "node_modules")
        found += [Path(folder) / f for f in files if f in ("suite.yaml", "suite.yml")]
    return sorted(found)


def catalog_path(round_name: str = DEFAULT_ROUND) -> Path:
    """The catalogue file of an MLPerf round: benchmarks.yaml (v1.1) or benchmarks-<round>.yaml."""
    if round_name == DEFAULT_ROUND:
        return data_path("benchmarks.yaml")
    return data_path(f"benchmarks-{round_name}.yaml")


def known_rounds() -> tuple[str, ...]:
    """Rounds with a catalogue file in the packaged data or the override folder."""
    found = {DEFAULT_ROUND}
    for folder in (packaged_dir(), override_dir()):
        if folder is not None and folder.is_dir():
            found |= {f.stem[len("benchmarks-"):] for f in folder.glob("benchmarks-*.yaml")}
    return tuple(sorted(found))


def _round_catalog(round_name: str) -> Catalog:
    return load_catalog(round_name=round_name)


def load_catalog(path: Path | str | None = None, gpus_dir: Path | str | None = None,
                 round_name: str | None = None) -> Catalog:
    """Load and validate the benchmark catalogue; GPU model keys come from fixtures/gpus.

    `round_name` picks a round's catalogue when no path is given (default: v1.1).
    Cached per (file, modification time): a run with many suites or cases parses it once.
    """
    if path is None:
        path, default_gpus = catalog_path(round_name or DEFAULT_ROUND), data_path("gpus")
    else:  # a catalogue of one's own: its gpus/ folder beside it when it has one
        path = Path(path)
        default_gpus = path.parent / "gpus" if (path.parent / "gpus").is_dir() else data_path("gpus")
    gpus = Path(gpus_dir) if gpus_dir is not None else default_gpus
    try:
        stamp = (path.stat().st_mtime_ns, gpus.stat().st_mtime_ns if gpus.exists() else 0)
    except OSError:
        stamp = (0, 0)  # missing file: _load_catalog raises the user-facing error
    return _load_catalog(path.resolve(), gpus.resolve(), stamp)


@functools.lru_cache(maxsize=8)
def _load_catalog(path: Path, gpus: Path, stamp: tuple[int, int]) -> Catalog:
    root = load_yaml(path)
    top = root.mapping(("round", "source", "suite_classes", "scenarios", "benchmarks", "aliases"),
                       required=("source", "suite_classes", "scenarios", "benchmarks", "aliases"))
    round_name = top["round"].text() if "round" in top else DEFAULT_ROUND
    classes = _names(top["suite_classes"], "suite class")
    scenarios = _names(top["scenarios"], "scenario")
    benchmarks: dict[str, BenchmarkInfo] = {}
    for name, node in top["benchmarks"].mapping().items():
        benchmarks[name] = _catalog_benchmark(name, node, classes, scenarios)
    if not benchmarks:
        raise top["benchmarks"].fail("the catalogue lists no benchmarks")
    aliases = {}
    for alias, node in top["aliases"].mapping().items():
        items = node.items()
        aliases[alias] = (node.unique_names(list(benchmarks), "benchmark") if items else ())
    return Catalog(path=path, source=top["source"].text(), suite_classes=classes,
                   scenarios=scenarios, benchmarks=benchmarks, aliases=aliases,
                   gpu_models=_gpu_models(gpus), round=round_name)


def load_suite(path: Path | str, catalog: Catalog | None = None) -> Suite:
    """Load and validate one suite YAML file (its `round:` picks the catalogue, default v1.1)."""
    path = Path(path)
    top = load_yaml(path).mapping(SUITE_KEYS, required=("suite", "benchmarks", "gpus",
                                                        "run_profiles"))
    catalog = _suite_catalog(top, catalog)
    name = top["suite"].text()
    if not NAME_RE.match(name):
        raise top["suite"].fail(f"suite name '{name}' has characters other than letters, "
                                "digits, '-', '_' and '.'", fix="rename the suite")
    suite_class = _suite_class(top, name, catalog)
    description = top["description"].text() if "description" in top else ""
    benchmarks = _suite_benchmarks(top["benchmarks"], suite_class, catalog)
    layouts = _layouts(top["layouts"], path) if "layouts" in top else ()
    gpus = _suite_gpus(top["gpus"], catalog, bool(layouts))
    modes = (top["modes"].unique_names(TEST_MODES, "mode") if "modes" in top else TEST_MODES)
    background = (_background(top["background"], catalog) if "background" in top
                  else BackgroundSpec("none"))
    harness = _harness(top["harness"]) if "harness" in top else {}
    run_profiles = _run_profiles(top["run_profiles"])
    if "default_run_profile" in top:
        default = top["default_run_profile"].choice(list(run_profiles), "run profile")
    else:
        default = "smoke" if "smoke" in run_profiles else next(iter(run_profiles))
    return Suite(name=name, path=path, suite_class=suite_class, description=description,
                 benchmarks=benchmarks, gpus=gpus, modes=modes, background=background,
                 harness=harness, run_profiles=run_profiles, default_run_profile=default,
                 catalog=catalog, layouts=layouts)


def _suite_catalog(top: dict[str, YNode], catalog: Catalog | None) -> Catalog:
    """The catalogue of the suite's round; a given catalogue must be of that round."""
    if "round" not in top:
        return catalog or load_catalog()
    rounds = known_rounds()
    wanted = top["round"].choice(rounds, "MLPerf round")
    if catalog is None:
        return load_catalog(round_name=wanted)
    if catalog.round != wanted:
        raise top["round"].fail(f"the suite is of round {wanted} but the catalogue {catalog.path} "
                                f"is of round {catalog.round}",
                                fix=f"use the catalogue of round {wanted} or change 'round:'")
    return catalog


def _names(node: YNode, what: str) -> tuple[str, ...]:
    """A non-empty list of distinct non-empty strings."""
    names: list[str] = []
    for item in node.items(non_empty=True):
        if item.text() in names:
            raise item.fail(f"{what} '{item.value}' is listed twice", fix="remove the duplicate")
        names.append(item.value)
    return tuple(names)


def _catalog_benchmark(name: str, node: YNode, classes: tuple[str, ...],
                       scenarios: tuple[str, ...]) -> BenchmarkInfo:
    fields = node.mapping(CATALOG_BENCHMARK_KEYS, required=("scenarios", "accuracy"))
    per_class = {}
    for cls, sc_node in fields["scenarios"].mapping(classes).items():
        per_class[cls] = sc_node.unique_names(scenarios, "scenario")
    if not per_class:
        raise fields["scenarios"].fail("no suite class lists scenarios for this benchmark")
    acc = fields["accuracy"].mapping(("metric", "reference", "fractions", "others"),
                                     required=("metric", "reference", "fractions"))
    fractions = tuple(f.number(positive=True, maximum=1.0)
                      for f in acc["fractions"].items(non_empty=True))
    others = ({k: v.number(positive=True) for k, v in acc["others"].mapping().items()}
              if "others" in acc else {})
    rounds = tuple(r.text() for r in fields["rounds"].items(non_empty=True)) \
        if "rounds" in fields else ()
    memory = fields["memory_gib"].number(positive=True) if "memory_gib" in fields else None
    latency = ({k: v.number(positive=True) for k, v in fields["latency"].mapping(LATENCY_KEYS).items()}
               if "latency" in fields else {})
    return BenchmarkInfo(name=name, scenarios=per_class, metric=acc["metric"].text(),
                         reference=acc["reference"].number(positive=True), fractions=fractions,
                         others=others, rounds=rounds, memory_gib=memory, latency=latency)


def _gpu_models(gpus_dir: Path) -> dict[str, frozenset[str]]:
    """Model keys (file stems) of the GPU profile tables, with the MIG profile names in each.

    The tables belong to the GPU layer; only their names and any profile-looking strings
    are read here, so their exact schema does not matter to the suites.
    """
    models: dict[str, frozenset[str]] = {}
    if not gpus_dir.is_dir():
        return models
    for file in sorted([*gpus_dir.glob("*.yaml"), *gpus_dir.glob("*.yml")]):
        try:
            data = safe_load(file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise SuiteError(f"cannot read GPU profile table: {exc}", file=str(file),
                             fix="fix or remove this file") from exc
        models[file.stem] = frozenset(s for s in _strings(data) if PROFILE_RE.match(s))
    return models


def _strings(data: object) -> Iterable[str]:
    """Every string key and value in a plain YAML structure."""
    if isinstance(data, str):
        yield data
    elif isinstance(data, dict):
        for key, value in data.items():
            yield from _strings(key)
            yield from _strings(value)
    elif isinstance(data, list):
        for item in data:
            yield from _strings(item)


def _suite_class(top: dict[str, YNode], name: str, catalog: Catalog) -> str:
    if "class" in top:
        return top["class"].choice(catalog.suite_classes, "suite class")
    if name in catalog.suite_classes:
        return name
    classes = ", ".join(catalog.suite_classes)
    raise top["suite"].fail(f"suite '{name}' is not a suite class name ({classes}) and "
                            "has no 'class:' key", fix=f"add 'class:' with one of: {classes}")


def _suite_benchmarks(node: YNode, suite_class: str,
                      catalog: Catalog) -> dict[str, SuiteBenchmark]:
    allowed = catalog.benchmarks_for(suite_class)
    entries = node.mapping()
    if not entries:
        raise node.fail("no benchmarks listed", fix=f"list some of: {', '.join(allowed)}")
    out = {}
    for name, entry in entries.items():
        if name not in allowed:
            where = (f"is not part of {suite_class} suites" if name in catalog.benchmarks
                     else "is not in the benchmark catalogue")
            raise entry.fail(f"benchmark '{name}' {where}{did_you_mean(name, allowed)}; "
                             f"{suite_class} benchmarks: {', '.join(allowed)}",
                             fix="remove it or correct its name", at_key=True)
        info = catalog.benchmarks[name]
        fields = {} if entry.is_null else entry.mapping(("scenarios", "accuracy"))
        scenarios = info.scenarios[suite_class]
        if "scenarios" in fields:
            scenarios = _scenarios(fields["scenarios"], info, suite_class, catalog)
        fraction = 0.99
        if "accuracy" in fields:
            fraction = fields["accuracy"].number()
            if fraction not in info.fractions:
                allowed_f = ", ".join(str(f) for f in info.fractions)
                raise fields["accuracy"].fail(
                    f"accuracy fraction {fraction} is not allowed for {name}; allowed: "
                    f"{allowed_f}", fix=f"use one of: {allowed_f}")
        out[name] = SuiteBenchmark(name, scenarios, fraction)
    return out


def _scenarios(node: YNode, info: BenchmarkInfo, suite_class: str,
               catalog: Catalog) -> tuple[str, ...]:
    supported = info.scenarios[suite_class]
    names: list[str] = []
    for item in node.items(non_empty=True):
        value = item.value
        if isinstance(value, str) and value not in supported and value in catalog.scenarios:
            raise item.fail(f"{info.name} does not support scenario '{value}' in "
                            f"{suite_class} suites; allowed: {', '.join(supported)}",
                            fix=f"use one of: {', '.join(supported)}")
        scenario = item.choice(supported, "scenario")
        if scenario in names:
            raise item.fail(f"scenario '{scenario}' is listed twice", fix="remove the duplicate")
        names.append(scenario)
    return tuple(names)


def _layouts(node: YNode, suite_path: Path) -> tuple[str, ...]:
    """`layouts:` of a layout suite: mig-parted names (fixtures/layouts/) or FILE:NAME, a relative
    FILE taken beside the suite; each must resolve now (file:line error otherwise)."""
    specs: list[str] = []
    for item in node.items(non_empty=True):
        spec = item.text()
        file, sep, name = spec.rpartition(":")
        if sep and file and not Path(file).is_absolute() and (suite_path.parent / file).exists():
            spec = f"{(suite_path.parent / file).resolve()}:{name}"
        try:
            cached_layout(spec)
        except LayoutError as exc:
            raise item.fail(str(exc), fix="name a layout of fixtures/layouts/*.yaml or give "
                            "FILE:NAME of a mig-parted config") from None
        if spec in specs:
            raise item.fail(f"layout '{item.value}' is listed twice", fix="remove the duplicate")
        specs.append(spec)
    return tuple(specs)


def _suite_gpus(node: YNode, catalog: Catalog, layouts: bool = False) -> dict[str, GpuEntry]:
    entries = node.mapping()
    known = list(catalog.gpu_models)
    if not entries:
        raise node.fail("no GPU models listed", fix=f"list some of: {', '.join(known)}")
    out = {}
    for model, entry in entries.items():
        if known and model not in known:
            raise entry.fail(f"unknown GPU model '{model}'{did_you_mean(model, known)}; "
                             f"allowed: {', '.join(known)}",
                             fix="use a GPU model key (fixtures/gpus/<model>.yaml)", at_key=True)
        if layouts and entry.is_null:  # a layout suite: the layouts say the instances
            out[model] = GpuEntry(model, (), MAX_MIG_SLOTS)
            continue
        fields = entry.mapping(("profiles", "slots"), required=("profiles", "slots"))
        valid = sorted(catalog.gpu_models.get(model, ()))
        profiles: list[str] = []
        for item in fields["profiles"].items(non_empty=True):
            name = item.value
            if not isinstance(name, str) or not PROFILE_RE.match(name):
                raise item.fail(f"'{name}' is not a MIG profile name "
                                "(<N>g.<M>gb, optionally +me)" + did_you_mean(str(name), valid),
                                fix="write it like 1g.10gb or 1g.10gb+me")
            if valid and name not in valid:
                allowed = ", ".join(valid)
                raise item.fail(f"{model} has no MIG profile '{name}'{did_you_mean(name, valid)}"
                                f"; allowed: {allowed}", fix=f"use one of: {allowed}")
            if name in profiles:
                raise item.fail(f"profile '{name}' is listed twice", fix="remove the duplicate")
            profiles.append(name)
        slots = fields["slots"].integer(minimum=1, maximum=MAX_MIG_SLOTS)
        out[model] = GpuEntry(model, tuple(profiles), slots)
    return out


def _background(node: YNode, catalog: Catalog) -> BackgroundSpec:
    fields = node.mapping(("set", "lifetime"), required=("set",))
    set_node = fields["set"]
    spec: str | tuple[str, ...]
    if isinstance(set_node.value, list):
        spec = set_node.unique_names(list(catalog.benchmarks), "benchmark")
    else:
        spec = set_node.choice(list(catalog.aliases), "background alias")
    lifetime = fields["lifetime"].choice(LIFETIMES, "lifetime") if "lifetime" in fields \
        else "per-test"
    return BackgroundSpec(spec, lifetime)


def _harness(node: YNode) -> dict[str, str]:
    out = {}
    for key, value in node.mapping().items():
        v = value.value
        if isinstance(v, bool):
            out[key] = "true" if v else "false"
        elif isinstance(v, (str, int, float)):
            out[key] = str(v)
        else:
            raise value.fail(f"harness option values must be strings or numbers, "
                             f"got {value.describe()}", fix="quote the value")
    return out


def _run_profiles(node: YNode) -> dict[str, RunProfile]:
    entries = node.mapping()
    if not entries:
        raise node.fail("no run profiles defined", fix="define at least 'smoke:'")
    return {name: _run_profile(name, entry) for name, entry in entries.items()}


def _run_profile(name: str, node: YNode) -> RunProfile:
    f = node.mapping(RUN_PROFILE_KEYS, required=("min_duration_ms", "min_query_count"))
    min_duration = f["min_duration_ms"].integer(minimum=0)
    if name == SUBMISSION_PROFILE and min_duration < SUBMISSION_MIN_DURATION_MS:
        raise f["min_duration_ms"].fail(
            f"the submission profile needs min_duration_ms >= {SUBMISSION_MIN_DURATION_MS} "
            f"(MLPerf rules: 600 s), got {min_duration}",
            fix=f"set min_duration_ms: {SUBMISSION_MIN_DURATION_MS}")
    defaults = RunProfile(name, 0, 0)
    bg = f.get("background_min_duration_ms")
    if bg is not None and isinstance(bg.value, str) and bg.value != "auto":
        raise bg.fail(f"expected an integer or 'auto', got {bg.describe()}",
                      fix="give milliseconds or 'auto' (derived from the main run)")
    bg_ms = None if bg is None or bg.is_null or bg.value == "auto" else bg.integer(minimum=0)
    qps = f.get("server_target_qps")
    return RunProfile(
        name=name, min_duration_ms=min_duration,
        min_query_count=f["min_query_count"].integer(minimum=0),
        server_target_qps=None if qps is None or qps.is_null else qps.number(positive=True),
        start_time_buffer_s=(f["start_time_buffer_s"].number(minimum=0)
                             if "start_time_buffer_s" in f else defaults.start_time_buffer_s),
        end_time_buffer_min_s=(f["end_time_buffer_min_s"].number(minimum=0)
                               if "end_time_buffer_min_s" in f
                               else defaults.end_time_buffer_min_s),
        background_min_duration_ms=bg_ms,
        sample_count=(f["sample_count"].integer(minimum=1) if "sample_count" in f
                      else defaults.sample_count))
