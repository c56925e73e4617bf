# Gatehouse: one command runs a node (make run), one passes the tests (make test).
GO       ?= go
BIN      := bin/gatehouse
DATA_DIR ?= ./data

.PHONY: build run cluster test unit e2e fuzz bench bench-cluster vet clean

build:
	$(GO) build -o $(BIN) ./cmd/gatehouse

run: build
	./$(BIN) run --data-dir $(DATA_DIR)

# Three nodes on loopback forming one cluster (ports in the README).
cluster: build
	./$(BIN) cluster up --nodes 3 --data-dir ./cluster-data

# Every test: unit tests, then the end-to-end and conformance suites that
# start the real binary. Each fuzz target also replays its corpus here.
test: vet
	$(GO) test -count=1 -timeout 20m ./...

unit:
	$(GO) test -count=1 $$($(GO) list ./... | grep -v /test/)

e2e:
	$(GO) test -count=1 -timeout 20m ./test/...

# Short coverage-guided fuzzing of the parsers; the corpus lives in testdata/.
fuzz:
	$(GO) test -run '^$$' -fuzz=FuzzBody -fuzztime=30s ./admin/decode/
	$(GO) test -run '^$$' -fuzz=FuzzNormalizePath -fuzztime=30s ./proxy/router/

vet:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1)
	$(GO) vet ./...

bench: build
	bash scripts/bench.sh

# Propagation latency and write throughput of a three-node loopback cluster.
bench-cluster: build
	$(GO) run ./scripts/benchcluster -bin $(BIN)

clean:
	rm -rf bin
