# aftersales: build, test, run and benchmark the fleet.
# `make` builds; `make test`, `make run`, `make bench` do everything else,
# installing missing Debian packages first (scripts/deps.sh). `make fuzz`
# runs the libFuzzer targets (clang). Each step prints one line ("  CC
# common/as_tx.c"); `make V=1` prints the commands instead.

# make's built-in default is cc; the tree is built and tested with gcc.
ifeq ($(origin CC),default)
CC      := gcc
endif
CLANG   ?= clang
B       ?= build
SAN     ?= 0
V       ?= 0
FUZZ_SECONDS ?= 60

CSTD    := -std=c17 -D_GNU_SOURCE
WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wformat=2 -Wvla
# SAN=1: AddressSanitizer + UBSan (build/asan); tsan: ThreadSanitizer, for the
# relay's thread (build/tsan); fuzz: clang's libFuzzer instrumentation plus
# ASan + UBSan, for `make fuzz` (build/fuzz).
ifeq ($(SAN),1)
OPT     := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
LDSAN   := -fsanitize=address,undefined
else ifeq ($(SAN),tsan)
OPT     := -O1 -g -fno-omit-frame-pointer -fsanitize=thread
LDSAN   := -fsanitize=thread
SAN_OBJ := $(B)/obj/tests/tsan/tsan_threads.o
else ifeq ($(SAN),fuzz)
CC      := $(CLANG)
OPT     := -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined \
           -fno-sanitize-recover=undefined
LDSAN   := -fsanitize=address,undefined
else ifeq ($(SAN),0)
OPT     := -O2 -g
LDSAN   :=
else
$(error SAN is 0, 1, tsan or fuzz, not "$(SAN)")
endif

# One line per step, or with V=1 the command itself. say's output goes
# before the command; compiler errors are printed in full either way.
ifeq ($(V),1)
Q       :=
say     :=
else
Q       := @
say     = @printf '  %-6s %s\n' '$(1)' '$(2)'
endif
# TEST_HOOKS=1 (the default: build/, build/asan and build/tsan, which the
# tests run) compiles in the AS_FAILPOINT crash points (common/as_failpoint.h);
# TEST_HOOKS=0 is the release build the image makes, which refuses
# AS_FAILPOINT. Build a release tree of its own (B=build/release): objects
# are not rebuilt when only this flag changes.
TEST_HOOKS ?= 1
ifeq ($(TEST_HOOKS),1)
HOOKS   := -DAS_TEST_HOOKS
else ifeq ($(TEST_HOOKS),0)
HOOKS   :=
else
$(error TEST_HOOKS is 0 or 1, not "$(TEST_HOOKS)")
endif
PQINC   := $(shell pkg-config --cflags libpq 2>/dev/null || echo -I/usr/include/postgresql)
INCS    := -Icommon -I$(B)/gen $(PQINC)
CFLAGS  := $(CSTD) $(WARN) $(OPT) $(HOOKS) $(INCS) -MMD -MP
GENFLAGS:= $(CSTD) -Wall -Werror $(OPT) -I$(B)/gen/proto -MMD -MP
LIBS    := -lrdkafka -lpq -lprotobuf-c -luv -luuid -lpthread -lm

PROTOS      := $(wildcard proto/*.proto)
PB_C        := $(patsubst proto/%.proto,$(B)/gen/proto/%.pb-c.c,$(PROTOS))
PB_H        := $(PB_C:.c=.h)
PB_O        := $(PB_C:.c=.o)
GEN_TOPICS  := $(B)/gen/as_topics.h
COMMON_SRC  := $(wildcard common/*.c)
COMMON_O    := $(patsubst %.c,$(B)/obj/%.o,$(COMMON_SRC))
RUNTIME_SQL := $(sort $(wildcard common/sql/runtime/*.sql))
CASES_SQL   := $(sort $(wildcard common/sql/cases/*.sql))
LIBCOMMON   := $(B)/lib/libascommon.a
# What every binary links besides its own objects (SAN_OBJ: see tsan_threads.c).
LINK_COMMON := $(LIBCOMMON) $(SAN_OBJ)

SERVICES    := $(notdir $(patsubst %/main.c,%,$(wildcard services/*/main.c)))
SERVICE_BIN := $(patsubst %,$(B)/bin/as-%,$(SERVICES))
UNIT_SRC    := $(wildcard tests/unit/test_*.c)
UNIT_BIN    := $(patsubst tests/unit/%.c,$(B)/tests/%,$(UNIT_SRC))
TOOLS_BIN   := $(B)/bin/as-broker $(B)/bin/as-topics $(B)/bin/as-probe
PY_GEN      := $(B)/gen/py/envelope_pb2.py

# Fuzz targets: tests/fuzz/fuzz_<name>.c (LLVMFuzzerTestOneInput), seeds in
# tests/fuzz/corpus/<name>/. Each is linked twice: with tests/fuzz/replay.c
# into $(B)/tests/fuzz_<name> (any build; `make test` replays the corpus and
# mutations of it under ASan), and with libFuzzer into $(B)/bin/fuzz_<name>
# (SAN=fuzz only; `make fuzz`). FUZZ_OBJ_<name>: what a target needs
# besides libascommon.
FUZZ_NAMES  := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_REPLAY := $(patsubst %,$(B)/tests/fuzz_%,$(FUZZ_NAMES))
FUZZ_BIN    := $(patsubst %,$(B)/bin/fuzz_%,$(FUZZ_NAMES))
FUZZ_OBJ_policy := $(B)/obj/services/review/review_policy.o $(B)/obj/services/review/review_decide.o
FUZZ_OBJ_standards := $(B)/obj/services/inspection/insp_standards.o
FUZZ_OBJ_templates := $(B)/obj/services/notification/notif_templates.o

.PHONY: all build test-bins deps test run bench fuzz fuzz-bins format clean FORCE
.DEFAULT_GOAL := all

all: deps build test-bins
# What the fleet needs to run (make run, make bench, the image): workers,
# tools and the Python classes. The tests' own binaries are test-bins.
build: $(SERVICE_BIN) $(TOOLS_BIN) $(PY_GEN)
test-bins: $(UNIT_BIN) $(FUZZ_REPLAY)
fuzz-bins: $(FUZZ_BIN)

# Generated sources and every object are kept: make would otherwise delete
# the ones it made as intermediates (the .pb-c.c/.h, the unit tests' .o)
# and rebuild everything that includes them on the next run.
.SECONDARY:

# Python classes for the demo and the integration tests (an independent,
# other-language reader of every topic).
$(PY_GEN): $(PROTOS)
	@mkdir -p $(B)/gen/py
	$(call say,PROTOC,$(B)/gen/py)
	$(Q)protoc --python_out=$(B)/gen/py -Iproto $(PROTOS)

deps:
	@scripts/deps.sh

$(B)/gen/proto/%.pb-c.c $(B)/gen/proto/%.pb-c.h: proto/%.proto
	@mkdir -p $(B)/gen/proto
	$(call say,PROTOC,$<)
	$(Q)protoc-c --c_out=$(B)/gen/proto -Iproto $<

$(GEN_TOPICS): proto/topics.tsv scripts/gen_topics.sh
	@mkdir -p $(B)/gen
	$(call say,GEN,$@)
	$(Q)scripts/gen_topics.sh $< > $@.tmp && mv $@.tmp $@

# embed_sql: $(1) the array's name, $(2) the migrations, in order.
define embed_sql
	@mkdir -p $(B)/gen
	$(call say,GEN,$@)
	$(Q)scripts/embed_sql.sh $(1) $(2) > $@.tmp && mv $@.tmp $@
endef

$(B)/gen/as_sql_runtime.c: $(RUNTIME_SQL) scripts/embed_sql.sh
	$(call embed_sql,as_sql_runtime,$(RUNTIME_SQL))

$(B)/gen/as_sql_cases.c: $(CASES_SQL) scripts/embed_sql.sh
	$(call embed_sql,as_sql_cases,$(CASES_SQL))

$(B)/gen/proto/%.pb-c.o: $(B)/gen/proto/%.pb-c.c $(PB_H)
	$(call say,CC,$<)
	$(Q)$(CC) $(GENFLAGS) -c $< -o $@

$(B)/obj/%.o: %.c $(PB_H) $(GEN_TOPICS)
	@mkdir -p $(dir $@)
	$(call say,CC,$<)
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

$(B)/obj/gen/%.o: $(B)/gen/%.c
	@mkdir -p $(dir $@)
	$(call say,CC,$<)
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

# The version and commit (as_process.h): rewritten only when they change.
$(B)/gen/as_version.c: FORCE
	@scripts/gen_version.sh $@
FORCE:

$(LIBCOMMON): $(COMMON_O) $(PB_O) $(B)/obj/gen/as_sql_runtime.o $(B)/obj/gen/as_sql_cases.o \
    $(B)/obj/gen/as_version.o
	@mkdir -p $(dir $@)
	$(call say,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

# Every binary: $@ from its objects and libraries.
define link
	@mkdir -p $(dir $@)
	$(call say,LD,$@)
	$(Q)$(CC) $(LDSAN) -o $@ $^ $(LIBS)
endef

# A service is services/<name>/*.c plus its migrations services/<name>/sql/*.sql,
# embedded as as_service_migrations (as_worker.h's AS_SERVICE_MAIN passes them).
define service_rule
$(B)/gen/as_sql_$(1).c: $$(sort $$(wildcard services/$(1)/sql/*.sql)) scripts/embed_sql.sh
	$$(call embed_sql,as_service_migrations,$$(sort $$(wildcard services/$(1)/sql/*.sql)))
$(B)/bin/as-$(1): $$(patsubst %.c,$(B)/obj/%.o,$$(wildcard services/$(1)/*.c)) $(B)/obj/gen/as_sql_$(1).o $(LINK_COMMON)
	$$(link)
# tests/unit/test_<service>_*.c test a service's modules: linked with them, not its main.
$(B)/tests/test_$(1)_%: $(B)/obj/tests/unit/test_$(1)_%.o $(B)/obj/tests/unit/as_test.o \
    $$(patsubst %.c,$(B)/obj/%.o,$$(filter-out services/$(1)/main.c,$$(wildcard services/$(1)/*.c))) \
    $(B)/obj/gen/as_sql_$(1).o $(LINK_COMMON)
	$$(link)
endef
$(foreach s,$(SERVICES),$(eval $(call service_rule,$(s))))
# The notification sender speaks SMTP and HTTP through libcurl; no other binary links it.
$(B)/bin/as-notification $(B)/tests/test_notification_%: LIBS += -lcurl

$(B)/gen/as_sql_probe.c: $(sort $(wildcard tests/probe/sql/*.sql)) scripts/embed_sql.sh
	$(call embed_sql,as_service_migrations,$(sort $(wildcard tests/probe/sql/*.sql)))

$(B)/bin/as-probe: $(patsubst %.c,$(B)/obj/%.o,$(wildcard tests/probe/*.c)) $(B)/obj/gen/as_sql_probe.o $(LINK_COMMON)
	$(link)

$(B)/bin/as-broker: $(B)/obj/tools/broker/as_broker.o $(LINK_COMMON)
	$(link)

$(B)/bin/as-topics: $(B)/obj/tools/topics/as_topics.o $(LINK_COMMON)
	$(link)

define fuzz_rule
$(B)/tests/fuzz_$(1): $(B)/obj/tests/fuzz/fuzz_$(1).o $(B)/obj/tests/fuzz/replay.o $(FUZZ_OBJ_$(1)) $(LINK_COMMON)
	$$(link)
$(B)/bin/fuzz_$(1): $(B)/obj/tests/fuzz/fuzz_$(1).o $(FUZZ_OBJ_$(1)) $(LINK_COMMON)
	@mkdir -p $$(dir $$@)
	$$(call say,LD,$$@)
	$$(Q)$$(CC) -fsanitize=fuzzer,address,undefined -o $$@ $$^ $$(LIBS)
endef
$(foreach f,$(FUZZ_NAMES),$(eval $(call fuzz_rule,$(f))))

$(B)/tests/%: $(B)/obj/tests/unit/%.o $(B)/obj/tests/unit/as_test.o $(LINK_COMMON)
	$(link)

# test_failpoint checks both variants: the library's (this tree's flag) and
# the release one, compiled here without AS_TEST_HOOKS under other names.
$(B)/obj/common/as_failpoint_release.o: common/as_failpoint.c
	@mkdir -p $(dir $@)
	$(call say,CC,$< (release))
	$(Q)$(CC) $(filter-out -DAS_TEST_HOOKS,$(CFLAGS)) -UAS_TEST_HOOKS \
	  -Das_failpoint_enabled=as_failpoint_release_enabled \
	  -Das_failpoint_check=as_failpoint_release_check \
	  -Das_failpoint_armed=as_failpoint_release_armed -c $< -o $@
$(B)/tests/test_failpoint: $(B)/obj/tests/unit/test_failpoint.o $(B)/obj/tests/unit/as_test.o \
    $(B)/obj/common/as_failpoint_release.o $(LINK_COMMON)
	$(link)

# The whole suite: unit tests and integration tests against the embedded
# PostgreSQL and broker, once with the optimised build and once under
# AddressSanitizer + UndefinedBehaviorSanitizer, the fuzz targets' replays,
# and the relay's thread under ThreadSanitizer (build/tsan: the workers).
# The three trees build one after the other, each on every core (a plain
# `make test`, as CI runs it, passes no -j of its own).
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

test: deps
	$(MAKE) --no-print-directory -j$(JOBS) B=build SAN=0 build test-bins
	$(MAKE) --no-print-directory -j$(JOBS) B=build/asan SAN=1 build test-bins
	$(MAKE) --no-print-directory -j$(JOBS) B=build/tsan SAN=tsan build
	tests/run.sh

run: deps
	$(MAKE) --no-print-directory -j$(JOBS) B=build SAN=0 build
	scripts/run.sh

bench: deps
	$(MAKE) --no-print-directory -j$(JOBS) B=build SAN=0 build
	tests/bench/bench.sh

# Each libFuzzer target for FUZZ_SECONDS over its seeds; what it finds goes
# to build/fuzz/corpus/<name> (inputs) and build/fuzz/crash/<name>/ (a
# crash, which fails this goal after the other targets have run).
# Rewrites the C sources to .clang-format; `make test` checks nothing differs.
format: deps
	scripts/format.sh

fuzz: deps
	$(MAKE) --no-print-directory B=build/fuzz SAN=fuzz fuzz-bins
	@failed=; for n in $(FUZZ_NAMES); do \
	  mkdir -p build/fuzz/corpus/$$n build/fuzz/crash/$$n; \
	  printf '  %-6s %s\n' FUZZ "fuzz_$$n for $(FUZZ_SECONDS) s"; \
	  if build/fuzz/bin/fuzz_$$n -max_total_time=$(FUZZ_SECONDS) -timeout=10 \
	       -artifact_prefix=build/fuzz/crash/$$n/ build/fuzz/corpus/$$n tests/fuzz/corpus/$$n \
	       > build/fuzz/fuzz_$$n.log 2>&1; then \
	    grep -E '^#[0-9]+.*DONE' build/fuzz/fuzz_$$n.log | tail -n1 | sed 's/^/         /'; \
	  else \
	    tail -n 40 build/fuzz/fuzz_$$n.log; failed="$$failed fuzz_$$n"; \
	  fi; \
	done; \
	if [ -n "$$failed" ]; then echo "fuzz: failed:$$failed (build/fuzz/crash/)"; exit 1; fi

# A cluster relocated to /var/tmp (clone in a root-only folder) goes too.
clean:
	@if [ -d build/run/pg ]; then scripts/pg.sh destroy build/run/pg >/dev/null 2>&1 || true; fi
	rm -rf build

# Only this tree's: build/ also holds build/asan, build/tsan and build/fuzz.
-include $(shell find $(B)/obj $(B)/gen -name '*.d' 2>/dev/null)
