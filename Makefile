# One command builds everything: `make` (library, the glow command, the test runners).
# `make test` runs the test suite in float and in double precision.
# Optional parts are detected and reported; none is needed for the core.

CC      ?= gcc
OPT     ?= -O3 -march=native
CFLAGS  += $(OPT) -g -std=c11 -D_GNU_SOURCE -fno-math-errno -Wall -Wextra -Wno-unused-parameter -fopenmp -Iinclude -Isrc
# OpenBLAS built for OpenMP shares our thread pool; the pthread build (Debian's default)
# fights OpenMP for the cores and runs about 3x slower here. Use it when installed.
BLASDIR := /usr/lib/x86_64-linux-gnu/openblas-openmp
ifneq ($(wildcard $(BLASDIR)/libopenblas.so),)
BLASLIB := -L$(BLASDIR) -Wl,-rpath,$(BLASDIR) -lopenblas
else
BLASLIB := -lopenblas
endif
LDLIBS  += $(BLASLIB) -lpng -ljpeg -lz -lm -fopenmp

SRC     := $(wildcard src/*.c src/cpu/*.c)
CLI     := $(wildcard cli/*.c)
TESTS   := $(wildcard tests/*.c)
BUILD   := build

OBJ32   := $(SRC:src/%.c=$(BUILD)/f32/%.o)
OBJ64   := $(SRC:src/%.c=$(BUILD)/f64/%.o)
CLIOBJ  := $(CLI:cli/%.c=$(BUILD)/cli/%.o)
TOBJ32  := $(TESTS:tests/%.c=$(BUILD)/t32/%.o)
TOBJ64  := $(TESTS:tests/%.c=$(BUILD)/t64/%.o)

all: $(BUILD)/libglow.a glow $(BUILD)/test_f32 $(BUILD)/test_f64

$(BUILD)/f32/%.o: src/%.c include/glow.h $(wildcard src/*.h)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c $< -o $@
$(BUILD)/f64/%.o: src/%.c include/glow.h $(wildcard src/*.h)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -DGLOW_REAL=double -c $< -o $@
$(BUILD)/cli/%.o: cli/%.c include/glow.h $(wildcard cli/*.h)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c $< -o $@
$(BUILD)/t32/%.o: tests/%.c include/glow.h $(wildcard tests/*.h) $(wildcard src/*.h)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c $< -o $@
$(BUILD)/t64/%.o: tests/%.c include/glow.h $(wildcard tests/*.h) $(wildcard src/*.h)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -DGLOW_REAL=double -c $< -o $@

$(BUILD)/libglow.a: $(OBJ32)
	rm -f $@ && ar rcs $@ $^
$(BUILD)/libglow_f64.a: $(OBJ64)
	rm -f $@ && ar rcs $@ $^

glow: $(CLIOBJ) $(BUILD)/libglow.a
	$(CC) $(CFLAGS) $(CLIOBJ) $(BUILD)/libglow.a $(LDLIBS) -o $@
$(BUILD)/test_f32: $(TOBJ32) $(BUILD)/libglow.a
	$(CC) $(CFLAGS) $(TOBJ32) $(BUILD)/libglow.a $(LDLIBS) -o $@
$(BUILD)/test_f64: $(TOBJ64) $(BUILD)/libglow_f64.a
	$(CC) $(CFLAGS) $(TOBJ64) $(BUILD)/libglow_f64.a $(LDLIBS) -o $@

# TEST_ARGS selects tests by name substring, e.g. `make test TEST_ARGS=actnorm`.
test: glow $(BUILD)/test_f32 $(BUILD)/test_f64
	OMP_NUM_THREADS=2 ./$(BUILD)/test_f64 $(TEST_ARGS)
	OMP_NUM_THREADS=2 ./$(BUILD)/test_f32 $(TEST_ARGS)

clean:
	rm -rf $(BUILD) glow

.PHONY: all test clean

# The library and its fast tests under AddressSanitizer and UndefinedBehaviorSanitizer, in
# both builds (the float build's packed and AMX kernels do not run in the double build); the
# command-line and training tests are left to `make test`.
ASAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
ASAN_TESTS := kernel layer model_ checkpoint_ data_ image_ png_ grid_ plot_ latent_npy optimizer_
asan:
	@mkdir -p $(BUILD)/asan
	$(CC) $(CFLAGS) $(ASAN_FLAGS) -DGLOW_REAL=double $(SRC) $(TESTS) $(LDLIBS) -o $(BUILD)/asan/test_f64
	ASAN_OPTIONS=detect_leaks=1 OMP_NUM_THREADS=2 ./$(BUILD)/asan/test_f64 $(ASAN_TESTS)
	$(CC) $(CFLAGS) $(ASAN_FLAGS) $(SRC) $(TESTS) $(LDLIBS) -o $(BUILD)/asan/test_f32
	ASAN_OPTIONS=detect_leaks=1 OMP_NUM_THREADS=2 ./$(BUILD)/asan/test_f32 $(ASAN_TESTS)

.PHONY: asan
