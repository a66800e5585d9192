# Strata — the two commands of the quick start are `make run` and `make test`.
SWIFT ?= swift
CONFIG ?= Config/strata.toml

.PHONY: run build release test test-swift test-vm bench check-configs clean

## make run: install what is missing, build release, serve the demo export (Config/strata.toml).
run: release
	.build/release/strata serve --config $(CONFIG)

release:
	@bash scripts/deps.sh run
	$(SWIFT) build -c release --product strata

build:
	@bash scripts/deps.sh run
	$(SWIFT) build --build-tests

## make test: install what the tests need, build, run every test (unit, integration with real
## clients, the Linux kernel client in a VM). Fails on the first failing stage.
test:
	@bash scripts/deps.sh test
	$(SWIFT) build --build-tests
	$(SWIFT) build --product strata
	STRATA_BIN=$(CURDIR)/.build/debug/strata $(SWIFT) test --skip-build
	STRATA_BIN=$(CURDIR)/.build/debug/strata bash Tests/VM/run.sh

test-swift:
	$(SWIFT) build --build-tests
	STRATA_BIN=$(CURDIR)/.build/debug/strata $(SWIFT) test --skip-build

test-vm:
	$(SWIFT) build --product strata
	STRATA_BIN=$(CURDIR)/.build/debug/strata bash Tests/VM/run.sh

bench:
	@bash scripts/deps.sh test
	$(SWIFT) build -c release --product strata
	bash scripts/bench.sh

clean:
	rm -rf .build
