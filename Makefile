# kms-jwt developer entry points. Every target installs what it needs (Python venv with
# LocalStack and cargo-lambda from tools/requirements.lock) and stops what it starts.
SHELL := /bin/bash
.DEFAULT_GOAL := help

.PHONY: help demo test test-unit bench lint lint-infra msrv deny fuzz localstack-up localstack-down python-env

help: ## List targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

demo: ## The main job: LocalStack up, functions under cargo lambda watch, rotate, sign, fetch JWKS over HTTP, verify, rotate again
	@scripts/demo.sh

test: ## Every test: lint, unit and simulation tests, LocalStack integration and end-to-end tests
	@scripts/test.sh

test-unit: ## Fast tests only (no LocalStack): unit tests, the twin suites (simulation, multi-region, authorization, notifications), the CDN invalidation through the fault proxy, doc links
	cargo test --workspace --lib --bins
	cargo test -p kms-jwt-tests --test twins --test cloudfront_invalidation --test docs_links

bench: ## Every benchmark of BENCHMARKS.md: release artifacts, Criterion, and kms-jwt-bench against LocalStack
	@scripts/bench.sh

lint: ## cargo fmt --check and clippy -D warnings
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

msrv: ## Check rust-version against the locked dependencies, then build with that toolchain
	@scripts/check-msrv.sh

deny: ## cargo deny check licenses bans sources (deny.toml; installs the pinned cargo-deny)
	@scripts/deny.sh

fuzz: ## Every cargo fuzz target for FUZZ_SECONDS (30) each; `make fuzz FUZZ_SECONDS=600` for longer
	@scripts/fuzz.sh

lint-infra: ## cfn-lint, checkov and the IAM assertions on infra/template.yaml
	@scripts/lint-infra.sh

python-env: ## Create .venv from the lock file
	@scripts/python-env.sh

localstack-up: ## Start LocalStack natively on 127.0.0.1:4566
	@scripts/localstack.sh start

localstack-down: ## Stop the LocalStack this project started
	@scripts/localstack.sh stop
