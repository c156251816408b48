# The two commands of the README: `make demo` runs a local hub, `make test` runs every test.
# Both install what is missing (ops/scripts/setup.sh) and share one cargo target directory
# outside the clone, so RocksDB's C++ build (~13 min on 2 cores) happens once per machine.

export CARGO_TARGET_DIR ?= $(HOME)/.cache/kizuna/target
CARGO ?= cargo

.PHONY: demo demo-federation test chaos chaos-federated setup setup-browser setup-smtp setup-prometheus setup-etcd bench lint-ops screenshots build web lint lint-proto fmt clean-demo

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

## aiosmtpd (PyPI) in a venv, for the notification test's real SMTP server.
setup-smtp:
	@bash ops/scripts/setup-smtp.sh

build: setup web
	$(CARGO) build --workspace --all-targets

# npm ci only when package-lock.json changed since the last install (npm rewrites
# node_modules/.package-lock.json on every install).
WEB_INSTALLED = node/web/node_modules/.package-lock.json
$(WEB_INSTALLED): node/web/package-lock.json
	cd node/web && npm ci --no-audit --no-fund

# Rebuilt only when a source changed: a new dist makes cargo rebuild the server and everything
# above it. Sources: the client's own (not src/gen, which the build writes) and the protos.
WEB_BUNDLE = node/web/dist/index.html
WEB_SOURCES = $(shell find node/web/src -path node/web/src/gen -prune -o -type f -print) \
	$(wildcard node/web/*.json node/web/*.mjs node/web/*.yaml) $(shell find proto/kizuna -name '*.proto')
$(WEB_BUNDLE): $(WEB_INSTALLED) $(WEB_SOURCES)
	cd node/web && npm run build

## The browser client (node/web/dist). The server's build script embeds it into the kizuna
## binary, so every target that compiles the server needs it first.
web: setup $(WEB_BUNDLE)

## Run the local 3-region demo hub (Ctrl-C to stop). Data lives in ./data/demo.
# Builds with --workspace like `make test`: selecting crates with -p changes which features
# cargo unifies, so it would rebuild dependencies (RocksDB's C++ among them) into the shared
# target directory instead of reusing what the tests built.
demo: setup web
	$(CARGO) build --workspace
	$(CARGO_TARGET_DIR)/debug/kizuna demo --data-dir data/demo

## Two federated hubs, Tochigi and Gunma, in one process (Ctrl-C to stop). Data in ./data/federation-demo.
demo-federation: setup web
	$(CARGO) build --workspace
	$(CARGO_TARGET_DIR)/debug/kizuna demo --federation --data-dir data/federation-demo

## Run every test: the proto linter, unit, storage suite, in-process hub integration tests, and
## the browser client in a real browser (node/tests/browser.rs).
test: setup setup-browser setup-smtp setup-prometheus setup-etcd web lint-proto lint-ops
	$(CARGO) build --workspace --all-targets
	$(CARGO) test --workspace --no-fail-fast

## Regenerate the README's screenshots (docs/screenshots/*.png) with the browser test.
screenshots: setup setup-browser web
	bash ops/scripts/screenshots.sh

## The side-by-side with etcd (docs/benchmarks.md): a release build, Debian's etcd, 3 members
## of each on loopback, 1/64/256 clients in alternating rounds (~10 min); the table, then plots.
bench: setup setup-etcd web
	$(CARGO) build --release --workspace
	rm -rf bench-results/etcd # the medians and plots are of this run's files only
	bash ops/scripts/bench-etcd.sh $(CARGO_TARGET_DIR)/release/kizuna bench-results/etcd
	bash ops/scripts/bench-plots.sh bench-results/etcd docs/plots

## Debian's etcd (etcd-server), for the side-by-side (make bench) and the test of its load loop.
setup-etcd:
	@bash ops/scripts/setup-etcd.sh

## Debian's Prometheus (server and promtool), for the metrics test and the alert rules' check.
setup-prometheus:
	@bash ops/scripts/setup-prometheus.sh

## Check the alert rules (and their unit tests) and the example scrape configuration.
lint-ops: setup-prometheus
	cd ops/prometheus && promtool check config prometheus.yml && promtool test rules alerts_test.yml

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
chaos: setup web
	$(CARGO) build --workspace
	$(CARGO_TARGET_DIR)/debug/kizuna-chaos --scenario $(SCENARIO) --topology $(TOPOLOGY) --seconds $(SECONDS) \
		--seed $(SEED) --clients $(CLIENTS) --report chaos-report.json

## The two-hub chaos run (Tochigi and Gunma, hub↔hub link faults), e.g.
##   make chaos-federated HUB_FAULT=hub-partition,leader-kill,hub-one-way SECONDS=120
HUB_FAULT ?= mix
chaos-federated: setup web
	$(CARGO) build --workspace
	$(CARGO_TARGET_DIR)/debug/kizuna-chaos --federated --hub-fault $(HUB_FAULT) --seconds $(SECONDS) \
		--seed $(SEED) --clients $(CLIENTS) --rooms 4 --report chaos-federated-report.json

lint: setup web lint-proto
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

clean-demo:
	rm -rf data/demo data/federation-demo
