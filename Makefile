# mailgate — the targets people and CI run.
CARGO ?= cargo
PYTHON ?= python3
FUZZ_SECS ?= 20

.PHONY: all build test test-rust test-e2e lint fmt fuzz fuzz-smoke bench demo clean

all: build

build:
	$(CARGO) build --workspace --all-targets

# The README's test command: unit + integration tests, then end-to-end tests against
# real Dovecot backends (needs scripts/install-deps.sh once).
test: test-rust test-e2e

test-rust:
	$(CARGO) test --workspace

# Before the e2e tests: the package tests/e2e/test_deb.py installs, this tree's debug
# build packaged (~20 s).
test-e2e:
	$(CARGO) build -p mailgate --bin mailgate
	@if command -v cargo-deb >/dev/null 2>&1; then $(MAKE) --no-print-directory deb DEB_PROFILE=dev; \
	 else echo "make test: cargo-deb missing (scripts/install-deps.sh): the package test will skip"; fi
	$(PYTHON) -m pytest -q tests/e2e

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(PYTHON) scripts/check-modules.py

fmt:
	$(CARGO) fmt --all

# Every fuzz target for FUZZ_SECS seconds (AddressSanitizer, optimised); docs/security.md.
fuzz:
	FUZZ_SECS=$(FUZZ_SECS) scripts/fuzz.sh

# CI: every fuzz target for a few seconds (no sanitizer, unoptimised build).
fuzz-smoke:
	scripts/fuzz.sh --smoke

bench:
	scripts/bench.sh

# The attack benchmark: real Dovecot, 100 clients vs slowloris, non-readers and an HTTP flood
# (docs/security.md, "Attack benchmark"; ports from 23000, apart from bench's 21000).
.PHONY: bench-attack
bench-attack:
	scripts/bench-attack.sh

# mailgate next to nginx's mail proxy (1 worker) and HAProxy TCP (1 thread) in front of the
# same fake backend: CPU and RSS per operation from /proc, one table (docs/performance.md;
# installs nginx + libnginx-mod-mail + haproxy if missing; ports from 24000).
.PHONY: bench-peers
bench-peers:
	scripts/bench-peers.sh

# Debian package (cargo-deb, installed by scripts/install-deps.sh):
# target/debian/mailgate_<version>-1_<arch>.deb with the release binary, the systemd unit
# (binary path /usr/bin), sysusers, a commented /etc/mailgate, man pages and completions
# generated from the CLI. tests/e2e/test_deb.py installs the result (CI runs make deb first).
# DEB_PROFILE=dev packages the debug build instead (CI: the package test then shares the
# build make test uses, instead of a release build of its own).
DEB_PROFILE ?= release
DEB_BIN_DIR := $(or $(CARGO_TARGET_DIR),target)/$(if $(filter dev,$(DEB_PROFILE)),debug,$(DEB_PROFILE))
DEB_STAGE := $(DEB_BIN_DIR)/deb
.PHONY: deb
deb:
	@command -v cargo-deb >/dev/null 2>&1 || { echo "make deb: cargo-deb is missing: run scripts/install-deps.sh (or cargo install cargo-deb --locked)" >&2; exit 1; }
	$(if $(filter release,$(DEB_PROFILE)),MAILGATE_GIT_COMMIT=$$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)) \
	    $(CARGO) build --profile $(DEB_PROFILE) --locked -p mailgate --bin mailgate
	rm -rf $(DEB_STAGE) && mkdir -p $(DEB_STAGE)
	$(DEB_BIN_DIR)/mailgate assets --out $(DEB_STAGE) >/dev/null
	gzip -9n $(DEB_STAGE)/man/*.1
	sed -e 's#/usr/local/bin/mailgate#/usr/bin/mailgate#g' \
	    -e '1i # Installed by the mailgate Debian package (make deb; deploy/systemd/mailgate.service).' \
	    deploy/systemd/mailgate.service > $(DEB_STAGE)/mailgate.service
	$(CARGO) deb -p mailgate --no-build --profile $(DEB_PROFILE)

# Demo: real Dovecot backends from examples/ plus mailgate in front of them.
demo:
	scripts/demo.sh

clean:
	$(CARGO) clean
