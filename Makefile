# dptun: `make demo` and `make test` work as the first command on a fresh Debian 12 machine (as root).
SHELL := /bin/bash
BUILD ?= build
ASAN_BUILD ?= build-san
TSAN_BUILD ?= build-tsan
FUZZ_SECONDS ?= 60

# Meson puts ccache in front of the compiler it finds by itself, not of one named in CC/CXX: the clang builds name it
# themselves where it is installed (scripts/install-deps.sh installs it; nothing changes without it). Expanded when a
# recipe runs, so after `deps` has installed it.
CLANG_CC = $(shell command -v ccache > /dev/null 2>&1 && echo 'ccache ')clang-14
CLANG_CXX = $(shell command -v ccache > /dev/null 2>&1 && echo 'ccache ')clang++-14

PREFIX ?= /usr/local
SYSTEMD_DIR ?= /etc/systemd/system

.PHONY: all deps test unit asan e2e demo bench fuzz tsan tsan-build install clean

all: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

deps:
	@bash scripts/install-deps.sh

$(BUILD)/build.ninja:
	meson setup $(BUILD)

# One sanitizer build (clang-14, ASan+UBSan, libFuzzer's coverage) serves the unit tests and the fuzz corpus replay
# under the sanitizers (make test) and the libFuzzer harnesses (make fuzz): the libraries are compiled once for both.
$(ASAN_BUILD)/build.ninja:
	CC="$(CLANG_CC)" CXX="$(CLANG_CXX)" meson setup $(ASAN_BUILD) -Dprograms=false -Dfuzz=true \
	  -Db_sanitize=address,undefined -Db_lundef=false -Dbuildtype=debug

# Unit tests (also under ASan+UBSan, one at a time there: data-path tests whose housekeeping and QUIC timers follow
# the clock failed when two slow ASan tests shared the 2 cores), then the end-to-end tests in network namespaces
# (test_direct_paths runs its two-thread agent from the ThreadSanitizer build), then dpagent's threads under
# ThreadSanitizer (make tsan).
test: all asan tsan-build
	bash tests/scripts/test_install_deps.sh
	bash tests/scripts/test_install.sh
	bash tests/scripts/test_docs.sh
	bash tests/scripts/test_datapath_headers.sh
	meson test -C $(BUILD) --suite unit --print-errorlogs
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 meson test -C $(ASAN_BUILD) --suite unit --print-errorlogs --num-processes 1
	meson test -C $(BUILD) --suite fuzz --print-errorlogs
	UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 meson test -C $(ASAN_BUILD) --suite fuzz --print-errorlogs
	DIRECT_PATHS_TSAN=$(abspath $(TSAN_BUILD)) BUILD=$(abspath $(BUILD)) bash tests/e2e/run.sh
	DPAGENT_TSAN=$(abspath $(TSAN_BUILD)) BUILD=$(abspath $(BUILD)) bash tests/e2e/test_agent_threads.sh

unit: all
	meson test -C $(BUILD) --suite unit --print-errorlogs

asan: deps $(ASAN_BUILD)/build.ninja
	ninja -C $(ASAN_BUILD)

e2e: all
	BUILD=$(abspath $(BUILD)) bash tests/e2e/run.sh

demo: all
	BUILD=$(abspath $(BUILD)) bash scripts/demo.sh

bench: all
	BUILD=$(abspath $(BUILD)) bash bench/run.sh

# libFuzzer (clang, ASan+UBSan, in the sanitizer build): every harness of fuzz/ for FUZZ_SECONDS each; FUZZERS="a b" picks harnesses,
# FUZZ_MERGE=1 keeps new inputs in fuzz/corpus/ (docs/testing.md, "Fuzzing").
fuzz: deps $(ASAN_BUILD)/build.ninja
	ninja -C $(ASAN_BUILD) fuzzers
	FUZZ_BUILD=$(abspath $(ASAN_BUILD)) FUZZ_SECONDS=$(FUZZ_SECONDS) bash fuzz/run.sh

# dpagent built with ThreadSanitizer (clang, only dpagent: about a minute) and driven through
# tests/e2e/test_agent_threads.sh (two data-path threads, TCP both ways, a rekey and re-registrations under traffic,
# ~30 s); any report fails it (docs/testing.md).
tsan: all tsan-build
	DPAGENT_TSAN=$(abspath $(TSAN_BUILD)) BUILD=$(abspath $(BUILD)) bash tests/e2e/test_agent_threads.sh

tsan-build: deps $(TSAN_BUILD)/build.ninja
	ninja -C $(TSAN_BUILD) agent/dpagent

$(TSAN_BUILD)/build.ninja:
	CC="$(CLANG_CC)" CXX="$(CLANG_CXX)" meson setup $(TSAN_BUILD) -Dtests=false -Db_sanitize=thread -Db_lundef=false \
	  -Dbuildtype=debugoptimized -Dwerror=false

# Programs in $(PREFIX)/bin (dpgw, dpctld, dpctl, dpagent, dptun-pki), the sample configs in /etc/dptun (never
# over an existing file), systemd units in $(SYSTEMD_DIR), docs in $(PREFIX)/share/doc/dptun. DESTDIR stages it
# elsewhere (packaging, tests/scripts/test_install.sh).
install: all
	meson configure $(BUILD) -Dprefix=$(PREFIX) > /dev/null
	meson install -C $(BUILD) --destdir "$(DESTDIR)" --quiet
	install -D -m 755 scripts/dptun-pki "$(DESTDIR)$(PREFIX)/bin/dptun-pki"
	install -D -m 755 scripts/hugepages.sh "$(DESTDIR)$(PREFIX)/lib/dptun/hugepages.sh"
	install -d -m 750 "$(DESTDIR)/etc/dptun"
	for f in dptun.conf dpctld.conf; do \
	  [ -e "$(DESTDIR)/etc/dptun/$$f" ] || install -m 640 "conf/$$f" "$(DESTDIR)/etc/dptun/$$f"; done
	install -d "$(DESTDIR)$(SYSTEMD_DIR)" "$(DESTDIR)$(PREFIX)/share/doc/dptun"
	for u in systemd/*.service; do \
	  sed 's|/usr/local/|$(PREFIX)/|g' "$$u" > "$(DESTDIR)$(SYSTEMD_DIR)/$$(basename "$$u")"; done
	install -m 644 README.md docs/*.md "$(DESTDIR)$(PREFIX)/share/doc/dptun/"
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
	@echo "installed: $(PREFIX)/bin/{dpgw,dpctld,dpctl,dpagent,dptun-pki}, /etc/dptun, $(SYSTEMD_DIR)/{dpgw,dpctld,dpagent@}.service"

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) build-asan build-fuzz
