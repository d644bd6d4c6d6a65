"""The harness's torch.compile path: the mode choice, the auto table, the compile cache, the
recorded path, and real compiles on the CPU (one tiny model, one shape, through the real CLI)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("mlperf_loadgen")

from pytest_mig.harness.base import collect_loadgen_outputs  # noqa: E402
from pytest_mig.harness.loadgen import LoadgenHarness  # noqa: E402
from pytest_mig.types import Partition, WorkSpec  # noqa: E402
from pytest_mig.workload import accel, cli, compiled  # noqa: E402
from pytest_mig.workload.models import BENCHMARKS  # noqa: E402
from pytest_mig.workload_contract import PATH_RECORD  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CUDA, CPU = torch.device("cuda"), torch.device("cpu")


def test_settings_match_the_cli_and_bad_ones_are_refused():
    assert cli.COMPILE_SETTINGS == compiled.SETTINGS
    assert compiled.check_setting("max-autotune") == "max-autotune"
    with pytest.raises(ValueError, match="compile='fast': unknown setting; choose one of off, auto, default"):
        compiled.check_setting("fast")


def test_choice_off_named_and_auto_per_device():
    table = {"resnet50": "reduce-overhead", "bert": "off"}
    assert compiled.choose("off", "resnet50", CUDA, table).mode is None
    assert compiled.choose("max-autotune", "resnet50", CPU, table).mode == "max-autotune"  # asked: even on CPU
    auto = compiled.choose("auto", "resnet50", CUDA, table)
    assert (auto.mode, auto.requested) == ("reduce-overhead", "auto")
    assert auto.describe() == "compile=reduce-overhead (requested auto: compile_modes.yaml)"
    assert compiled.choose("auto", "resnet50", CPU, table).mode is None  # CPU compile is slow: never by default
    assert "the uncompiled path won" in compiled.choose("auto", "bert", CUDA, table).reason
    new_model = compiled.choose("auto", "retinanet", CUDA, table)  # models added later: off until measured
    assert new_model.mode is None and "retinanet not in compile_modes.yaml" in new_model.reason


def test_packaged_table_covers_every_benchmark_with_known_modes():
    table = compiled.load_table()
    assert set(BENCHMARKS) <= set(table)
    assert set(table.values()) <= {"off", *compiled.MODES}


def test_table_reader_takes_bare_off_and_refuses_unknown_modes(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("modes:\n  resnet50: off\n  bert: max-autotune\n")
    assert compiled.load_table(good) == {"resnet50": "off", "bert": "max-autotune"}
    bad = tmp_path / "bad.yaml"
    bad.write_text("modes:\n  bert: turbo\n")
    with pytest.raises(ValueError, match="bad.yaml: bert: unknown mode 'turbo'"):
        compiled.load_table(bad)


def test_mig_data_override_supplies_the_auto_table(tmp_path, monkeypatch):
    (tmp_path / "compile_modes.yaml").write_text("modes:\n  dlrm: max-autotune\n")
    monkeypatch.setenv("PYTEST_MIG_DATA", str(tmp_path))
    assert compiled.choose("auto", "dlrm", CUDA).mode == "max-autotune"


def test_inductor_options_leave_graphs_to_the_harness():
    assert compiled.inductor_options("reduce-overhead") == {}
    tuned = compiled.inductor_options("max-autotune")
    assert tuned["max_autotune"] is True and "triton.cudagraphs" not in tuned
    assert tuned == compiled.inductor_options("max-autotune-no-cudagraphs")


def test_cache_folder_is_keyed_by_torch_device_model_shape_precision(tmp_path, monkeypatch):
    a = compiled.cache_dir("resnet50", "full", "bf16", 256, CPU, tmp_path)
    assert a.is_dir() and a.relative_to(tmp_path).parts == (
        f"torch-{compiled.slug(torch.__version__)}", "cpu", "resnet50-full-bf16-b256")
    keys = {compiled.cache_dir("resnet50", size, prec, b, CPU, tmp_path)
            for size, prec, b in (("full", "bf16", 256), ("full", "fp16", 256), ("full", "bf16", 512),
                                  ("small", "bf16", 256))}
    assert len(keys) == 4
    monkeypatch.setenv(compiled.CACHE_ENV, str(tmp_path / "env"))
    assert compiled.default_cache_base() == tmp_path / "env"
    monkeypatch.delenv(compiled.CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert compiled.default_cache_base() == tmp_path / "xdg" / "pytest-mig" / "inductor"


def test_run_buckets_offline_one_shape_latency_scenarios_powers_of_two():
    assert accel.run_buckets(256, "Offline") == (256,)
    assert accel.run_buckets(8, "Server") == (1, 2, 4, 8)
    assert accel.run_buckets(1, "SingleStream") == (1,)
    assert accel.options_for("bert", "bf16", compile_mode="max-autotune").describe().endswith("compile=max-autotune")


def test_compiled_offline_pads_every_batch_to_its_one_shape():
    import numpy as np

    from pytest_mig.workload.models import Predictor, build

    model, loader, post = build("resnet50", "tiny", seed=0)
    seen: list[int] = []
    model.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[0]))
    opts = accel.AccelOptions(torch.float32, None, cuda_graphs=False, start_from_device=False,
                              compile_mode="default")
    predictor = accel.AccelPredictor(model, loader, post, opts, CPU, 6, accel.run_buckets(6, "Offline"))
    assert predictor.fixed_shapes and predictor.runner is None and predictor.buckets == (6,)
    got = predictor([4, 1, 7])
    assert seen == [6]  # one shape: one compile serves the run
    expected = Predictor(model, loader, post, "fp32", CPU)([4, 1, 7])
    assert len(got) == 3 and all(np.array_equal(g, e) for g, e in zip(got, expected))


def test_compile_and_uncompile_are_generic_over_models():
    class Step(torch.nn.Module):
        COMPILE_METHODS = ("step",)

        def forward(self, x):
            return x

        def step(self, x):
            return x + 1

    plain, stepped = torch.nn.Linear(2, 2), Step()
    compiled.compile_model(plain, "default")
    compiled.compile_model(stepped, "default")
    assert "forward" in plain.__dict__ and "step" in stepped.__dict__ and "forward" not in stepped.__dict__
    compiled.uncompile(plain)
    compiled.uncompile(stepped)
    assert "forward" not in plain.__dict__ and "step" not in stepped.__dict__
    assert stepped.step(torch.zeros(1)).item() == 1.0


def test_builtin_harness_passes_compile_per_benchmark(tmp_path):
    part = Partition("mig", 0, "GPU-x", "MIG-x", "1g.10gb", True)

    def argv(cli, bench):
        work = WorkSpec("main", "main", bench, "Offline", "performance", 1000, 1, tmp_path, options={})
        a = list(LoadgenHarness(cli).launch(work, part, {}, tmp_path / "l").argv)
        return a[a.index("--compile") + 1] if "--compile" in a else None

    cli = {"compile": "off", "compile.resnet50": "max-autotune", "compile_cache": str(tmp_path)}
    assert argv(cli, "resnet50") == "max-autotune"
    assert argv(cli, "bert") == "off"
    assert argv({}, "bert") is None  # the CLI default: auto


def test_collect_copies_the_path_record_into_the_result(tmp_path):
    record = {"compile": "reduce-overhead", "compile_requested": "auto", "ready_s": 7.5}
    (tmp_path / PATH_RECORD).write_text(json.dumps(record))
    work = WorkSpec("main", "main", "resnet50", "Offline", "accuracy", 0, 1, tmp_path, options={})
    assert collect_loadgen_outputs(work, tmp_path).harness_path == record
    (tmp_path / PATH_RECORD).write_text("{not json")
    res = collect_loadgen_outputs(work, tmp_path)
    assert any(PATH_RECORD in e and "unreadable" in e for e in res.errors)


def run_cli(tmp_path: Path, name: str, cache: Path, env: dict[str, str] | None = None) -> tuple[str, dict]:
    """dlrm tiny, SingleStream accuracy: one compiled shape (batch 1), scored against FP32."""
    log_dir = tmp_path / name
    argv = [sys.executable, "-m", "pytest_mig.workload", "--benchmark", "dlrm", "--scenario",
            "SingleStream", "--mode", "accuracy", "--log-dir", str(log_dir), "--min-duration-ms", "0",
            "--sample-count", "8", "--size", "tiny", "--device", "cpu", "--compile", "default",
            "--compile-cache", str(cache)]
    proc = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "TORCHINDUCTOR_COMPILE_THREADS": "1", **(env or {})})
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return proc.stdout, json.loads((log_dir / PATH_RECORD).read_text())


def test_cpu_compile_real_cold_then_warm_and_scored_against_fp32(tmp_path):
    """Real inductor on the CPU (g++): cold fills the cache, warm reuses it; accuracy stays 100%."""
    cache = tmp_path / "cache"
    out, cold = run_cli(tmp_path, "cold", cache)
    assert cold["compile"] == "default" and cold["compile_requested"] == "default"
    assert Path(cold["compile_cache"]).parent.parent.parent == cache
    assert cold["ready_s"] > 0 and "compile=default" in cold["path"]
    lines = out.splitlines()
    path_line = next(i for i, line in enumerate(lines) if "] path: " in line)
    assert "compile=default" in lines[path_line]
    assert lines[path_line + 1].endswith("Starting running actual test.")  # the record comes right before ready
    assert "accuracy vs fp32 reference: AUC=100.000%" in out
    compiled_files = {p.name for p in Path(cold["compile_cache"]).rglob("*") if p.is_file()}
    assert compiled_files, "inductor wrote nothing to the cache folder"
    _, warm = run_cli(tmp_path, "warm", cache)
    assert warm["compile"] == "default" and warm["compile_cache"] == cold["compile_cache"]
    assert warm["warm_s"] < cold["warm_s"], (cold, warm)  # cache hits: no C++ compile the second time


def test_cpu_compile_failure_falls_back_and_says_why(tmp_path):
    """A real compile failure (no working C++ compiler) falls back to the uncompiled path."""
    out, record = run_cli(tmp_path, "broken", tmp_path / "cache", env={"CXX": "/bin/false"})
    assert record["compile"] == "off" and record["compile_requested"] == "default"
    assert record["compile_reason"].startswith("default failed: ")
    assert "falling back to the uncompiled path" in out
    assert "AUC=100.000%" in out
