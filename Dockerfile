# The image deploy/k8s/shards-job.yaml and merge-job.yaml run: this repository at
# /opt/pytest-mig with the package installed from it, extras [harness,plots].
# Build from the repository root and push under the name the Jobs use (the tag is the
# package version in pyproject.toml; tests/test_container.py keeps the three equal):
#   docker build --build-arg PYTEST_MIG_COMMIT="$(git rev-parse HEAD)" \
#     -t registry.example.com/pytest-mig:0.1.0 .
#   docker push registry.example.com/pytest-mig:0.1.0
# Run one case set on a local GPU (the README's main job):
#   docker run --rm --gpus all registry.example.com/pytest-mig:0.1.0 suites/datacenter -k ssd -v
#
# Base: the CUDA 13.0 image of Ubuntu 24.04 (Python 3.12). The torch wheel from PyPI brings
# its own CUDA 13 runtime libraries and cuDNN, so the plain `base` flavour suffices; it sets
# NVIDIA_REQUIRE_CUDA=cuda>=13.0 (the container toolkit then refuses a host driver older
# than R580 with a clear message instead of torch failing later) and
# NVIDIA_DRIVER_CAPABILITIES=compute,utility (CUDA and NVML/nvidia-smi).
FROM nvidia/cuda:13.0.1-base-ubuntu24.04

# hadolint ignore=DL3008
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*

# A virtual environment, not the system Python (Ubuntu 24.04 marks it externally managed).
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/venv

# The commit under test: .git is not copied (.dockerignore), so every shard of a fleet run
# names the commit from here, and `pytest-mig merge` sees that they ran the same code.
ARG PYTEST_MIG_COMMIT=unknown
ENV PYTEST_MIG_COMMIT=$PYTEST_MIG_COMMIT

WORKDIR /opt/pytest-mig
COPY . /opt/pytest-mig
# Editable, as the README and CI install it: the suites, conftest.py and fixtures/ stay
# in /opt/pytest-mig where the Jobs' commands (workingDir /opt/pytest-mig) find them.
RUN pip install --no-cache-dir -e '/opt/pytest-mig[harness,plots]' \
    && pytest-mig --help > /dev/null

# Non-root. Runs write under --mig-reports (the Jobs: /results; the default ./reports is
# the user's) and $HOME (caches); the code itself stays root-owned and read-only.
RUN useradd --create-home --uid 10001 --user-group pytest-mig \
    && chown -R 10001:10001 /opt/pytest-mig/reports
USER 10001:10001
ENV HOME=/home/pytest-mig

ENTRYPOINT ["pytest"]
CMD ["suites/datacenter", "-k", "ssd", "-v"]
