# Strata — the two commands of the quick start are `make run` and `make test`.
SWIFT ?= swift
CONFIG ?= Config/strata.toml
# make install: PREFIX for the binary and docs, SYSCONFDIR for the configuration, UNITDIR for
# the systemd unit; DESTDIR stages everything below another root (packaging).
PREFIX ?= /usr/local
SYSCONFDIR ?= /etc
UNITDIR ?= /etc/systemd/system
DESTDIR ?=

.PHONY: run build release test test-swift test-vm bench check-configs clean install install-files uninstall format lint

## make run: install what is missing, build release, serve the demo export (Config/strata.toml).
run: release
	.build/release/strata serve --config $(CONFIG)

release:
	@bash scripts/deps.sh run
	$(SWIFT) build -c release --product strata

build:
	@bash scripts/deps.sh run
	$(SWIFT) build --build-tests

## make test: install what the tests need, check the house style (make lint), build, run every
## test (unit, integration with real clients, the Linux kernel client in a VM). Fails on the first
## failing stage.
test:
	@bash scripts/deps.sh test
	$(SWIFT) format lint --strict --parallel --recursive $(FORMATTED)
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

## make bench (as root): Strata against nfs-ganesha (plain directory, overlayfs, and a durable pair:
## ganesha on a journaled ext4 with dirsync, so its replies wait for the disk as Strata's do) on the
## same data in a private network namespace, measured by `strata bench`; prints one table.
## make format: rewrite the Swift sources in the house style (.swift-format: 4 spaces, 120 columns,
## ordered imports); make lint: report what differs, changing nothing (swift-format ships with
## the toolchain as `swift format`).
FORMATTED = Package.swift Sources Tests
format:
	$(SWIFT) format format --in-place --parallel --recursive $(FORMATTED)

lint:
	$(SWIFT) format lint --strict --parallel --recursive $(FORMATTED)

bench:
	@bash scripts/deps.sh bench
	$(SWIFT) build -c release --product strata
	STRATA_BIN=$(CURDIR)/.build/release/strata bash scripts/bench.sh

## make install: the release binary, the systemd unit (its ExecStartPre runs check-config), the
## example configuration as $(SYSCONFDIR)/strata/strata.toml (never over an existing one), and
## the docs (README, Docs/, every example configuration, the --help of each command).
## install-files installs an already built BIN (default the release build) the same way.
BIN ?= .build/release/strata
install: release install-files

install-files:
	install -D -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/strata
	install -d -m 0755 $(DESTDIR)$(UNITDIR)
	sed -e 's|/usr/local/bin/strata|$(PREFIX)/bin/strata|g' -e 's|/etc/strata/|$(SYSCONFDIR)/strata/|g' \
		-e 's|/usr/share/doc/strata/|$(PREFIX)/share/doc/strata/|g' Config/strata.service > $(DESTDIR)$(UNITDIR)/strata.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/strata.service
	install -d -m 0755 $(DESTDIR)$(SYSCONFDIR)/strata
	test -e $(DESTDIR)$(SYSCONFDIR)/strata/strata.toml || install -m 0644 Config/installed.toml $(DESTDIR)$(SYSCONFDIR)/strata/strata.toml
	install -d -m 0755 $(DESTDIR)$(PREFIX)/share/doc/strata/examples
	install -m 0644 README.md $(DESTDIR)$(PREFIX)/share/doc/strata/README.md
	install -m 0644 Config/diskless.toml Config/readonly-mirror.toml Config/installed.toml $(DESTDIR)$(PREFIX)/share/doc/strata/examples/
	if [ -d Docs ]; then cp -R Docs $(DESTDIR)$(PREFIX)/share/doc/strata/; fi
	for command in serve check-config reload exports clients "client reset" "layer inspect" "layer promote"; do \
		echo "== strata $$command =="; $(BIN) $$command --help; echo; \
	done > $(DESTDIR)$(PREFIX)/share/doc/strata/commands.txt
	@echo "installed; edit $(SYSCONFDIR)/strata/strata.toml, then: systemctl daemon-reload && systemctl enable --now strata"

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/strata $(DESTDIR)$(UNITDIR)/strata.service
	rm -rf $(DESTDIR)$(PREFIX)/share/doc/strata
	@echo "kept $(SYSCONFDIR)/strata/ and the state directory"

clean:
	rm -rf .build
