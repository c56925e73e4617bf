# Gatehouse: one command runs a node (make run), one passes the tests (make test).
GO       ?= go
BIN      := bin/gatehouse
DATA_DIR ?= ./data

.PHONY: build run cluster test unit e2e fuzz bench bench-smoke bench-cluster bench-history bench-ratelimit compat vet clean

build:
	$(GO) build -o $(BIN) ./cmd/gatehouse

run: build
	./$(BIN) run --data-dir $(DATA_DIR) --proxy-tls-listen 0.0.0.0:8443

# Three nodes on loopback forming one cluster (ports in the README).
cluster: build
	./$(BIN) cluster up --nodes 3 --data-dir ./cluster-data

# Every test: unit tests, then the end-to-end, conformance and cluster
# suites that start the real binary (each fuzz target replays its corpus
# there), then a short, bounded run of each fuzzer.
test: vet build
	$(GO) test -count=1 -timeout 20m ./...
	$(MAKE) fuzz FUZZTIME=50000x
	$(MAKE) bench-smoke

# Every benchmark once at a small size, so their code keeps working: the
# go test benchmarks (-short) and make bench's scale run.
bench-smoke: build
	$(GO) test -run '^$$' -bench . -benchtime 1x -short ./...
	@command -v wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(GO) run ./scripts/benchscale -smoke -bin $(BIN)

unit:
	$(GO) test -count=1 $$($(GO) list ./... | grep -v /test/)

e2e:
	$(GO) test -count=1 -timeout 20m ./test/...

# Short coverage-guided fuzzing of the parsers and of the proxy's raw
# request path; the committed corpus lives in testdata/. make test bounds
# each run by executions, not time: with a time bound, Go 1.26's fuzz
# coordinator can fail a run with "context deadline exceeded" at the end
# on a loaded machine (golang/go#75804, fixed in Go 1.27).
FUZZTIME ?= 30s
fuzz:
	$(GO) test -run '^$$' -fuzz=FuzzBody -fuzztime=$(FUZZTIME) ./admin/decode/
	$(GO) test -run '^$$' -fuzz=FuzzNormalizePath -fuzztime=$(FUZZTIME) ./proxy/router/
	$(GO) test -run '^$$' -fuzz=FuzzProxyRequest -fuzztime=$(FUZZTIME) ./proxy/
	$(GO) test -run '^$$' -fuzz=FuzzReceive -fuzztime=$(FUZZTIME) ./plugins/ratelimiting/
	$(GO) test -run '^$$' -fuzz=FuzzLoad -fuzztime=$(FUZZTIME) ./fsm/declarative/
	$(GO) test -run '^$$' -fuzz=FuzzJSONFromMsgpack -fuzztime=$(FUZZTIME) ./log/
	$(GO) test -run '^$$' -fuzz=FuzzReadCommands -fuzztime=$(FUZZTIME) ./fsm/

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1)
	$(GO) vet ./...

# Issue 8's table: the proxy against nginx (scripts/bench.sh), the router
# at 100,000 routes, then loading, churn and restart at 100,000 routes and
# 1,000,000 consumers (scripts/benchscale). Results go to docs/bench/results.
bench: build
	$(GO) run ./scripts/benchscale -bin $(BIN) -proxy-bench -json docs/bench/results/$$(date -u +%Y%m%dT%H%M%SZ).json

# Propagation latency and write throughput of a three-node loopback cluster.
bench-cluster: build
	$(GO) run ./scripts/benchcluster -bin $(BIN)

clean:
	rm -rf bin

# History at scale: backup, point-in-time restore and time travel over
# 1,000,000 events and 100,000 entities (see scripts/benchhistory).
# Kong's clients against a fresh node: decK v1.65.1 (built once, cached)
# and go-kong v0.77.0's integration tests. Long; not part of make test.
compat: build
	bash scripts/compat/run.sh

bench-history: build
	$(GO) run ./scripts/benchhistory -bin $(BIN)

# Over-admission of the gossiped cluster rate limit (3 nodes; sync 50,
# 100, 500 ms; balanced and skewed load) and its CPU cost per request
# against the local policy (see scripts/benchratelimit).
bench-ratelimit: build
	@command -v wrk >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq wrk; }
	$(GO) test -run '^$$' -bench 'Take' -benchmem ./plugins/ratelimiting/
	$(GO) run ./scripts/benchratelimit -bin $(BIN)
