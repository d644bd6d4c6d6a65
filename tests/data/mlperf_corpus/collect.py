"""Rebuild this corpus from local bare mirrors of mlcommons/inference_results_v*: collect.py MIRRORS [ROUND...].

v6.0 is read from a fork's mirror at MLCommons' own publishing commit (SNAPSHOTS); v3.1, v4.0
and v5.0 were too large to mirror here: their files were copied one by one from a stored
index of GitHub (see README.md), not by this script.

Not run by the tests. It picks, per round, a few files of every kind the parsers must read
(one or two per distinct shape: scenario x headline x verdict x LoadGen block layout,
accuracy line format, audit test x kind x verdict, small whole detail logs, and files the
parsers must refuse), copies them byte for byte under <round>/<submitter>/<division>/...,
and writes a SOURCE file per folder: repository, commit, original path of each file.
`WHOLE_SYSTEMS` are copied whole (performance summaries, accuracy.txt, compliance verdicts):
the published-baseline tests point --mig-compare at them.
"""
from __future__ import annotations

import collections
import re
import warnings
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
ROUNDS = ["v0.5", "v0.7", "v1.0", "v1.1", "v2.0", "v2.1", "v3.0", "v4.1", "v5.1", "v6.0"]
MAX_BYTES = {"summary": 12_000, "accuracy": 12_000, "verify": 6_000, "detail": 24_000}
# Rounds read from another mirror: round -> (mirror folder, commit, repository the mirror is of).
# gbeezybez/inference_results_v6.0 is a fork whose history holds MLCommons' "Publishing Results"
# commit; files are taken at that commit, not at the fork's later ones.
SNAPSHOTS = {"v6.0": ("gbeezybez+inference_results_v6.0", "ab33b2144a9f822f69d24f78569f993d195ee7e5",
                      "gbeezybez/inference_results_v6.0")}
# Files per shape (summaries, accuracy files; verdicts and detail logs take half): v6.0 takes more,
# its new benchmarks and audits (TEST07/08/09) being the least known.
PER_SHAPE = {"v6.0": 4}
WHOLE_SYSTEMS = [("v4.1", "closed/NVIDIA", "H200-SXM-141GBx8_TRT"),
                 ("v6.0", "closed/AMD", "8xMI355X_2xEPYC_9575F"), ("v6.0", "open/Krai", "h200_n1-vllm"),
                 ("v6.0", "closed/Lenovo", "SE455I_V3_TRT")]
# Files taken whatever the shapes say: MLLOG detail logs (bigger than MAX_BYTES) with NUL bytes inside
# JSON values and one per later round, and accuracy lines the shape key does not tell apart.
EXTRAS = {
    "v1.0": ["closed/Intel/compliance/1-node-8S-CPX-OpenVINO-INT8/ssd-resnet34/Offline/TEST05/performance/run_1/"
             "mlperf_log_detail.txt"],
    "v0.7": ["closed/Intel/compliance/1-node-8s-cpx-mx-int8/resnet/Server/TEST01/accuracy/accuracy.txt"],  # hash glued
    "v2.0": ["open/Deci/results/aws-c6i.16xlarge-openvino/bert-99/Offline/accuracy/accuracy.txt"],  # single quotes
    "v1.1": ["closed/Dell/compliance/R750_Intel6330_openvino/ssd-resnet34/offline/TEST04-A/performance/run_1/"
             "mlperf_log_detail.txt",
             "closed/Intel/results/1-node-2S-ICX-PyTorch-INT8/ssd-resnet34/offline/performance/run_1/"
             "mlperf_log_detail.txt"],
    "v2.1": ["open/Krai/results/chai/retinanet/offline/performance/run_1/mlperf_log_detail.txt"],
    "v4.1": ["closed/Cisco/results/C240M7-1-node-2S-EMR-PyTorch/3d-unet-99.9/Offline/performance/run_1/"
             "mlperf_log_detail.txt",
             "closed/Google/results/tpu_v6_x4_flax/stable-diffusion-xl/server/accuracy/accuracy.txt"],  # multi-line
    "v5.1": ["closed/GATEOverflow/results/GATEOverflow_RTX4090x1-reference-cpu-onnxruntime_v1.22.1-default_config/"
             "retinanet/offline/performance/run_1/mlperf_log_detail.txt",
             # read by metric name (an open-division name), and pointpainting's dict with 'Total'
             "open/GATEOverflow/results/596a81fc0ea1-ctuning_cpp_tflite-cpu-tflite_vmaster-default_config/"
             "efficientnet-fp32-lite0/offline/accuracy/accuracy.txt",
             "open/GATEOverflow/results/GATEOverflow_Intel_SPR_i9-reference-gpu-pytorch_v2.2.2-cu126/pointpainting/"
             "singlestream/accuracy/accuracy.txt"],
}
SCENARIOS = ("offline", "server", "singlestream", "multistream", "interactive")


def git(gitdir: Path, *args: str) -> bytes:
    return subprocess.run(["git", f"--git-dir={gitdir}", *args], check=True, capture_output=True).stdout


def listing(gitdir: Path, rev: str = "HEAD") -> list[tuple[str, str, int]]:
    out = []
    for line in git(gitdir, "ls-tree", "-r", "-l", rev).decode().splitlines():
        meta, path = line.split("\t", 1)
        _, typ, sha, size = meta.split()
        if typ == "blob" and size.isdigit():
            out.append((path, sha, int(size)))
    return out


def blobs(gitdir: Path, shas: list[str]):
    """Contents of `shas` in order, through one `git cat-file --batch`."""
    proc = subprocess.Popen(["git", f"--git-dir={gitdir}", "cat-file", "--batch"], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE)
    import threading
    def feed() -> None:
        for sha in shas:
            proc.stdin.write(sha.encode() + b"\n")
        proc.stdin.close()
    threading.Thread(target=feed, daemon=True).start()
    for _ in shas:
        size = int(proc.stdout.readline().split()[2])
        data = proc.stdout.read(size)
        proc.stdout.read(1)
        yield data
    proc.wait()


def kind_of(path: str) -> str | None:
    name = path.rsplit("/", 1)[-1]
    if name == "mlperf_log_summary.txt":
        return "summary"
    if name == "mlperf_log_detail.txt":
        return "detail"
    if name == "accuracy.txt":
        return "accuracy"
    if re.fullmatch(r"verify_\w+\.txt", name):
        return "verify"
    return None


def benchmark_of(path: str) -> str:
    parts = path.split("/")
    for i, part in enumerate(parts):
        if part.lower() in SCENARIOS and i > 0:
            return parts[i - 1]
    return ""


def shape(kind: str, path: str, data: bytes) -> tuple | None:
    """What makes a file interesting to the parsers; None to skip it."""
    from pytest_mig.errors import ResultParseError
    from pytest_mig.results import parse_accuracy, parse_audit, parse_detail, parse_summary
    from pytest_mig.results.accuracy import FORMATS, normalize_benchmark
    text = data.decode("utf-8", "replace")
    try:
        if kind == "summary":
            s = parse_summary(text if "\n" in text else text + "\n")
            return (s.scenario, s.headline_name, s.result, s.mode, bool(s.token_early_stopping),
                    bool(s.issue_intervals), bool(s.sample_latencies_ns), b"\x00" in data,
                    bool(s.parameter_warnings), bool(s.recommendations), "/TEST0" in path, b"\r" in data)
        if kind == "accuracy":
            bench = normalize_benchmark(benchmark_of(path))
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                a = parse_accuracy(text, bench)
            known = bench if bench in FORMATS else "by metric name"
            return (known, a.metric, tuple(sorted(a.fields))[:8], "hash=" in text and not text.count("\nhash="))
        if kind == "verify":
            v = parse_audit(text, path)
            return (v.test, v.kind, v.passed, v.reference_score is not None, tuple(sorted(v.checks.values())))
        d = parse_detail(text)
        return (d.format, d.scenario, d.result_validity, bool(d.malformed), b"\x00" in data,
                bool(d.errors), d.loadgen_version.split(".")[0])
    except ResultParseError as exc:
        return ("refused", kind, re.sub(r"'[^']*'|line \d+", "", str(exc).split(": ", 1)[-1])[:60])


def main(mirrors: Path, rounds: list[str]) -> None:
    for rnd in rounds or ROUNDS:
        folder, commit, via = SNAPSHOTS.get(rnd, (f"mlcommons+inference_results_{rnd}", "", ""))
        gitdir = mirrors / folder / "repo"
        if not gitdir.exists():
            continue
        commit = commit or git(gitdir, "rev-parse", "HEAD").decode().strip()
        files = [(p, sha, size) for p, sha, size in listing(gitdir, commit)
                 if (k := kind_of(p)) and 0 < size <= MAX_BYTES[k] and p.split("/")[0] in ("closed", "open")
                 and "/code/" not in p]
        per_shape: dict[tuple, list] = collections.defaultdict(list)
        submitters_seen: collections.Counter = collections.Counter()
        chosen = []
        files.sort(key=lambda f: (f[0].split("/")[1], f[2]))
        for (path, sha, size), data in zip(files, blobs(gitdir, [f[1] for f in files])):
            kind = kind_of(path)
            key = (kind, shape(kind, path, data))
            if key[1] is None:
                continue
            submitter = path.split("/")[1]
            most = PER_SHAPE.get(rnd, 2)
            limit = 1 if key[1][0] == "refused" else max(1, most // 2) if kind in ("detail", "verify") else most
            taken = per_shape[key]
            if len(taken) < limit and submitter not in taken:
                taken.append(submitter)
                chosen.append((path, data))
            elif ((kind == "summary" or rnd in PER_SHAPE) and kind in ("summary", "accuracy")
                  and submitters_seen[submitter] < max(1, PER_SHAPE.get(rnd, 2) // 2)):
                chosen.append((path, data))
            else:
                continue
            submitters_seen[submitter] += 1
        for wr, prefix, system in WHOLE_SYSTEMS:
            if wr != rnd:
                continue
            whole = [(p, sha) for p, sha, _ in listing(gitdir, commit)
                     if p.startswith((f"{prefix}/results/{system}/", f"{prefix}/compliance/{system}/"))
                     and (p.endswith("performance/run_1/mlperf_log_summary.txt")
                          or p.endswith("/accuracy/accuracy.txt") and "/TEST0" not in p
                          or re.search(r"/verify_\w+\.txt$", p))]
            have = {p for p, _ in chosen}
            chosen += [(p, d) for (p, _), d in zip(whole, blobs(gitdir, [sha for _, sha in whole])) if p not in have]
        extras = [(p, sha) for p, sha, _ in listing(gitdir, commit) if p in EXTRAS.get(rnd, [])]
        chosen += [(p, d) for (p, _), d in zip(extras, blobs(gitdir, [sha for _, sha in extras]))]
        sources: dict[Path, list[str]] = collections.defaultdict(list)
        for path, data in chosen:
            division, submitter, rest = path.split("/", 2)
            target = HERE / rnd / submitter / division / rest
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            sources[target.parent].append(f"{target.name} <- {path}")
        for folder, lines in sources.items():
            head = f"mlcommons/inference_results_{rnd} @ {commit}\n"
            if via:
                head += f"via {via} (a fork holding that commit)\n"
            (folder / "SOURCE").write_text(head + "\n".join(sorted(lines)) + "\n")
        print(rnd, len(chosen), file=sys.stderr)


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
