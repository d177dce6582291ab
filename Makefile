# cocoon: hot-attach virtio-fs shares and VFIO devices to running Cloud
# Hypervisor VMs.  `make` builds the library, the CLI and the simulator;
# `make test` runs the suite; `make demo` runs the main job.

PREFIX   ?= /usr/local
DESTDIR  ?=
CC       ?= cc
CFLAGS   ?= -O2 -g
CPPFLAGS ?=
LDFLAGS  ?=
BUILD    ?= build

LLHTTP_DIR ?= /usr/share/llhttp
LLHTTP_INC ?= /usr/share/include/llhttp
VIRTIOFSD  ?= /usr/lib/qemu/virtiofsd
APT_GET    ?= apt-get

# Project flags come after the user's CFLAGS so that a CFLAGS given on the
# command line (say -O0) replaces the optimisation but not the warnings.
WARN        = -Wall -Wextra -Wpedantic -Wshadow -Wstrict-prototypes \
              -Wmissing-prototypes -Wwrite-strings -Wformat=2 $(WERROR)
WERROR     ?= -Werror
PROJ_CPPFLAGS = -D_GNU_SOURCE -I. -I$(LLHTTP_INC)
PROJ_CFLAGS = -std=c11 -MMD -MP $(SAN)
# Full RELRO: cocoon runs as root, so every symbol is bound at start and
# the table of them is then read-only; the first attach of a process pays
# no lazy lookups either.
PROJ_LDFLAGS = -Wl,-z,relro,-z,now
# Evaluated when a recipe runs, i.e. after `deps` may have installed them.
YAJL_LIBS   = $(shell pkg-config --libs yajl 2>/dev/null || echo -lyajl)
CMOCKA_LIBS = $(shell pkg-config --libs cmocka 2>/dev/null || echo -lcmocka)
LIBS        = -lev $(YAJL_LIBS) -lm

# The version is written once, in the public header.
VERSION := $(shell awk '/^\#define COCOON_VERSION_(MAJOR|MINOR|PATCH) /{v=v s $$3; s="."} END{print v}' engine/cocoon.h)

LIB_SRCS    := $(wildcard engine/*.c http/*.c json/*.c backends/*.c)
LLHTTP_SRCS := api.c http.c llhttp.c
CLI_SRCS    := $(wildcard cli/*.c)
CHSIM_SRCS  := $(wildcard tests/chsim/*.c)
SUPP_SRCS   := $(wildcard tests/support/*.c)
BENCH_SRCS  := $(wildcard bench/*.c)
TEST_SRCS   := $(wildcard tests/test_*.c)
TEST_SCRIPTS := $(wildcard tests/test_*.sh)

LLHTTP_OBJS := $(LLHTTP_SRCS:%.c=$(BUILD)/llhttp/%.o)
LIB_OBJS    := $(LIB_SRCS:%.c=$(BUILD)/%.o) $(LLHTTP_OBJS)
CLI_OBJS    := $(CLI_SRCS:%.c=$(BUILD)/%.o)
CHSIM_OBJS  := $(CHSIM_SRCS:%.c=$(BUILD)/%.o)
SUPP_OBJS   := $(SUPP_SRCS:%.c=$(BUILD)/%.o)
TESTS       := $(TEST_SRCS:tests/%.c=$(BUILD)/tests/%)
LIB_ALL     := $(BUILD)/libcocoon-all.a
MAJOR       := $(firstword $(subst ., ,$(VERSION)))
SONAME       = libcocoon.so.$(MAJOR)

# Packages, as FILE:PACKAGE pairs: a package is installed when its file is
# absent.  Each goal installs only what it needs: building the library, the
# CLI and the simulator needs DEPS_BUILD alone.
DEPS_BUILD    = /usr/bin/cc:gcc /usr/include/stdio.h:libc6-dev /usr/bin/pkg-config:pkg-config \
                /usr/include/ev.h:libev-dev $(LLHTTP_DIR)/llhttp.c:node-llhttp \
                /usr/include/yajl/yajl_tree.h:libyajl-dev
DEPS_TEST     = /usr/include/cmocka.h:libcmocka-dev $(VIRTIOFSD):qemu-system-common \
                /usr/bin/python3:python3 /usr/bin/curl:curl \
                /usr/lib/python3/dist-packages/yaml/__init__.py:python3-yaml \
                /usr/lib/python3/dist-packages/jsonschema/__init__.py:python3-jsonschema
DEPS_DEMO     = $(VIRTIOFSD):qemu-system-common
DEPS_BENCH    = /usr/bin/curl:curl
DEPS_FUZZ     = /usr/bin/clang:clang \
                /usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.fuzzer-x86_64.a:libclang-rt-14-dev
DEPS_VALGRIND = /usr/bin/valgrind:valgrind
# tests/test_ansible.sh drives the Ansible collection in cli/ansible/.
DEPS_ANSIBLE  = /usr/bin/ansible-playbook:ansible-core
# The loop adapters (`make adapters`, `make test-adapters`) and only they.
DEPS_ADAPTERS = /usr/include/glib-2.0/glib.h:libglib2.0-dev /usr/include/uv.h:libuv1-dev

goal_deps = $(if $(filter $(1),$(MAKECMDGOALS)),$(2))
DEPS_WANT = $(DEPS_BUILD) \
            $(call goal_deps,test asan valgrind soak,$(DEPS_TEST)) \
            $(call goal_deps,test,$(DEPS_ANSIBLE)) \
            $(if $(findstring /tests/,$(MAKECMDGOALS)),$(DEPS_TEST)) \
            $(call goal_deps,demo,$(DEPS_DEMO)) \
            $(call goal_deps,bench,$(DEPS_BENCH)) \
            $(call goal_deps,fuzz fuzz-run,$(DEPS_FUZZ)) \
            $(call goal_deps,valgrind,$(DEPS_VALGRIND)) \
            $(call goal_deps,adapters install-adapters,$(DEPS_ADAPTERS)) \
            $(call goal_deps,test-adapters,$(DEPS_ADAPTERS) $(DEPS_TEST)) \
            $(if $(findstring /adapters/,$(MAKECMDGOALS)),$(DEPS_ADAPTERS) $(DEPS_TEST))

.PHONY: adapters test-adapters install-adapters uninstall-adapters
.PHONY: all deps test asan valgrind fuzz fuzz-run bench demo soak install uninstall clean format-check

all: deps $(BUILD)/libcocoon.a $(BUILD)/$(SONAME) $(BUILD)/cocoon $(BUILD)/chsim

# Installs only what is absent, in one apt-get call, before anything is
# built; a machine that has everything runs no apt.  Without root (and
# without password-less sudo) it stops and names the command to run.  After
# a failed install it names the packages still missing, and since nothing
# was built yet, nothing under $(BUILD) is left half-written.
deps:
	@absent() { out=""; for p in $(DEPS_WANT); do f=$${p%%:*}; pkg=$${p##*:}; \
	  [ -e "$$f" ] || case " $$out " in *" $$pkg "*) ;; *) out="$$out $$pkg";; esac; done; \
	  echo "$$out"; }; \
	missing=$$(absent); [ -n "$$missing" ] || exit 0; \
	cmd="apt-get install -y --no-install-recommends$$missing"; \
	if [ "$$(id -u)" = 0 ]; then sudo=""; \
	elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; \
	else echo "deps: missing packages:$$missing" >&2; \
	  echo "deps: as root, run: $$cmd" >&2; exit 1; fi; \
	if ! command -v $(APT_GET) >/dev/null 2>&1; then \
	  echo "deps: missing Debian packages:$$missing (no $(APT_GET) here: install them, or your system's equivalents)" >&2; \
	  exit 1; fi; \
	echo "deps: installing$$missing"; \
	if ! { $$sudo $(APT_GET) update -qq && \
	       $$sudo env DEBIAN_FRONTEND=noninteractive $(APT_GET) install -y -qq --no-install-recommends $$missing; }; then \
	  echo "deps: could not install$$(absent) (is the package mirror reachable?); to retry: $$cmd" >&2; exit 1; fi; \
	still=$$(absent); if [ -n "$$still" ]; then \
	  echo "deps: installed, but files are still missing for:$$still" >&2; exit 1; fi

# Every library object, every symbol: what the CLI, the simulator, the
# tests, the fuzz targets and the benchmark link.
$(LIB_ALL): $(LIB_OBJS)
	@rm -f $@
	$(AR) rcs $@ $^

# The library as hosts get it exports only cocoon_* symbols, so a host
# with its own store_load or its own llhttp neither clashes with ours nor
# silently replaces it.  The archive holds one relocatable object whose
# other globals are made local; the shared library hides them with a
# version script.
$(BUILD)/libcocoon.a: $(LIB_OBJS) Makefile
	$(CC) -r -nostdlib -o $(BUILD)/libcocoon.o $(LIB_OBJS)
	objcopy --wildcard --keep-global-symbol='cocoon_*' $(BUILD)/libcocoon.o
	@rm -f $@
	$(AR) rcs $@ $(BUILD)/libcocoon.o

$(BUILD)/$(SONAME): $(LIB_OBJS)
	@printf '{ global: cocoon_*; local: *; };\n' > $(BUILD)/libcocoon.map
	$(CC) $(CFLAGS) $(SAN) $(LDFLAGS) $(PROJ_LDFLAGS) -shared -Wl,-soname,$(SONAME) \
	  -Wl,--version-script=$(BUILD)/libcocoon.map -o $@ $^ $(LIBS)
	ln -sf $(SONAME) $(BUILD)/libcocoon.so

$(BUILD)/cocoon: $(CLI_OBJS) $(LIB_ALL)
	$(CC) $(CFLAGS) $(SAN) $(LDFLAGS) $(PROJ_LDFLAGS) -o $@ $(CLI_OBJS) $(LIB_ALL) $(LIBS)

$(BUILD)/chsim: $(CHSIM_OBJS) $(LIB_ALL)
	$(CC) $(CFLAGS) $(SAN) $(LDFLAGS) $(PROJ_LDFLAGS) -o $@ $(CHSIM_OBJS) $(LIB_ALL) $(LIBS)

# Per-test extra link flags, e.g. TEST_LDFLAGS_test_http = -Wl,--wrap=socket
$(BUILD)/tests/test_%: $(BUILD)/tests/test_%.o $(SUPP_OBJS) $(LIB_ALL)
	$(CC) $(CFLAGS) $(SAN) $(LDFLAGS) $(PROJ_LDFLAGS) $(TEST_LDFLAGS_test_$*) -o $@ $< $(SUPP_OBJS) $(LIB_ALL) $(LIBS) $(CMOCKA_LIBS)

# llhttp's sources exist only once `deps` has installed node-llhttp, which
# is after make has read this file: a pattern rule with the .c as its
# prerequisite would find no rule on a fresh machine.  A static pattern rule
# with the source named in the recipe does.  llhttp's own code gets relaxed
# warnings; ours the strict set.
$(LLHTTP_OBJS): $(BUILD)/llhttp/%.o: Makefile | deps
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(CFLAGS) $(SAN) -fPIC -I$(LLHTTP_INC) -w -c -o $@ $(LLHTTP_DIR)/$*.c

# Library objects also go into the shared library.
$(LIB_OBJS): PIC = -fPIC

$(BUILD)/%.o: %.c Makefile | deps
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(PROJ_CPPFLAGS) $(CFLAGS) $(PROJ_CFLAGS) $(PIC) $(WARN) -c -o $@ $<

# Objects depend on the Makefile, whose flags they were built with.  Test
# objects are kept, so a second `make test` rebuilds nothing, and a failed
# compile leaves no object behind.
.SECONDARY:
.DELETE_ON_ERROR:

# Tests find built programs through COCOON_BUILD_DIR.  The tests/test_*.sh
# scripts run in the plain suite only (not under a sanitizer or valgrind,
# which would only rebuild the same files slower).  Exit status 77 is a
# skip: counted and named, never as a pass.
test: all $(TESTS)
	@pass=0; fail=0; skip=0; \
	scripts="$(if $(SAN)$(TEST_WRAP),,$(TEST_SCRIPTS))"; \
	for t in $(TESTS) $$scripts; do \
	  echo "== $$t"; \
	  case $$t in *.sh) run="bash $$t";; *) run="$(TEST_WRAP) ./$$t";; esac; \
	  COCOON_BUILD_DIR=$(BUILD) MAKE="$(MAKE)" $$run; rc=$$?; \
	  if [ $$rc -eq 0 ]; then pass=$$((pass + 1)); \
	  elif [ $$rc -eq 77 ]; then echo "SKIPPED: $$t"; skip=$$((skip + 1)); \
	  else echo "FAILED: $$t"; fail=$$((fail + 1)); fi; \
	done; echo "binaries: $$pass passed, $$fail failed, $$skip skipped"; [ $$fail -eq 0 ]

ASAN_FLAGS = -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
asan:
	ASAN_OPTIONS=halt_on_error=1:detect_leaks=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
	  $(MAKE) BUILD=$(BUILD)/asan CFLAGS="$(CFLAGS) -O1" SAN="$(ASAN_FLAGS)" test

# libFuzzer targets: every tests/fuzz/fuzz_<t>.c runs for FUZZ_SECONDS on a
# copy of tests/fuzz/corpus/<t>/.  The library is rebuilt with clang and
# coverage instrumentation under build/fuzz.
FUZZ_SECONDS ?= 60
FUZZ_SRCS    := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_BINS     = $(FUZZ_SRCS:tests/fuzz/%.c=$(BUILD)/fuzz/%)
FUZZ_EXTRA    = $(filter $(BUILD)/cli/plan.o,$(CLI_OBJS))
fuzz: deps
	$(MAKE) CC=clang BUILD=$(BUILD)/fuzz CFLAGS="-O1 -g" WERROR= \
	  SAN="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all" fuzz-run

fuzz-run: $(FUZZ_BINS)
	@for b in $(FUZZ_BINS); do t=$${b##*/fuzz_}; \
	  w=$(BUILD)/fuzz/work/$$t; rm -rf $$w; mkdir -p $$w; \
	  cp tests/fuzz/corpus/$$t/* $$w/ 2>/dev/null || true; \
	  ./$$b -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 $$w > $$w.log 2>&1 \
	    || { tail -n 60 $$w.log; echo "FUZZ FAILED: $$t"; exit 1; }; \
	  echo "fuzz $$t: $$(grep -m1 stat::number_of_executed_units $$w.log | awk '{print $$2}') execs in $(FUZZ_SECONDS) s, no crash"; \
	done

$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c $(LIB_ALL) $(CLI_OBJS)
	@mkdir -p $(@D)
	$(CC) $(CPPFLAGS) $(PROJ_CPPFLAGS) $(CFLAGS) -std=c11 -fsanitize=fuzzer,address,undefined \
	  -o $@ $< $(FUZZ_EXTRA) $(LIB_ALL) $(LIBS)

valgrind: deps all $(TESTS)
	$(MAKE) TEST_WRAP="valgrind -q --error-exitcode=99 --leak-check=full \
	  --errors-for-leak-kinds=definite --show-leak-kinds=definite" COCOON_VALGRIND=1 test

soak: all $(BUILD)/tests/test_soak
	COCOON_BUILD_DIR=$(BUILD) COCOON_SOAK=full ./$(BUILD)/tests/test_soak

# The attach benchmark: `make bench` runs the full set, BENCH_QUICK=1 a
# reduced set in under two minutes.  Reports go to bench/out/.  The binary
# is not $(BUILD)/bench: that directory holds the objects of bench/*.c.
BENCH_OBJS := $(BENCH_SRCS:%.c=$(BUILD)/%.o)

$(BUILD)/cocoon-bench: $(BENCH_OBJS) $(LIB_ALL)
	$(CC) $(CFLAGS) $(SAN) $(LDFLAGS) $(PROJ_LDFLAGS) -o $@ $(BENCH_OBJS) $(LIB_ALL) $(LIBS)

bench: all $(BUILD)/cocoon-bench
	./$(BUILD)/cocoon-bench --build $(BUILD) --out bench/out $(if $(filter 1 yes true,$(BENCH_QUICK)),--quick)

# Installs the cocoon command and the embeddable library: libcocoon.a, the self-contained public
# header and a pkg-config file, so a libev host builds with
# `pkg-config --cflags --libs cocoon`.  The .pc is rewritten on every run
# because it bakes in PREFIX.
$(BUILD)/cocoon.pc: FORCE
	@mkdir -p $(@D)
	@printf '%s\n' 'prefix=$(PREFIX)' 'exec_prefix=$${prefix}' \
	  'libdir=$${exec_prefix}/lib' 'includedir=$${prefix}/include' '' \
	  'Name: cocoon' \
	  'Description: hot-attach virtio-fs shares and VFIO devices to Cloud Hypervisor VMs' \
	  'Version: $(VERSION)' \
	  'Libs: -L$${libdir} -lcocoon -lev -lyajl -lm' \
	  'Cflags: -I$${includedir}' > $@.tmp && mv $@.tmp $@

install: $(BUILD)/libcocoon.a $(BUILD)/$(SONAME) $(BUILD)/cocoon.pc $(BUILD)/cocoon
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include \
	  $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 0644 cli/cocoon.1 $(DESTDIR)$(PREFIX)/share/man/man1/cocoon.1
	install -m 0755 $(BUILD)/cocoon $(DESTDIR)$(PREFIX)/bin/cocoon
	install -m 0644 $(BUILD)/libcocoon.a $(DESTDIR)$(PREFIX)/lib/libcocoon.a
	install -m 0755 $(BUILD)/$(SONAME) $(DESTDIR)$(PREFIX)/lib/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(PREFIX)/lib/libcocoon.so
	install -m 0644 engine/cocoon.h $(DESTDIR)$(PREFIX)/include/cocoon.h
	install -m 0644 $(BUILD)/cocoon.pc $(DESTDIR)$(PREFIX)/lib/pkgconfig/cocoon.pc

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/cocoon $(DESTDIR)$(PREFIX)/lib/libcocoon.a $(DESTDIR)$(PREFIX)/include/cocoon.h \
	  $(DESTDIR)$(PREFIX)/lib/$(SONAME) $(DESTDIR)$(PREFIX)/lib/libcocoon.so \
	  $(DESTDIR)$(PREFIX)/lib/pkgconfig/cocoon.pc $(DESTDIR)$(PREFIX)/share/man/man1/cocoon.1

# Always out of date (phony: .SECONDARY would otherwise let a missing FORCE
# count as up to date, and the .pc files would keep an old PREFIX).
.PHONY: FORCE
FORCE:

# Loop adapters: cocoon-glib and cocoon-uv, each a small library of its
# own (an archive, and a shared library that needs libcocoon.so) with its
# header and pkg-config module (Requires: cocoon), so building and testing
# the library and the CLI needs neither GLib nor libuv.
ADAPTERS      = glib uv
ADAPTER_PKG_glib = glib-2.0
ADAPTER_PKG_uv   = libuv
ADAPTER_LIBS  = $(ADAPTERS:%=$(BUILD)/libcocoon-%.a) \
                $(ADAPTERS:%=$(BUILD)/libcocoon-%.so.$(MAJOR))
ADAPTER_PCS   = $(ADAPTERS:%=$(BUILD)/cocoon-%.pc)
ADAPTER_TESTS = $(ADAPTERS:%=$(BUILD)/tests/adapters/test_%)
adapter_cflags = $(shell pkg-config --cflags $(ADAPTER_PKG_$(1)))
adapter_libs   = $(shell pkg-config --libs $(ADAPTER_PKG_$(1)))

$(BUILD)/engine/adapters/%.o: PIC = -fPIC
$(BUILD)/engine/adapters/%.o: PROJ_CPPFLAGS += $(call adapter_cflags,$(notdir $*))
# The adapter tests and tests/test_loop.c carry README examples, which
# include the public headers as a host does (<cocoon-glib.h>, <cocoon.h>).
$(BUILD)/tests/adapters/%.o: PROJ_CPPFLAGS += -Iengine \
    $(call adapter_cflags,$(patsubst test_%,%,$(notdir $*)))
$(BUILD)/tests/test_loop.o: PROJ_CPPFLAGS += -Iengine

$(BUILD)/libcocoon-%.a: $(BUILD)/engine/adapters/%.o
	@rm -f $@
	$(AR) rcs $@ $<

# Exports only cocoon_* (the map written for libcocoon.so), and records
# libcocoon.so.0 as needed, so a host links -lcocoon-glib -lcocoon.
$(BUILD)/libcocoon-%.so.$(MAJOR): $(BUILD)/engine/adapters/%.o $(BUILD)/$(SONAME)
	$(CC) $(CFLAGS) $(SAN) $(LDFLAGS) $(PROJ_LDFLAGS) -shared -Wl,-soname,$(notdir $@) \
	  -Wl,--version-script=$(BUILD)/libcocoon.map -o $@ $< -L$(BUILD) -l:$(SONAME) \
	  $(call adapter_libs,$*)
	ln -sf $(notdir $@) $(BUILD)/libcocoon-$*.so

$(BUILD)/tests/adapters/test_%: $(BUILD)/tests/adapters/test_%.o $(BUILD)/libcocoon-%.a \
    $(SUPP_OBJS) $(LIB_ALL)
	$(CC) $(CFLAGS) $(SAN) $(LDFLAGS) $(PROJ_LDFLAGS) -o $@ $< $(BUILD)/libcocoon-$*.a $(SUPP_OBJS) $(LIB_ALL) \
	  $(LIBS) $(call adapter_libs,$*) $(CMOCKA_LIBS)

$(BUILD)/cocoon-%.pc: FORCE
	@mkdir -p $(@D)
	@printf '%s\n' 'prefix=$(PREFIX)' 'exec_prefix=$${prefix}' \
	  'libdir=$${exec_prefix}/lib' 'includedir=$${prefix}/include' '' \
	  'Name: cocoon-$*' \
	  'Description: cocoon engine driven by a $(ADAPTER_PKG_$*) loop' \
	  'Version: $(VERSION)' \
	  'Requires: cocoon $(ADAPTER_PKG_$*)' \
	  'Libs: -L$${libdir} -lcocoon-$*' \
	  'Cflags: -I$${includedir}' > $@.tmp && mv $@.tmp $@

adapters: deps $(ADAPTER_LIBS)

# The adapter scenarios against chsim (100 and 5000 VMs, an idle timeout,
# the engine freed in a callback); they print the host timer's worst gap
# and the longest loop wake-up.
# tests/adapters/test_*.sh install both under a temporary prefix and build
# a host there with pkg-config.
ADAPTER_SCRIPTS := $(wildcard tests/adapters/test_*.sh)
test-adapters: all $(ADAPTER_TESTS) $(ADAPTER_LIBS)
	@pass=0; fail=0; for t in $(ADAPTER_TESTS) $(if $(SAN)$(TEST_WRAP),,$(ADAPTER_SCRIPTS)); do \
	  echo "== $$t"; case $$t in *.sh) run="bash $$t";; *) run="$(TEST_WRAP) ./$$t";; esac; \
	  if COCOON_BUILD_DIR=$(BUILD) MAKE="$(MAKE)" $$run; then pass=$$((pass + 1)); \
	  else echo "FAILED: $$t"; fail=$$((fail + 1)); fi; \
	done; echo "binaries: $$pass passed, $$fail failed"; [ $$fail -eq 0 ]

install-adapters: adapters $(ADAPTER_PCS)
	install -d $(DESTDIR)$(PREFIX)/lib/pkgconfig $(DESTDIR)$(PREFIX)/include
	for a in $(ADAPTERS); do so=libcocoon-$$a.so.$(MAJOR); \
	  install -m 0644 $(BUILD)/libcocoon-$$a.a $(DESTDIR)$(PREFIX)/lib/libcocoon-$$a.a && \
	  install -m 0755 $(BUILD)/$$so $(DESTDIR)$(PREFIX)/lib/$$so && \
	  ln -sf $$so $(DESTDIR)$(PREFIX)/lib/libcocoon-$$a.so && \
	  install -m 0644 engine/cocoon-$$a.h $(DESTDIR)$(PREFIX)/include/cocoon-$$a.h && \
	  install -m 0644 $(BUILD)/cocoon-$$a.pc $(DESTDIR)$(PREFIX)/lib/pkgconfig/cocoon-$$a.pc || exit 1; \
	done

uninstall-adapters:
	for a in $(ADAPTERS); do rm -f $(DESTDIR)$(PREFIX)/lib/libcocoon-$$a.a \
	  $(DESTDIR)$(PREFIX)/lib/libcocoon-$$a.so.$(MAJOR) \
	  $(DESTDIR)$(PREFIX)/lib/libcocoon-$$a.so \
	  $(DESTDIR)$(PREFIX)/include/cocoon-$$a.h $(DESTDIR)$(PREFIX)/lib/pkgconfig/cocoon-$$a.pc; done

# The main job: a fleet of simulated VMs, batch attach and detach.
demo: all
	bash tests/demo.sh $(BUILD)

# BUILD names the tree to remove; refuse the names that would remove more.
clean:
	@case "$(BUILD)" in ""|.|./|..|/|~) echo "clean: refusing BUILD=$(BUILD)" >&2; exit 1;; esac
	rm -rf -- "$(BUILD)"

# House layout the compiler does not check: no tabs, trailing blanks or CRs
# in C sources and headers.
format-check:
	@bad=$$(grep -lP '\t| +$$|\r' $$(git ls-files '*.c' '*.h') || true); \
	if [ -n "$$bad" ]; then echo "format-check: fix tabs/trailing blanks in:"; echo "$$bad"; exit 1; fi; \
	echo "format-check: ok"

-include $(wildcard $(BUILD)/*/*.d $(BUILD)/*/*/*.d)
TEST_LDFLAGS_test_http = -Wl,--wrap=calloc,--wrap=malloc,--wrap=realloc
TEST_LDFLAGS_test_json = -Wl,--wrap=malloc -Wl,--wrap=reallocarray
TEST_LDFLAGS_test_store = -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=strdup,--wrap=strndup
TEST_LDFLAGS_test_engine = -Wl,--wrap=connect,--wrap=stat
TEST_LDFLAGS_test_gate = -Wl,--wrap=read
