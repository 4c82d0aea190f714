# kvstore build: `make` builds bin/, `make test` runs every suite, `make demo`
# runs the tour.  Objects go to build/; a change of flags rebuilds everything.

PREFIX   ?= /usr/local
BINDIR   ?= $(PREFIX)/bin
MANDIR   ?= $(PREFIX)/share/man
CC       ?= cc
CFLAGS   ?= -O2 -g
SANITIZE ?=
VERSION  := 0.1.0

PKGS     := libzmq libsodium msgpack jansson zlib
# Warnings and language level come after the user's CFLAGS so they cannot be
# dropped by overriding CFLAGS.
WARN     := -Wall -Wextra -Wshadow -Wformat=2 -Wno-unused-parameter -Werror
ALL_CFLAGS = $(CFLAGS) -std=c11 -D_GNU_SOURCE -DKV_VERSION=\"$(VERSION)\" \
	$(WARN) -Icommon $(shell pkg-config --cflags $(PKGS) 2>/dev/null) \
	$(if $(SANITIZE),-fsanitize=$(SANITIZE) -fno-omit-frame-pointer)
ALL_LDFLAGS = $(LDFLAGS) $(if $(SANITIZE),-fsanitize=$(SANITIZE))
LIBS     = $(shell pkg-config --libs $(PKGS) 2>/dev/null) -lm

PROGRAMS := kvnode kvquery kvbench kvroute kvrepl
COMMON_SRC := $(wildcard common/*.c)
COMMON_OBJ := $(COMMON_SRC:%.c=build/%.o)
# Each program is cmd/NAME/main.c plus the other files of cmd/NAME/.
parts = $(patsubst %.c,build/%.o,$(filter-out cmd/$(1)/main.c,$(wildcard cmd/$(1)/*.c)))
MANPAGES := $(wildcard man/*.[1-9])
# test tools: every tests/tools/NAME.c becomes build/tests/NAME
TOOLS    := bin/kvselftest $(patsubst tests/tools/%.c,build/tests/%,$(wildcard tests/tools/*.c))

all: $(addprefix bin/,$(PROGRAMS))

# Rebuild everything when the compiler flags change (e.g. SANITIZE=...).
FLAGSTAMP := build/.flags
$(shell mkdir -p build; echo '$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS)' | cmp -s - $(FLAGSTAMP) || \
	echo '$(CC) $(ALL_CFLAGS) $(ALL_LDFLAGS)' > $(FLAGSTAMP))

build/%.o: %.c $(FLAGSTAMP)
	@mkdir -p $(dir $@)
	@echo "CC $<"
	@$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

build/libkv.a: $(COMMON_OBJ)
	rm -f $@; ar rcs $@ $^

define program
bin/$(1): build/cmd/$(1)/main.o $(call parts,$(1)) build/libkv.a
	@mkdir -p bin
	@echo "LD $$@"
	@$$(CC) $$(ALL_LDFLAGS) -o $$@ $$^ $$(LIBS)
endef
$(foreach p,$(PROGRAMS),$(eval $(call program,$(p))))

bin/kvselftest: build/tests/unit/selftest.o $(foreach p,$(PROGRAMS),$(call parts,$(p))) build/libkv.a
	@mkdir -p bin
	@echo "LD $@"
	@$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

build/tests/%: build/tests/tools/%.o build/libkv.a
	@echo "LD $@"
	@$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

build/tests/zmq_echo: build/tests/bench/zmq_echo.o
	@echo "LD $@"
	@$(CC) $(ALL_LDFLAGS) -o $@ $^ $(LIBS)

build/tests/redis_wait: build/tests/bench/redis_wait.o
	@echo "LD $@"
	@$(CC) $(ALL_LDFLAGS) -o $@ $^ -lpthread

-include $(shell find build -name '*.d' 2>/dev/null)

# Debian packages the build, tests and demo need; installs only what is missing.
DEB_PKGS := build-essential pkg-config libzmq3-dev libczmq-dev libsodium-dev \
	libmsgpack-dev libjansson-dev zlib1g-dev bats bats-support bats-assert mandoc python3
FUZZ_DEB_PKGS := clang libclang-rt-14-dev
define install_missing
	@missing=$$(for p in $(1); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; \
	done); \
	if [ -n "$$missing" ]; then \
		echo "make deps: installing$$(echo ' '$$missing)"; \
		SUDO=; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing; \
	fi
endef
deps:
	$(call install_missing,$(DEB_PKGS))

test: deps
	$(MAKE) all $(TOOLS)
	tests/run

# fault suites (kill -9 under load, long defragmentation runs): slow, so
# not part of make test
fault: deps
	$(MAKE) all $(TOOLS)
	tests/run tests/fault

# kvnode against Redis and a bare ZeroMQ echo (slow; not part of make test).
BENCH_DEB_PKGS := redis-server redis-tools util-linux
bench: deps
	$(call install_missing,$(BENCH_DEB_PKGS))
	$(MAKE) all build/tests/zmq_echo
	tests/bench/compare.py $(BENCH_ARGS)

# the file storage engine: durable writes against Redis with
# appendfsync always, index bytes per record, start-up time, defrag
bench-storage: deps
	$(call install_missing,$(BENCH_DEB_PKGS))
	$(MAKE) all
	tests/bench/storage.py $(BENCH_ARGS)

# 3 kvnodes + kvroute (rf=2) against Redis primary + replica (SET + WAIT 1 0)
bench-cluster: deps
	$(call install_missing,$(BENCH_DEB_PKGS))
	$(MAKE) all build/tests/redis_wait
	tests/bench/cluster.py $(BENCH_ARGS)

# the time to rebalance a 3-node rf=2 cluster after a 4th node joins, and
# the migration rate (records/s, MB/s)
bench-rebalance: deps
	$(MAKE) all
	tests/bench/rebalance.py $(BENCH_ARGS)

# the lag of kvrepl ship between two 3-node clusters under an update
# load (markers written to the source, polled on the destination)
bench-ship: deps
	$(MAKE) all
	tests/bench/ship.py $(BENCH_ARGS)

demo: deps
	$(MAKE) all
	examples/demo.sh

# libFuzzer targets for the request decoder and for kvrepl's stream
# reader; FUZZ_SECONDS bounds each run.
FUZZ_SECONDS ?= 60
FUZZ_CC = clang -g -O1 -std=c11 -D_GNU_SOURCE -DKV_VERSION=\"$(VERSION)\" -Icommon \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined $(shell pkg-config --cflags $(PKGS))
fuzz: deps
	$(call install_missing,$(FUZZ_DEB_PKGS))
	@mkdir -p build/fuzz/corpus build/fuzz/corpus_stream
	$(FUZZ_CC) -o build/fuzz/fuzz_request tests/fuzz/fuzz_request.c $(COMMON_SRC) \
		$(filter-out cmd/kvnode/main.c,$(wildcard cmd/kvnode/*.c)) $(LIBS)
	build/fuzz/fuzz_request -max_total_time=$(FUZZ_SECONDS) -max_len=4096 \
		build/fuzz/corpus tests/fuzz/seeds
	$(FUZZ_CC) -o build/fuzz/fuzz_stream tests/fuzz/fuzz_stream.c $(COMMON_SRC) \
		$(filter-out cmd/kvrepl/main.c,$(wildcard cmd/kvrepl/*.c)) $(LIBS)
	build/fuzz/fuzz_stream -max_total_time=$(FUZZ_SECONDS) -max_len=65536 \
		build/fuzz/corpus_stream tests/fuzz/seeds_stream

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man7
	install -m 755 $(addprefix bin/,$(PROGRAMS)) $(DESTDIR)$(BINDIR)/
	install -m 644 $(filter %.1,$(MANPAGES)) $(DESTDIR)$(MANDIR)/man1/
	install -m 644 $(filter %.7,$(MANPAGES)) $(DESTDIR)$(MANDIR)/man7/

uninstall:
	rm -f $(addprefix $(DESTDIR)$(BINDIR)/,$(PROGRAMS))
	rm -f $(addprefix $(DESTDIR)$(MANDIR)/man1/,$(notdir $(filter %.1,$(MANPAGES))))
	rm -f $(addprefix $(DESTDIR)$(MANDIR)/man7/,$(notdir $(filter %.7,$(MANPAGES))))

clean:
	rm -rf build bin

.PHONY: all deps test fault demo bench bench-storage bench-cluster bench-rebalance bench-ship fuzz install uninstall clean
