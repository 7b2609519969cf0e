# Clover's developer entry points. `make help` lists them.
SHELL := /bin/bash
GO ?= go
BIN := bin/clover
PKGS := ./...
# Integration tests start real processes; the race detector makes them slower but keeps them honest.
TEST_FLAGS ?= -race -count=1 -timeout 40m

.PHONY: help deps build run test test-short bench bench-compare lint fmt tidy-check fuzz deb deb-test clean

# bench and bench-compare: extra clover-bench flags (e.g. -quick); bench-compare's older commit and scenarios.
BENCH_FLAGS ?=
OLD ?= acd91ff
SCENARIOS ?= overload,gofunc

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

deps: ## install ZooKeeper, libzmq (apt) and build FerretDB, idempotently
	@scripts/deps.sh

build: deps ## build bin/clover (and bin/clover-tagged, the example client that declares jobs in code)
	$(GO) build -o $(BIN) ./cmd/clover
	$(GO) build -o bin/clover-tagged ./examples/tagged

run: build ## run a local cluster: ZooKeeper (ZK=3: an ensemble), FerretDB, 2 servers, 2 clients, example jobs (Ctrl-C stops it)
	@scripts/run.sh

test: deps ## vet, then every test with -race against real ZooKeeper, FerretDB and ZeroMQ
	$(GO) vet $(PKGS)
	$(GO) test $(TEST_FLAGS) $(PKGS)
	# the store's tests again, on the partitioned open set (docs/design.md, record 19)
	CLOVER_TEST_OPEN_SET=partitioned $(GO) test $(TEST_FLAGS) ./internal/store

test-short: deps ## unit tests only (no cluster tests)
	$(GO) test -race -short -count=1 $(PKGS)

bench: build ## the machine's ceilings first, then the cluster load driver and Go benchmarks (tables; figures, not pass/fail)
	$(GO) run ./cmd/clover-bench -binary $(BIN) $(BENCH_FLAGS)
	$(GO) test -run '^$$' -bench . -benchtime 2s ./internal/wire/ ./internal/schedule/ ./internal/store/ ./internal/transport/ ./internal/workflow/

# The old commit is built in a temporary worktree (removed on exit) and runs insecure: acd91ff predates keys.
bench-compare: build ## ceilings, then SCENARIOS against OLD's clover (default acd91ff) and this tree's, side by side
	@set -e; tmp=$$(mktemp -d /tmp/clover-old-XXXXXX); \
	trap 'git worktree remove --force "$$tmp/src" >/dev/null 2>&1 || true; rm -rf "$$tmp"' EXIT; trap 'exit 130' INT TERM; \
	git worktree add --detach "$$tmp/src" $(OLD) >/dev/null; \
	echo "building clover at $(OLD) in $$tmp/src"; \
	(cd "$$tmp/src" && $(GO) build -o "$$tmp/clover" ./cmd/clover); \
	$(GO) run ./cmd/clover-bench -scenario $(SCENARIOS) -binary $(BIN) -old "$$tmp/clover" \
	  -old-label "$$(git rev-parse --short $(OLD))" $(BENCH_FLAGS)

fuzz: ## run each fuzz target for 30s
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime 30s ./internal/wire/
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime 30s ./internal/schedule/
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime 30s ./internal/registry/
	$(GO) test -run '^$$' -fuzz FuzzDecodeSpec -fuzztime 30s ./server/
	$(GO) test -run '^$$' -fuzz FuzzLoad -fuzztime 30s -fuzzminimizetime 5s ./spring-like-config/
	$(GO) test -run '^$$' -fuzz FuzzOpenSpool -fuzztime 30s ./internal/fallback/

lint: ## go vet, gofmt check, go mod tidy check
	$(GO) vet $(PKGS)
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@$(MAKE) --no-print-directory tidy-check

fmt: ## gofmt the tree
	gofmt -w .

tidy-check: ## fail if go.mod/go.sum are not tidy
	@cp go.mod /tmp/clover.go.mod.bak; cp go.sum /tmp/clover.go.sum.bak; \
	$(GO) mod tidy; \
	if ! diff -q go.mod /tmp/clover.go.mod.bak >/dev/null || ! diff -q go.sum /tmp/clover.go.sum.bak >/dev/null; then \
	  cp /tmp/clover.go.mod.bak go.mod; cp /tmp/clover.go.sum.bak go.sum; echo "go.mod/go.sum not tidy: run go mod tidy"; exit 1; fi

deb: deps ## build dist/clover_<version>_<arch>.deb: the binary, systemd units, /etc/clover defaults, key generation on first install
	@scripts/deb.sh

deb-test: deps ## build the package, install it on this machine (root), check files, user, keys and units, remove and purge it
	@scripts/deb-test.sh

clean: ## remove build output and the local run folder
	rm -rf bin run dist
