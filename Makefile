# Set-up is part of every target: a project-local venv provides libtorch (PyPI torch==2.11.0),
# which tch links against with LIBTORCH_USE_PYTORCH=1, onnx + onnxruntime for `genseg export`'s
# ONNX check, and torchvision for the ResNet weight converter and DeepLab's bench reference
# (Python never runs on the training path).
VENV   := .venv
PYDEPS := torch==2.11.0 numpy==2.4.6 onnx==1.23.2 onnxruntime==1.32.0 torchvision==0.26.0 pillow==12.0.0
TORCH  := $(VENV)/.deps-torch-2.11.0-onnx-1.23.2-torchvision-0.26.0
export LIBTORCH_USE_PYTORCH := 1
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: setup browser slurm build demo test test-fast lint bench
setup: $(TORCH)

$(TORCH):
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --progress-bar off $(PYDEPS)
	touch $@

build: setup
	cargo build

## Generates phantom data, trains plain, augment (the default) and genseg briefly, then fit on the same pairs; prints where the pictures are.
demo: setup
	cargo run -- demo --out demo-out

## Debian's chromium and chromedriver for the serve browser test (installed when missing).
browser:
	@command -v chromedriver >/dev/null && command -v chromium >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null)

## Debian's Slurm and munge for the test that runs a study on a one-node Slurm (installed when missing).
slurm:
	@command -v slurmctld >/dev/null && command -v munged >/dev/null || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurm-wlm munge >/dev/null)

## Everything CI runs after lint: unit tests, phantom-data tests, the browser and Slurm tests, the slow real-data tests.
test: setup browser slurm
	cargo test -- --include-ignored

## Unit tests and phantom-data tests only (the real-data tests are #[ignore]d here).
test-fast: setup
	cargo test

## The style gate CI runs before the tests.
lint: setup
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings

## genseg vs PyTorch on the same machine (see bench/README.md).
bench: setup
	bash bench/run.sh
