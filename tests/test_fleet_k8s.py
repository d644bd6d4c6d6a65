"""deploy/k8s: every manifest validates against the Kubernetes schemas (kubernetes-validate,
strict: unknown fields are errors); the Indexed Job and the layouts agree with pytest-mig;
the Job is one an admin can apply: the device-plugin configuration for the MIG strategy it
needs, a toleration for the GPU-node taint, and the capability the container toolkit
requires for NVIDIA_MIG_MONITOR_DEVICES. (The image it names: tests/test_container.py.)"""
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
                                           "results-pvc.yaml", "mig-parted-config.yaml",
                                           "device-plugin-config.yaml"}


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


# --- what an admin needs besides valid objects -------------------------------------------

# Keys of the k8s-device-plugin config file's `flags` (its api/config/v1 Flags) that these
# files may set, and the strategies it knows.
PLUGIN_FLAGS = {"migStrategy", "failOnInitError", "mpsRoot", "nvidiaDriverRoot",
                "nvidiaDevRoot", "gdrcopyEnabled", "gdsEnabled", "mofedEnabled", "useNodeFeatureAPI",
                "deviceDiscoveryStrategy", "plugin", "gfd"}
MIG_STRATEGIES = {"none", "single", "mixed"}
GPU_TAINT = {"key": "nvidia.com/gpu", "effect": "NoSchedule"}
MIG_CAPS_ENV = ("NVIDIA_MIG_MONITOR_DEVICES", "NVIDIA_MIG_CONFIG_DEVICES")


def tolerates(pod: dict, taint: dict) -> bool:
    """Kubernetes' matching of a taint by a pod's tolerations (key/operator/value/effect)."""
    for tol in pod.get("tolerations", []):
        if tol.get("effect") not in (None, "", taint["effect"]):
            continue
        if tol.get("operator", "Equal") == "Exists":
            if tol.get("key") in (None, "", taint["key"]):
                return True
        elif tol.get("key") == taint["key"] and tol.get("value", "") == taint.get("value", ""):
            return True
    return False


def mig_caps_problems(pod: dict) -> list[str]:
    """Containers asking the NVIDIA container toolkit for MIG monitor/config devices without
    CAP_SYS_ADMIN in their capability set (the toolkit then refuses to start them)."""
    problems = []
    for box in pod["containers"]:
        asked = [e["name"] for e in box.get("env", []) if e["name"] in MIG_CAPS_ENV]
        sc = box.get("securityContext", {})
        added = set(sc.get("capabilities", {}).get("add", []))
        if asked and not (sc.get("privileged") or added & {"SYS_ADMIN", "CAP_SYS_ADMIN"}):
            problems.append(f"{box['name']}: {', '.join(asked)} without CAP_SYS_ADMIN")
    return problems


def plugin_configs() -> dict[str, dict]:
    (cm,) = docs(K8S / "device-plugin-config.yaml")
    return {name: yaml.safe_load(text) for name, text in cm["data"].items()}


def test_device_plugin_config_entries_are_plugin_config_files():
    configs = plugin_configs()
    assert configs
    for name, config in configs.items():
        assert config["version"] == "v1", name
        assert set(config["flags"]) <= PLUGIN_FLAGS, (name, set(config["flags"]) - PLUGIN_FLAGS)
        assert config["flags"]["migStrategy"] in MIG_STRATEGIES, name


def test_shard_job_runs_where_the_device_plugin_has_the_strategy_it_needs():
    pod = docs(K8S / "shards-job.yaml")[0]["spec"]["template"]["spec"]
    entry = pod["nodeSelector"]["nvidia.com/device-plugin.config"]
    configs = plugin_configs()
    assert entry in configs, f"nodeSelector names {entry!r}; the ConfigMap has {sorted(configs)}"
    strategy = configs[entry]["flags"]["migStrategy"]
    limits = pod["containers"][0]["resources"]["limits"]
    mig_resources = [r for r in limits if r.startswith("nvidia.com/mig-")]
    # "none": the whole parent GPU as nvidia.com/gpu, every MIG device of it in the pod;
    # "mixed" would name nvidia.com/mig-<profile> resources, "single" a slice as nvidia.com/gpu
    assert strategy == "none" and limits.get("nvidia.com/gpu") == 1 and not mig_resources
    # GFD labels the plain product under "none" (a "-MIG-1g.10gb" suffix only under "single")
    assert "-MIG-" not in pod["nodeSelector"]["nvidia.com/gpu.product"]


def test_shard_job_tolerates_the_gpu_node_taint():
    pod = docs(K8S / "shards-job.yaml")[0]["spec"]["template"]["spec"]
    assert tolerates(pod, GPU_TAINT)
    assert not tolerates(pod, {"key": "dedicated", "effect": "NoSchedule"})
    assert not tolerates({}, GPU_TAINT)
    assert tolerates({"tolerations": [{"key": "nvidia.com/gpu", "value": "present",
                                       "effect": "NoSchedule"}]},
                     dict(GPU_TAINT, value="present"))


def test_mig_monitor_devices_come_with_the_capability_the_toolkit_requires():
    for path in (K8S / "shards-job.yaml", K8S / "merge-job.yaml"):
        pod = docs(path)[0]["spec"]["template"]["spec"]
        assert mig_caps_problems(pod) == [], path.name
    pod = docs(K8S / "shards-job.yaml")[0]["spec"]["template"]["spec"]
    env = {e["name"]: e.get("value") for e in pod["containers"][0]["env"]}
    assert env["NVIDIA_MIG_MONITOR_DEVICES"] == "all"
    box = pod["containers"][0]
    assert box["securityContext"]["allowPrivilegeEscalation"] is False
    bare = copy.deepcopy(pod)
    del bare["containers"][0]["securityContext"]
    assert mig_caps_problems(bare) == ["shard: NVIDIA_MIG_MONITOR_DEVICES without CAP_SYS_ADMIN"]
