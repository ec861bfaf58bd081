# aftersales: build, test, run and benchmark the fleet.
# `make` builds; `make test`, `make run`, `make bench` do everything else,
# installing missing Debian packages first (scripts/deps.sh).

CC      ?= gcc
B       ?= build
SAN     ?= 0

CSTD    := -std=c17 -D_GNU_SOURCE
WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
           -Wformat=2
ifeq ($(SAN),1)
OPT     := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
LDSAN   := -fsanitize=address,undefined
else
OPT     := -O2 -g
LDSAN   :=
endif
PQINC   := $(shell pkg-config --cflags libpq 2>/dev/null || echo -I/usr/include/postgresql)
INCS    := -Icommon -I$(B)/gen $(PQINC)
CFLAGS  := $(CSTD) $(WARN) $(OPT) $(INCS) -MMD -MP
GENFLAGS:= $(CSTD) -Wall -Werror $(OPT) -I$(B)/gen/proto -MMD -MP
LIBS    := -lrdkafka -lpq -lprotobuf-c -luv -lpthread -lm

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

SERVICES    := $(notdir $(patsubst %/main.c,%,$(wildcard services/*/main.c)))
SERVICE_BIN := $(patsubst %,$(B)/bin/as-%,$(SERVICES))
UNIT_SRC    := $(wildcard tests/unit/test_*.c)
UNIT_BIN    := $(patsubst tests/unit/%.c,$(B)/tests/%,$(UNIT_SRC))
TOOLS_BIN   := $(B)/bin/as-broker $(B)/bin/as-probe $(B)/bin/as-fuzz-envelope

.PHONY: all build deps test run bench clean unit-bins fuzz-corpus
.DEFAULT_GOAL := all

all: deps build
PY_GEN      := $(B)/gen/py/envelope_pb2.py
build: $(SERVICE_BIN) $(TOOLS_BIN) $(UNIT_BIN) $(PY_GEN)

# Python classes for the demo and the integration tests (an independent,
# other-language reader of every topic).
$(PY_GEN): $(PROTOS)
	@mkdir -p $(B)/gen/py
	protoc --python_out=$(B)/gen/py -Iproto $(PROTOS)
unit-bins: $(UNIT_BIN)

deps:
	@scripts/deps.sh

$(B)/gen/proto/%.pb-c.c $(B)/gen/proto/%.pb-c.h: proto/%.proto
	@mkdir -p $(B)/gen/proto
	protoc-c --c_out=$(B)/gen/proto -Iproto $<

$(GEN_TOPICS): proto/topics.tsv scripts/gen_topics.sh
	@mkdir -p $(B)/gen
	scripts/gen_topics.sh $< > $@.tmp && mv $@.tmp $@

$(B)/gen/as_sql_runtime.c: $(RUNTIME_SQL) scripts/embed_sql.sh
	@mkdir -p $(B)/gen
	scripts/embed_sql.sh as_sql_runtime $(RUNTIME_SQL) > $@.tmp && mv $@.tmp $@

$(B)/gen/as_sql_cases.c: $(CASES_SQL) scripts/embed_sql.sh
	@mkdir -p $(B)/gen
	scripts/embed_sql.sh as_sql_cases $(CASES_SQL) > $@.tmp && mv $@.tmp $@

$(B)/gen/proto/%.pb-c.o: $(B)/gen/proto/%.pb-c.c $(PB_H)
	$(CC) $(GENFLAGS) -c $< -o $@

$(B)/obj/%.o: %.c $(PB_H) $(GEN_TOPICS)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(B)/obj/gen/%.o: $(B)/gen/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

$(LIBCOMMON): $(COMMON_O) $(PB_O) $(B)/obj/gen/as_sql_runtime.o $(B)/obj/gen/as_sql_cases.o
	@mkdir -p $(dir $@)
	rm -f $@ && ar rcs $@ $^

# A service is services/<name>/*.c plus its migrations services/<name>/sql/*.sql,
# embedded as as_service_migrations (as_worker.h's AS_SERVICE_MAIN passes them).
define service_rule
$(B)/gen/as_sql_$(1).c: $$(sort $$(wildcard services/$(1)/sql/*.sql)) scripts/embed_sql.sh
	@mkdir -p $(B)/gen
	scripts/embed_sql.sh as_service_migrations $$(sort $$(wildcard services/$(1)/sql/*.sql)) > $$@.tmp && mv $$@.tmp $$@
$(B)/bin/as-$(1): $$(patsubst %.c,$(B)/obj/%.o,$$(wildcard services/$(1)/*.c)) $(B)/obj/gen/as_sql_$(1).o $(LIBCOMMON)
	@mkdir -p $$(dir $$@)
	$$(CC) $(LDSAN) -o $$@ $$^ $(LIBS)
# tests/unit/test_<service>_*.c test a service's modules: linked with them, not its main.
$(B)/tests/test_$(1)_%: $(B)/obj/tests/unit/test_$(1)_%.o $(B)/obj/tests/unit/as_test.o \
    $$(patsubst %.c,$(B)/obj/%.o,$$(filter-out services/$(1)/main.c,$$(wildcard services/$(1)/*.c))) \
    $(B)/obj/gen/as_sql_$(1).o $(LIBCOMMON)
	@mkdir -p $$(dir $$@)
	$$(CC) $(LDSAN) -o $$@ $$^ $(LIBS)
endef
$(foreach s,$(SERVICES),$(eval $(call service_rule,$(s))))

$(B)/gen/as_sql_probe.c: $(sort $(wildcard tests/probe/sql/*.sql)) scripts/embed_sql.sh
	@mkdir -p $(B)/gen
	scripts/embed_sql.sh as_service_migrations $(sort $(wildcard tests/probe/sql/*.sql)) > $@.tmp && mv $@.tmp $@

$(B)/bin/as-probe: $(patsubst %.c,$(B)/obj/%.o,$(wildcard tests/probe/*.c)) $(B)/obj/gen/as_sql_probe.o $(LIBCOMMON)
	@mkdir -p $(dir $@)
	$(CC) $(LDSAN) -o $@ $^ $(LIBS)

$(B)/bin/as-broker: $(B)/obj/tools/broker/as_broker.o $(LIBCOMMON)
	@mkdir -p $(dir $@)
	$(CC) $(LDSAN) -o $@ $^ $(LIBS)

# Replays a corpus through the envelope decoder (libFuzzer-compatible entry point).
$(B)/bin/as-fuzz-envelope: $(B)/obj/tests/fuzz/fuzz_envelope.o $(LIBCOMMON)
	@mkdir -p $(dir $@)
	$(CC) $(LDSAN) -o $@ $^ $(LIBS)

$(B)/tests/%: $(B)/obj/tests/unit/%.o $(B)/obj/tests/unit/as_test.o $(LIBCOMMON)
	@mkdir -p $(dir $@)
	$(CC) $(LDSAN) -o $@ $^ $(LIBS)

# The whole suite: unit tests and integration tests against the embedded
# PostgreSQL and broker, once with the optimised build and once under
# AddressSanitizer + UndefinedBehaviorSanitizer.
test: deps
	$(MAKE) --no-print-directory B=build SAN=0 build
	$(MAKE) --no-print-directory B=build/asan SAN=1 build
	tests/run.sh

run: deps
	$(MAKE) --no-print-directory B=build SAN=0 build
	scripts/run.sh

bench: deps
	$(MAKE) --no-print-directory B=build SAN=0 build
	tests/bench/bench.sh

# A cluster relocated to /var/tmp (clone in a root-only folder) goes too.
clean:
	@if [ -d build/run/pg ]; then scripts/pg.sh destroy build/run/pg >/dev/null 2>&1 || true; fi
	rm -rf build

-include $(shell find $(B) -name '*.d' 2>/dev/null)
