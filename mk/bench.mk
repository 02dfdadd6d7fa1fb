# Benchmarks: SPEC §7's performance promises against baselines taken in the same run. Included
# by the Makefile. scripts/bench.sh runs its own PostgreSQL and AWS emulator (.local/bench, ports
# BENCH_PG_PORT and BENCH_AWS_PORT), never those of `make dev` or `make test`.

.PHONY: bench

bench: ## measure the performance promises (release builds, own services; BENCH_STRICT=1 fails on a miss)
	@scripts/bench.sh
