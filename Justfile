# Every developer and CI action is a recipe. `just` lists them.

set shell := ["bash", "-euo", "pipefail", "-c"]

# List the recipes.
default:
    @just --list --unsorted

# Run the whole platform on this machine (all-in-one binary, embedded defaults).
run *ARGS:
    cargo run --release -p tessera -- dev {{ARGS}}

# Install (if missing) and start PostgreSQL and NATS JetStream on loopback; install the
# Node.js test tools.
services:
    tools/services up
    npm ci --prefix tools/jose-check --no-audit --no-fund

# Build (or reuse from the cache) the test control plane: etcd, kube-apiserver,
# kube-controller-manager and helm from their Go modules (tools/testenv/README.md).
testenv:
    tools/testenv/build

# Check formatting.
fmt-check:
    cargo fmt --all -- --check

# Format the code.
fmt:
    cargo fmt --all

# Clippy over every crate and target, warnings are errors.
lint:
    cargo clippy --workspace --all-targets --locked -- -D warnings

# The service binaries are built first: the end-to-end tests (tests/e2e) run them.
# Run every test against the real servers `just services` started.
test *ARGS:
    cargo build --workspace --bins --locked
    eval "$(tools/services env)" && cargo test --workspace --locked {{ARGS}}

# Whole-platform end-to-end tests: every service as its own process, through the gateway.
e2e *ARGS:
    cargo build --locked -p tessera-identity -p tessera-gateway -p tessera-profile -p tessera-logging -p tessera-notification
    eval "$(tools/services env)" && cargo test --locked -p tessera-e2e {{ARGS}}

# schemathesis (PyPI, pinned, in ~/.cache/tessera) against every service's committed
# OpenAPI document while `tessera dev` runs; fails on a 5xx or a response that breaks its
# schema (tools/schemathesis/README.md). Passes by name, e.g. `just schemathesis identity`.
# Hostile input: fuzz every service's API with schemathesis.
schemathesis *PASSES:
    cargo build --workspace --bins --locked
    tools/schemathesis/run {{PASSES}}

# Benchmark identity (tokens/s, logins/s, JWKS) beside the limits; prints tables.
bench-identity *ARGS:
    eval "$(tools/services env)" && cargo run --release -p tessera-bench-identity -- --postgres-url "$TESSERA_TEST_POSTGRES_URL" {{ARGS}}

# Benchmark profile → notification → SMTP (profiles/s, welcome-mail p50/p99 at 200/s,
# delivery beside the SMTP server's limit); prints one table.
bench-notification *ARGS:
    eval "$(tools/services env)" && cargo run --release -p tessera-bench-notification -- {{ARGS}}

# Benchmark the gateway beside the upstream, nginx and HAProxy (installs wrk, nginx,
# haproxy from Debian); prints one table.
bench-gateway *ARGS:
    bench/gateway/run {{ARGS}}

# Run every bench/ benchmark and write bench/REPORT.md (tables, PNG charts in
# bench/report/charts, machine stamp); `--quick` for short windows (smoke test).
# All benchmarks, one report (not in CI).
bench-report *ARGS:
    bench/report/run {{ARGS}}

# Coverage-guided fuzzing (cargo-fuzz, nightly) of token verification, route matching,
# OTLP decoding and the gateway's HTTP/1.1 upstream client, SECONDS each;
# `just fuzz all 60`; `just fuzz --replay` re-runs the inputs kept in fuzz/regressions.
# Not in CI.
# Fuzz one target or all for a bounded time.
fuzz TARGET="all" SECONDS="60":
    fuzz/run {{TARGET}} {{SECONDS}}

# Clone HEAD into a temp dir and run README's two commands there (run until the gateway
# answers the "Try it" session; then the test command unless --skip-tests).
# Check the README's two commands on a clean clone.
newcomer-check *ARGS:
    tools/newcomer-check {{ARGS}}

# tools/chart-check: helm lint, rendering, values schema (wrong values refused), RBAC,
# pod security, the CRD copy against crds/, the example Platform against the CRD.
# Check the Helm chart (lint, render, schema, RBAC, CRD drift, example).
chart-lint:
    tools/chart-check

# `chart-lint` fails until the chart's copy matches crds/platform.yaml.
# Copy the generated CRD into the chart.
chart-crds:
    install -m 0644 crds/platform.yaml charts/tessera/files/crds/platform.yaml

# Static binaries FROM scratch, with podman, docker or buildah; every component that has
# a binary, or the ones named; Linux x86_64 (images/README.md).
# Build the container images.
images *COMPONENTS:
    tools/image-build --archive-dir "$HOME/.cache/tessera/image-archives" {{COMPONENTS}}

# User, entrypoint, labels, 30 MB budget, and its binary run from the image's root
# filesystem; needs root; CI runs it.
# Build one image with buildah and check it.
image-check COMPONENT="identity":
    tools/image-check {{COMPONENT}}

# Developer laptop only (docker or podman, kind, kubectl and the internet; CI and this
# machine have no container engine): creates the cluster of kind-config.yaml, loads
# the images, installs Traefik as the default ingress controller on ports 80/443.
# Create the kind cluster with the images and an ingress controller (laptop).
kind-up: images
    #!/usr/bin/env bash
    set -euo pipefail
    kind get clusters 2>/dev/null | grep -qx tessera || kind create cluster --config kind-config.yaml
    for archive in "$HOME"/.cache/tessera/image-archives/*.tar; do
      kind load image-archive --name tessera "$archive"
    done
    tools/helm upgrade --install traefik traefik --repo https://traefik.github.io/charts \
      --namespace traefik --create-namespace --wait --timeout 5m \
      --set service.type=ClusterIP --set-string nodeSelector.ingress-ready=true \
      --set ports.web.hostPort=80 --set ports.websecure.hostPort=443 \
      --set ingressClass.enabled=true --set ingressClass.isDefaultClass=true

# After `kind-up`: installs the chart, applies the example Platform and waits until it
# is Ready; the gateway is then http://tessera.localhost.
# Install the operator and the example platform on kind (laptop).
kind-install:
    tools/helm upgrade --install tessera charts/tessera --namespace tessera-system --create-namespace --wait --timeout 5m
    kubectl create namespace tessera --dry-run=client -o yaml | kubectl apply -f -
    kubectl -n tessera apply -f charts/tessera/examples/platform.yaml
    kubectl -n tessera wait --for=condition=Ready platform/demo --timeout=10m
    kubectl -n tessera get platform demo -o wide

# Delete the kind cluster.
kind-down:
    kind delete cluster --name tessera

# Regenerate crds/platform.yaml from the operator's types (a test fails when it drifts).
crd:
    cargo run -q -p tessera-operator -- crd > crds/platform.yaml

# What CI runs after .ci/run has installed and started everything.
ci: fmt-check lint test
