"""deploy/k8s: every manifest validates against the Kubernetes schemas (kubernetes-validate,
strict: unknown fields are errors); the Indexed Job and the layouts agree with pytest-mig."""
from __future__ import annotations

import copy
import subprocess
from pathlib import Path

import pytest
import yaml

from fleet_helpers import REPO
from pytest_mig.datadir import data_path

kv = pytest.importorskip("kubernetes_validate", reason="pip install -e '.[test]' brings "
                         "kubernetes-validate")
K8S = REPO / "deploy" / "k8s"
MANIFESTS = sorted(K8S.glob("*.yaml"))


def docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def test_there_are_manifests():
    assert {p.name for p in MANIFESTS} >= {"shards-job.yaml", "merge-job.yaml",
                                           "results-pvc.yaml", "mig-parted-config.yaml"}


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_manifest_validates_against_the_kubernetes_schema(path):
    for doc in docs(path):
        kv.validate(doc, kv.latest_version(), strict=True)


def test_the_validator_catches_a_wrong_field():
    job = copy.deepcopy(docs(K8S / "shards-job.yaml")[0])
    job["spec"]["completionsMode"] = job["spec"].pop("completionMode")  # a typo
    with pytest.raises(kv.ValidationError):
        kv.validate(job, kv.latest_version(), strict=True)
    job = copy.deepcopy(docs(K8S / "shards-job.yaml")[0])
    job["spec"]["completions"] = "three"
    with pytest.raises(kv.ValidationError):
        kv.validate(job, kv.latest_version(), strict=True)


def test_indexed_job_runs_one_shard_per_completion_index():
    job = docs(K8S / "shards-job.yaml")[0]
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"]
    pod = spec["template"]["spec"]
    (box,) = pod["containers"]
    env = {e["name"]: e.get("value") for e in box["env"]}
    assert int(env["SHARDS"]) == spec["completions"]
    script = box["args"][0]
    assert "--mig-shard=$i/$SHARDS" in script and "JOB_COMPLETION_INDEX + 1" in script
    assert box["resources"]["limits"]["nvidia.com/gpu"] == 1  # a whole GPU: all its slices
    # the node label names a layout mig-parted knows from pytest-mig's own layouts
    layouts = yaml.safe_load(data_path("layouts", "pytest-mig.yaml").read_text())
    assert pod["nodeSelector"]["nvidia.com/mig.config"] in layouts["mig-configs"]
    merge = docs(K8S / "merge-job.yaml")[0]
    placeholder = {e["name"]: e.get("value") for e in
                   merge["spec"]["template"]["spec"]["containers"][0]["env"]}["FLEET_RUN"]
    assert placeholder in (K8S / "run.sh").read_text()  # run.sh points the merge at the shards


def test_mig_parted_configmap_is_the_packaged_layouts_verbatim():
    (cm,) = docs(K8S / "mig-parted-config.yaml")
    assert cm["data"]["config.yaml"] == data_path("layouts", "pytest-mig.yaml").read_text()


@pytest.mark.parametrize("script", ["deploy/k8s/run.sh", "deploy/slurm/submit.sh",
                                    "deploy/slurm/shard.sbatch", "deploy/slurm/merge.sbatch"])
def test_deploy_scripts_parse(script):
    done = subprocess.run(["bash", "-n", str(REPO / script)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
