# TMS — run `make help` for the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

include mk/infra.mk
include mk/bench.mk

.PHONY: help dev demo load emulator-check bootstrap clean-dev test services stop-services lint fmt clippy

help: ## list the targets
	@grep -hE '^[a-z][a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

dev: ## run the whole system locally (PostgreSQL, AWS emulator, API, workers, schedules); Ctrl-C stops it
	@scripts/dev.sh

demo: ## walk through every flow against the running stack (starts it if needed) and print the outcome
	@scripts/demo.sh

load: ## drive LOAD_API creates, a LOAD_ROWS import and LOAD_QUEUE submissions through the stack; fails if any task is lost or runs twice. SCENARIO=fairness: FAIR_BIG tasks of one tenant, then FAIR_SMALL of another, both tenants' latency
	@scripts/demo.sh load

emulator-check: ## fill a fresh emulator queue with BACKLOG messages (default 100,000) and time receive + delete against it; fails over 50 ms median
	@scripts/emulator-check.sh

bootstrap: ## run the database bootstrapper against the local stack again (changes nothing)
	@cargo build --quiet -p tms-local
	@target/debug/tms-local bootstrap

clean-dev: ## stop the local services and delete their state (.local/ except the Python environments)
	@scripts/aws-emulator.sh stop
	@scripts/postgres.sh stop
	rm -rf .local/pg .local/aws .local/dev.env .local/dev.log

test: ## run the whole test suite (starts and stops PostgreSQL and the AWS emulator)
	@scripts/test.sh

services: ## start the local PostgreSQL cluster and the AWS emulator (reused when running)
	@scripts/postgres.sh start >/dev/null
	@scripts/aws-emulator.sh start >/dev/null
	@echo "PostgreSQL on 127.0.0.1:$${TMS_PG_PORT:-55432}, AWS emulator on 127.0.0.1:$${TMS_AWS_PORT:-4566}"

stop-services: ## stop the local PostgreSQL cluster and the AWS emulator
	@scripts/aws-emulator.sh stop
	@scripts/postgres.sh stop

fmt: ## format the Rust code
	cargo fmt --all

clippy: ## lint the Rust code
	cargo clippy --workspace --all-targets -- -D warnings

lint: ## every static check: rustfmt, clippy, and the infrastructure lint
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	@$(MAKE) --no-print-directory lint-infra
