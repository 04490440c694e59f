# One command builds everything: `make` (the libraries, the glow command, the test runners).
# `make test` runs the test suite in float and in double precision, and the Python module's.
# `make install PREFIX=DIR` installs glow.h, libglow.so and libglow.a, glow and glow.pc.

VERSION := 0.2.0
SOVERSION := 0
CC      ?= gcc
# Any x86-64 CPU: the AVX-512 and AMX kernels are chosen at run time (packed_gemm.c), and
# the other loops are compiled for three CPU levels, one picked at load time (src/cpu/cpu.h).
# ARCH=-march=native builds everything for this CPU alone.
ARCH    ?=
OPT     ?= -O3 $(ARCH) $(if $(ARCH),-DGLOW_NO_CLONES)
CFLAGS  += $(OPT) -g -std=c11 -D_GNU_SOURCE -fno-math-errno -Wall -Wextra -Wno-unused-parameter -fopenmp -Iinclude -Isrc
# The library's objects: position-independent, and only glow.h's names visible outside.
LIBFLAGS := -fPIC -fvisibility=hidden
# OpenBLAS built for OpenMP shares our thread pool; the pthread build (Debian's default)
# fights OpenMP for the cores and runs about 3x slower here. Use it when installed.
BLASDIR := /usr/lib/x86_64-linux-gnu/openblas-openmp
ifneq ($(wildcard $(BLASDIR)/libopenblas.so),)
BLASLIB := -L$(BLASDIR) -Wl,-rpath,$(BLASDIR) -lopenblas
else
BLASLIB := -lopenblas
endif
LDLIBS  += $(BLASLIB) -lpng -ljpeg -lz -lm -fopenmp

# MPI (glow train, eval and check under mpirun; docs/DISTRIBUTED.md): on when mpicc is
# found. Only the command uses it (cli/mpi.c); the library stays free of it.
MPICC   := $(shell command -v mpicc 2>/dev/null)
ifneq ($(MPICC),)
MPI_CFLAGS := -DGLOW_MPI $(shell mpicc --showme:compile 2>/dev/null || mpicc -show | cut -d' ' -f2-)
MPI_LIBS   := $(shell mpicc --showme:link 2>/dev/null)
$(info MPI: on ($(MPICC)))
else
$(info MPI: off (no mpicc; glow runs as one process))
endif

SRC     := $(wildcard src/*.c src/cpu/*.c)
CLI     := $(wildcard cli/*.c)
TESTS   := $(wildcard tests/*.c)
BUILD   := build
PREFIX  ?= /usr/local

OBJ32   := $(SRC:src/%.c=$(BUILD)/f32/%.o)
OBJ64   := $(SRC:src/%.c=$(BUILD)/f64/%.o)
CLIOBJ  := $(CLI:cli/%.c=$(BUILD)/cli/%.o)
CLIOBJ64 := $(CLI:cli/%.c=$(BUILD)/cli64/%.o)
TOBJ32  := $(TESTS:tests/%.c=$(BUILD)/t32/%.o)
TOBJ64  := $(TESTS:tests/%.c=$(BUILD)/t64/%.o)
SONAME  := libglow.so.$(SOVERSION)

all: $(BUILD)/libglow.a $(BUILD)/libglow.so glow $(BUILD)/test_f32 $(BUILD)/test_f64

$(BUILD)/f32/%.o: src/%.c include/glow.h $(wildcard src/*.h src/cpu/*.h)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LIBFLAGS) -c $< -o $@
$(BUILD)/f64/%.o: src/%.c include/glow.h $(wildcard src/*.h src/cpu/*.h)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(LIBFLAGS) -DGLOW_REAL=double -c $< -o $@
$(BUILD)/cli/%.o: cli/%.c include/glow.h $(wildcard cli/*.h)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c $< -o $@
$(BUILD)/cli64/%.o: cli/%.c include/glow.h $(wildcard cli/*.h)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -DGLOW_REAL=double -c $< -o $@
$(BUILD)/t32/%.o: tests/%.c include/glow.h $(wildcard tests/*.h) $(wildcard src/*.h src/cpu/*.h)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c $< -o $@
$(BUILD)/t64/%.o: tests/%.c include/glow.h $(wildcard tests/*.h) $(wildcard src/*.h src/cpu/*.h)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -DGLOW_REAL=double -c $< -o $@

# The static library is one relocatable object whose internal names are made local, so
# that it too exports only glow_* names and cannot clash with a program's.
$(BUILD)/libglow.a: $(OBJ32)
	ld -r -o $(BUILD)/libglow_all.o $^
	objcopy --wildcard --keep-global-symbol='glow_*' $(BUILD)/libglow_all.o
	rm -f $@ && ar rcs $@ $(BUILD)/libglow_all.o
$(BUILD)/libglow_f64.a: $(OBJ64)
	ld -r -o $(BUILD)/libglow_f64_all.o $^
	objcopy --wildcard --keep-global-symbol='glow_*' $(BUILD)/libglow_f64_all.o
	rm -f $@ && ar rcs $@ $(BUILD)/libglow_f64_all.o
$(BUILD)/libglow.so.$(VERSION): $(OBJ32) src/glow.map
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--no-undefined -Wl,--version-script=src/glow.map \
	    $(OBJ32) $(LDLIBS) -o $@
$(BUILD)/libglow.so: $(BUILD)/libglow.so.$(VERSION)
	ln -sf libglow.so.$(VERSION) $(BUILD)/$(SONAME)
	ln -sf libglow.so.$(VERSION) $@

# glow serve is on libmicrohttpd, and carries its page (web/) inside.
$(BUILD)/cli/serve.o: web/index.html
$(BUILD)/cli/mpi.o $(BUILD)/cli64/mpi.o: CFLAGS += $(MPI_CFLAGS)
$(BUILD)/cli64/serve.o: web/index.html
glow: $(CLIOBJ) $(BUILD)/libglow.a
	$(CC) $(CFLAGS) $(CLIOBJ) $(BUILD)/libglow.a $(LDLIBS) $(MPI_LIBS) -lmicrohttpd -lpthread -o $@
# A library program on MPI: a step not finite on one process is skipped on all (tests/mpi).
$(BUILD)/test_mpi_skip: tests/mpi/skip_one.c $(BUILD)/libglow.a
	$(CC) $(CFLAGS) $(MPI_CFLAGS) $< $(BUILD)/libglow.a $(LDLIBS) $(MPI_LIBS) -o $@
# The command in double precision: the exactness tests of training on many processes.
$(BUILD)/glow_f64: $(CLIOBJ64) $(BUILD)/libglow_f64.a
	$(CC) $(CFLAGS) $(CLIOBJ64) $(BUILD)/libglow_f64.a $(LDLIBS) $(MPI_LIBS) -lmicrohttpd -lpthread -o $@
# The tests reach the internals, so they link the objects themselves.
$(BUILD)/test_f32: $(TOBJ32) $(OBJ32)
	$(CC) $(CFLAGS) $(TOBJ32) $(OBJ32) $(LDLIBS) -o $@
$(BUILD)/test_f64: $(TOBJ64) $(OBJ64)
	$(CC) $(CFLAGS) $(TOBJ64) $(OBJ64) $(LDLIBS) -o $@

install: $(BUILD)/libglow.a $(BUILD)/libglow.so glow
	install -d $(PREFIX)/include $(PREFIX)/lib/pkgconfig $(PREFIX)/bin
	install -m 644 include/glow.h $(PREFIX)/include/glow.h
	install -m 755 $(BUILD)/libglow.so.$(VERSION) $(PREFIX)/lib/
	ln -sf libglow.so.$(VERSION) $(PREFIX)/lib/$(SONAME)
	ln -sf libglow.so.$(VERSION) $(PREFIX)/lib/libglow.so
	install -m 644 $(BUILD)/libglow.a $(PREFIX)/lib/libglow.a
	install -m 755 glow $(PREFIX)/bin/glow
	sed -e 's|@PREFIX@|$(abspath $(PREFIX))|' -e 's|@VERSION@|$(VERSION)|' \
	    -e 's|@BLASLIB@|$(BLASLIB)|' glow.pc.in > $(PREFIX)/lib/pkgconfig/glow.pc

# TEST_ARGS selects tests by name substring, e.g. `make test TEST_ARGS=actnorm`.
# The Python module's tests and glow serve's (its API over HTTP, the abuse, the page in
# Chromium), on Debian's python3 and pytest, run when no TEST_ARGS narrow the run.
# With MPI, the tests of training on many processes under mpirun (tests/mpi/) run too.
MPI_TESTS := $(if $(MPICC),cd tests/mpi && /usr/bin/python3 -m pytest -q)
test: glow $(BUILD)/test_f32 $(BUILD)/test_f64 $(BUILD)/libglow.so $(if $(MPICC),$(BUILD)/glow_f64 $(BUILD)/test_mpi_skip)
	OMP_NUM_THREADS=2 ./$(BUILD)/test_f64 $(TEST_ARGS)
	OMP_NUM_THREADS=2 ./$(BUILD)/test_f32 $(TEST_ARGS)
	$(if $(TEST_ARGS),,cd python && OMP_NUM_THREADS=2 /usr/bin/python3 -m pytest -q tests)
	$(if $(TEST_ARGS),,cd tests/serve && /usr/bin/python3 -m pytest -q -s)
	$(if $(TEST_ARGS),,$(MPI_TESTS))

# The libFuzzer harnesses (tests/fuzz/), each run for FUZZ_SECONDS with clang's ASan and
# UBSan, from seed corpora made from real files.
FUZZ_SECONDS ?= 60
fuzz: glow
	bash tests/fuzz/run.sh $(FUZZ_SECONDS)

clean:
	rm -rf $(BUILD) glow

.PHONY: all test clean install fuzz

# The library and its fast tests under AddressSanitizer and UndefinedBehaviorSanitizer, in
# both builds (the float build's packed and AMX kernels do not run in the double build); the
# command-line and training tests are left to `make test`.
# The build also fails allocations on purpose, one after another (tests/test_alloc.c).
ASAN_FLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined \
              -DGLOW_ALLOC_FAILURES -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc
ASAN_TESTS := kernel layer model_ context_ checkpoint_ data_ image_ png_ grid_ plot_ latent_npy \
              latent_hostile optimizer_ alloc_
asan:
	@mkdir -p $(BUILD)/asan
	$(CC) $(CFLAGS) $(ASAN_FLAGS) -DGLOW_REAL=double $(SRC) $(TESTS) $(LDLIBS) -o $(BUILD)/asan/test_f64
	ASAN_OPTIONS=detect_leaks=1 OMP_NUM_THREADS=2 ./$(BUILD)/asan/test_f64 $(ASAN_TESTS)
	$(CC) $(CFLAGS) $(ASAN_FLAGS) $(SRC) $(TESTS) $(LDLIBS) -o $(BUILD)/asan/test_f32
	ASAN_OPTIONS=detect_leaks=1 OMP_NUM_THREADS=2 ./$(BUILD)/asan/test_f32 $(ASAN_TESTS)

.PHONY: asan
