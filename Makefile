# The two commands of the README: `make demo` runs a local hub, `make test` runs every test.
# Both install what is missing (ops/scripts/setup.sh) and share one cargo target directory
# outside the clone, so RocksDB's C++ build (~13 min on 2 cores) happens once per machine.

export CARGO_TARGET_DIR ?= $(HOME)/.cache/kizuna/target
CARGO ?= cargo

.PHONY: demo demo-federation test chaos chaos-federated setup setup-browser screenshots build lint lint-proto fmt clean-demo

# buf (the protobuf linter) from the npm registry, installed once per machine next to the build.
BUF_VERSION ?= 1.75.0
BUF_DIR ?= $(HOME)/.cache/kizuna/buf-$(BUF_VERSION)
BUF = $(BUF_DIR)/node_modules/.bin/buf

setup:
	@bash ops/scripts/setup.sh

# Only for the real-browser test (node/tests/browser.rs): Debian's chromium, the Noto CJK fonts
# and node/web's npm packages (playwright-core). `make demo` does not need them.
setup-browser:
	@bash ops/scripts/setup-browser.sh

build: setup
	$(CARGO) build --workspace --all-targets

## Run the local 3-region demo hub (Ctrl-C to stop). Data lives in ./data/demo.
# Builds with --workspace like `make test`: selecting crates with -p changes which features
# cargo unifies, so it would rebuild dependencies (RocksDB's C++ among them) into the shared
# target directory instead of reusing what the tests built.
demo: setup
	$(CARGO) build --workspace
	$(CARGO_TARGET_DIR)/debug/kizuna demo --data-dir data/demo

## Two federated hubs, Tochigi and Gunma, in one process (Ctrl-C to stop). Data in ./data/federation-demo.
demo-federation: setup
	$(CARGO) build --workspace
	$(CARGO_TARGET_DIR)/debug/kizuna demo --federation --data-dir data/federation-demo

## Run every test: the proto linter, unit, storage suite, in-process hub integration tests, and
## the browser client in a real browser (node/tests/browser.rs).
test: setup setup-browser lint-proto
	$(CARGO) build --workspace --all-targets
	$(CARGO) test --workspace --no-fail-fast

## Regenerate the README's screenshots (docs/screenshots/*.png) with the browser test.
screenshots: setup setup-browser
	bash ops/scripts/screenshots.sh

## Lint the gRPC contracts with buf (rules and remaining exceptions in proto/buf.yaml).
lint-proto: setup
	@test -x $(BUF) || npm install --silent --no-audit --no-fund --prefix $(BUF_DIR) @bufbuild/buf@$(BUF_VERSION)
	cd proto && $(BUF) lint

## A longer chaos soak against real processes, e.g.
##   make chaos SCENARIO=mix SECONDS=300 SEED=1
##   make chaos SCENARIO=membership,rolling-restart,partition TOPOLOGY=tochigi CLIENTS=16
SCENARIO ?= mix
TOPOLOGY ?= three-region
SECONDS ?= 120
SEED ?= 1
CLIENTS ?= 8
# --workspace builds both binaries the run needs (the harness starts real `kizuna` processes)
# and reuses the tests' build, as for `make demo`.
chaos: setup
	$(CARGO) build --workspace
	$(CARGO_TARGET_DIR)/debug/kizuna-chaos --scenario $(SCENARIO) --topology $(TOPOLOGY) --seconds $(SECONDS) \
		--seed $(SEED) --clients $(CLIENTS) --report chaos-report.json

## The two-hub chaos run (Tochigi and Gunma, hub↔hub link faults), e.g.
##   make chaos-federated HUB_FAULT=hub-partition,leader-kill,hub-one-way SECONDS=120
HUB_FAULT ?= mix
chaos-federated: setup
	$(CARGO) build --workspace
	$(CARGO_TARGET_DIR)/debug/kizuna-chaos --federated --hub-fault $(HUB_FAULT) --seconds $(SECONDS) \
		--seed $(SEED) --clients $(CLIENTS) --rooms 4 --report chaos-federated-report.json

lint: setup lint-proto
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean-demo:
	rm -rf data/demo data/federation-demo
