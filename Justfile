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

# Check formatting.
fmt-check:
    cargo fmt --all -- --check

# Format the code.
fmt:
    cargo fmt --all

# Clippy over every crate and target, warnings are errors.
lint:
    cargo clippy --workspace --all-targets --locked -- -D warnings

# Run every test against the real servers `just services` started.
test *ARGS:
    eval "$(tools/services env)" && cargo test --workspace --locked {{ARGS}}

# Benchmark identity (tokens/s, logins/s, JWKS) beside the limits; prints tables.
bench-identity *ARGS:
    eval "$(tools/services env)" && cargo run --release -p tessera-bench-identity -- --postgres-url "$TESSERA_TEST_POSTGRES_URL" {{ARGS}}

# Benchmark the gateway beside the upstream, nginx and HAProxy (installs wrk, nginx,
# haproxy from Debian); prints one table.
bench-gateway *ARGS:
    bench/gateway/run {{ARGS}}

# What CI runs after .ci/run has installed and started everything.
ci: fmt-check lint test
