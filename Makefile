# nomul — build of libnomul (static and shared), the nomul command line and
# the tests. Portable: baseline x86-64 everywhere, with the AVX2 and AVX-512
# kernels in their own objects, chosen at run time (src/core/isa.c).
#
#   make                 library and command line (build/)
#   make test            unit tests, ending with the runner's summary line
#   make SANITIZE=1 test the same under -fsanitize=address,undefined (build-san/)
#   make valgrind        the unit tests under valgrind (AVX2 and scalar paths)
#   make fuzz FUZZ_SECONDS=N  the libFuzzer harnesses of tests/fuzz/ (clang, into
#                        build-fuzz/), each run N seconds (default 60)
#   make fuzz-long       each harness to 10 M executions, resumable, ledger in
#                        tests/fuzz/long_run.tsv (tests/fuzz/long_run.sh)
#   make install PREFIX=/usr/local DESTDIR=
#   make test-python     the Python bindings' tests (python/, tests/python/)
#   make install-python  the nomul Python package into PYTHON_SITE
#   make MPI=0           without Open MPI even when pkg-config finds it (ompi-c);
#                        by default data-parallel training (mpirun) is built in
#                        when libopenmpi-dev is installed

CC ?= cc
PREFIX ?= /usr/local
DESTDIR ?=
# GCC vectorizes at -O2 only loops whose trip count needs no epilogue unless
# told to weigh the cost (clang vectorizes at -O2 and has no such option)
VECT_COST := $(shell $(CC) -fvect-cost-model=dynamic -E -x c /dev/null >/dev/null 2>&1 && echo -fvect-cost-model=dynamic)
OPT ?= -O2 $(VECT_COST)
VERSION := 0.1.0
SOVERSION := 0

OPENBLAS_CFLAGS := $(shell pkg-config --cflags openblas 2>/dev/null)
OPENBLAS_LIBS := $(shell pkg-config --libs openblas 2>/dev/null || echo -lopenblas)
# Open MPI (libopenmpi-dev): data-parallel training, src/dist/
MPI ?= $(shell pkg-config --exists ompi-c 2>/dev/null && echo 1 || echo 0)
ifeq ($(MPI),1)
MPI_CFLAGS := $(shell pkg-config --cflags ompi-c) -DNOMUL_MPI
MPI_LIBS := $(shell pkg-config --libs ompi-c)
endif
WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wno-unused-parameter
CFLAGS_BASE := -std=c11 -D_POSIX_C_SOURCE=200809L $(OPT) -g $(WARN) -fPIC -fopenmp -Iinclude $(OPENBLAS_CFLAGS) $(PNG_CFLAGS) $(MPI_CFLAGS)
AVX2_FLAGS := -mavx2
AVX512_FLAGS := -mavx512f -mavx512bw -mavx512dq -mavx512vl

ifeq ($(FUZZ),1)
BUILD ?= build-fuzz
CFLAGS_BASE += -fsanitize=fuzzer-no-link,address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
else ifeq ($(SANITIZE),1)
BUILD ?= build-san
CFLAGS_BASE += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
else
BUILD ?= build
endif

CFLAGS_ALL := $(CFLAGS_BASE) $(CFLAGS)
PNG_CFLAGS := $(shell pkg-config --cflags libpng 2>/dev/null)
PNG_LIBS := $(shell pkg-config --libs libpng 2>/dev/null || echo -lpng16)
# libxml2's HTML parser reads LibreOffice's help pages (src/text/lohelp.c)
XML_CFLAGS := $(shell pkg-config --cflags libxml-2.0 2>/dev/null || echo -I/usr/include/libxml2)
XML_LIBS := $(shell pkg-config --libs libxml-2.0 2>/dev/null || echo -lxml2)
# ICU's Unicode general categories: sacreBLEU's intl tokenizer (src/text/bleu.c)
ICU_CFLAGS := $(shell pkg-config --cflags icu-uc 2>/dev/null)
ICU_LIBS := $(shell pkg-config --libs icu-uc 2>/dev/null)
ifeq ($(ICU_LIBS)$(filter clean uninstall,$(MAKECMDGOALS)),)
$(error ICU not found (pkg-config icu-uc): apt-get install libicu-dev)
endif
LIBS := $(OPENBLAS_LIBS) $(MPI_LIBS) -lcjson -lz $(PNG_LIBS) -ljpeg $(XML_LIBS) $(ICU_LIBS) -fopenmp -lmvec -lm
# the command line alone rasterizes plots (librsvg, cairo)
RSVG_CFLAGS := $(shell pkg-config --cflags librsvg-2.0 2>/dev/null)
RSVG_LIBS := $(shell pkg-config --libs librsvg-2.0 2>/dev/null || echo -lrsvg-2 -lcairo -lgobject-2.0 -lglib-2.0)

LIB_SRC := $(wildcard src/core/*.c) $(wildcard src/arith/*.c) $(wildcard src/gemm/*.c) \
           $(wildcard src/gemm/float/*.c) \
           $(wildcard src/functional/*.c) $(wildcard src/train/*.c) $(wildcard src/autodiff/*.c) \
           $(wildcard src/data/*.c) $(wildcard src/models/*.c) $(wildcard src/text/*.c) \
           $(wildcard src/dist/*.c)
CLI_SRC := $(wildcard src/cli/*.c)
TEST_SRC := $(wildcard tests/test_*.c)
TEST_SUPPORT := $(filter-out $(TEST_SRC),$(wildcard tests/*.c))

LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/%.o)
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
TEST_SUPPORT_OBJ := $(TEST_SUPPORT:%.c=$(BUILD)/%.o)

STATIC := $(BUILD)/libnomul.a
SHARED := $(BUILD)/libnomul.so.$(VERSION)
CLI := $(BUILD)/nomul

.PHONY: all test check valgrind install uninstall clean test-python install-python fuzz fuzz-build fuzz-long
# the experiments' benchmark programs are built with the rest, so that they
# cannot break unnoticed
BENCHES := $(BUILD)/bn_bench $(BUILD)/zero_mask_bench $(BUILD)/sparse_conv_bench \
           $(BUILD)/rows_bench $(BUILD)/sparse_linear_bench $(BUILD)/conv_pass_bench \
           $(BUILD)/load_port_bench
all: $(STATIC) $(SHARED) $(CLI) $(BENCHES)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -MMD -MP -c $< -o $@

$(BUILD)/src/functional/bn_float_avx2.o: CFLAGS_ALL += $(AVX2_FLAGS) -ffp-contract=off
$(BUILD)/src/functional/bn_float_avx512.o: CFLAGS_ALL += $(AVX512_FLAGS) -ffp-contract=off
$(BUILD)/src/functional/functional_float.o: CFLAGS_ALL += -ffp-contract=off
$(BUILD)/src/arith/pam_avx2.o: CFLAGS_ALL += $(AVX2_FLAGS)
$(BUILD)/src/arith/pam_avx512.o: CFLAGS_ALL += $(AVX512_FLAGS)
$(BUILD)/src/gemm/ukernel_avx2.o: CFLAGS_ALL += $(AVX2_FLAGS)
$(BUILD)/src/gemm/ukernel_avx512.o: CFLAGS_ALL += $(AVX512_FLAGS)
$(BUILD)/src/gemm/csparse_avx512.o: CFLAGS_ALL += $(AVX512_FLAGS)
$(BUILD)/src/gemm/dwplane_avx512.o: CFLAGS_ALL += $(AVX512_FLAGS)
$(BUILD)/src/gemm/float/dwplane_float_avx512.o: CFLAGS_ALL += $(AVX512_FLAGS)
$(BUILD)/src/gemm/dxlive_avx512.o: CFLAGS_ALL += $(AVX512_FLAGS)
$(BUILD)/src/gemm/dxlive_avx2.o: CFLAGS_ALL += $(AVX2_FLAGS)
$(BUILD)/src/gemm/float/dxlive_float_avx512.o: CFLAGS_ALL += $(AVX512_FLAGS)
$(BUILD)/src/gemm/float/csparse_float_avx512.o: CFLAGS_ALL += $(AVX512_FLAGS)
$(BUILD)/src/gemm/clane_avx512.o: CFLAGS_ALL += $(AVX512_FLAGS)
$(BUILD)/src/gemm/float/clane_float_avx512.o: CFLAGS_ALL += $(AVX512_FLAGS)
$(BUILD)/src/gemm/float/fkernel_avx2.o: CFLAGS_ALL += $(AVX2_FLAGS) -mfma
$(BUILD)/src/gemm/float/fkernel_avx512.o: CFLAGS_ALL += $(AVX512_FLAGS)

$(STATIC): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(SHARED): $(LIB_OBJ)
	$(CC) -shared -Wl,-soname,libnomul.so.$(SOVERSION) $(LDFLAGS) -o $@ $^ $(LIBS)
	ln -sf libnomul.so.$(VERSION) $(BUILD)/libnomul.so.$(SOVERSION)
	ln -sf libnomul.so.$(VERSION) $(BUILD)/libnomul.so

$(CLI): $(CLI_OBJ) $(STATIC)
	$(CC) $(LDFLAGS) -o $@ $(CLI_OBJ) $(STATIC) $(LIBS) $(RSVG_LIBS)

$(BUILD)/src/cli/cmd_plot.o: CFLAGS_ALL += $(RSVG_CFLAGS)
$(BUILD)/src/text/lohelp.o: CFLAGS_ALL += $(XML_CFLAGS)
$(BUILD)/src/text/bleu.o: CFLAGS_ALL += $(ICU_CFLAGS)

$(BUILD)/tests/%: tests/%.c $(TEST_SUPPORT_OBJ) $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -Isrc -MMD -MP $< $(TEST_SUPPORT_OBJ) $(STATIC) $(LDFLAGS) -lcmocka $(LIBS) -o $@

$(BUILD)/tests/%.o: CFLAGS_ALL += -Isrc

# one batch norm layer's forward and backward timed (the README's ninth round)
$(BUILD)/bn_bench: experiments/bench/bn_bench.c experiments/bench/bench_util.h $(STATIC)
	$(CC) $(CFLAGS_ALL) $< $(STATIC) $(LDFLAGS) $(LIBS) -o $@

# GELU, the cross-entropy into log_softmax, layer norm and softmax timed,
# float and PA (the fifteenth and sixteenth rounds)
$(BUILD)/rows_bench: experiments/bench/rows_bench.c experiments/bench/bench_util.h $(STATIC)
	$(CC) $(CFLAGS_ALL) $< $(STATIC) $(LDFLAGS) $(LIBS) -o $@

# a feed-forward block's products with the lists of X's nonzeros off and on
# (the eighteenth round; the engine's private mode switch, hence -Isrc)
$(BUILD)/sparse_linear_bench: experiments/bench/sparse_linear_bench.c experiments/bench/bench_util.h $(STATIC)
	$(CC) $(CFLAGS_ALL) -Isrc $< $(STATIC) $(LDFLAGS) $(LIBS) -o $@

# one convolution pass of one layer against a library build (the
# twenty-eighth round), this tree's unless CONV_BENCH_LIB names another
# (experiments/bench/conv_ab.sh: an earlier revision's, built in its own
# tree; overriding STATIC instead would rebuild that file from this tree)
CONV_BENCH_LIB ?= $(STATIC)
$(BUILD)/conv_pass_bench: experiments/bench/conv_pass_bench.c experiments/bench/bench_util.h $(CONV_BENCH_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) $< $(CONV_BENCH_LIB) $(LDFLAGS) $(LIBS) -o $@

# the cost of a PAM tile's zero handling against the FMA (the tenth round);
# AVX-512 by target attributes, the CPU checked at run time
$(BUILD)/zero_mask_bench: experiments/bench/zero_mask_bench.c experiments/bench/bench_util.h
	$(CC) $(CFLAGS_ALL) $< -o $@

# the load ports' rate and the weight gradient's input-by-input loop (the
# forty-second round): AVX-512 by target attributes, the CPU checked at run time
$(BUILD)/load_port_bench: experiments/bench/load_port_bench.c experiments/bench/bench_util.h
	$(CC) $(CFLAGS_ALL) $< -o $@

# skipping a ReLU'd input's zeros in a convolution's forward (the eleventh
# round): AVX-512 by target attributes, the CPU checked at run time; -O3,
# whose unrolling of the lists' transposes is the idea's best case
$(BUILD)/sparse_conv_bench: experiments/bench/sparse_conv_bench.c experiments/bench/bench_util.h
	$(CC) $(CFLAGS_ALL) -O3 $< -o $@

test check: $(TEST_BIN) $(CLI)
	@BUILD=$(BUILD) LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp sh tests/run.sh $(TEST_BIN)

# test_train's arena-bound test decodes with beams of 16 and 40 on the
# AVX2 kernels: over 10 minutes under memcheck (the rest of test_train, 2.5);
# the sanitizer run and make test cover it
VALGRIND_SKIP ?= test_eval_memory_is_checked_first
valgrind: $(TEST_BIN) $(CLI)
	@BUILD=$(BUILD) NOMUL_TEST_VALGRIND=1 NOMUL_TEST_SKIP='$(VALGRIND_SKIP)' sh tests/run.sh $(TEST_BIN)

FUZZ_SECONDS ?= 60
FUZZ_NAMES := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_BIN := $(FUZZ_NAMES:%=$(BUILD)/fuzz/fuzz_%)

$(BUILD)/fuzz/fuzz_%: tests/fuzz/fuzz_%.c tests/fuzz/fuzz.h $(STATIC)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -D_XOPEN_SOURCE=700 -fsanitize=fuzzer $< $(STATIC) $(LDFLAGS) -fsanitize=fuzzer $(LIBS) -o $@

fuzz-build: $(FUZZ_BIN)

fuzz:
	$(MAKE) FUZZ=1 CC=clang fuzz-build
	@FUZZ_SECONDS=$(FUZZ_SECONDS) LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp \
	    sh tests/fuzz/run.sh build-fuzz $(FUZZ_NAMES)

# the long run of issue 17, resumable: tests/fuzz/long_run.sh
fuzz-long:
	$(MAKE) FUZZ=1 CC=clang fuzz-build
	@LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp sh tests/fuzz/long_run.sh build-fuzz

$(BUILD)/nomul.pc: nomul.pc.in
	@mkdir -p $(BUILD)
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' -e 's|@MPI_REQUIRES@|$(if $(filter 1,$(MPI)),ompi-c,)|' $< > $@

install: all $(BUILD)/nomul.pc
	install -d $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include/nomul \
	    $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig
	install -m 644 $(STATIC) $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(SHARED) $(DESTDIR)$(PREFIX)/lib/
	ln -sf libnomul.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libnomul.so.$(SOVERSION)
	ln -sf libnomul.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libnomul.so
	install -m 644 include/nomul/*.h $(DESTDIR)$(PREFIX)/include/nomul/
	install -m 644 $(BUILD)/nomul.pc $(DESTDIR)$(PREFIX)/lib/pkgconfig/
	install -m 755 $(CLI) $(DESTDIR)$(PREFIX)/bin/

# The Python package (python/nomul, ctypes over libnomul.so: no compiled part).
# Debian's python3-numpy and python3-torch serve /usr/bin/python3.
PYTHON ?= /usr/bin/python3
PYTHON_SITE ?= $(PREFIX)/lib/python3/dist-packages

test-python: $(SHARED) $(CLI)
	cd tests/python && NOMUL_LIB=$(CURDIR)/$(BUILD)/libnomul.so $(PYTHON) -m unittest discover -p 'test_*.py'

install-python:
	install -d $(DESTDIR)$(PYTHON_SITE)/nomul $(DESTDIR)$(PYTHON_SITE)/nomul/torch
	install -m 644 python/nomul/*.py $(DESTDIR)$(PYTHON_SITE)/nomul/
	install -m 644 python/nomul/torch/*.py $(DESTDIR)$(PYTHON_SITE)/nomul/torch/

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/lib/libnomul.a $(DESTDIR)$(PREFIX)/lib/libnomul.so* \
	    $(DESTDIR)$(PREFIX)/lib/pkgconfig/nomul.pc $(DESTDIR)$(PREFIX)/bin/nomul
	rm -rf $(DESTDIR)$(PREFIX)/include/nomul $(DESTDIR)$(PYTHON_SITE)/nomul

clean:
	rm -rf build build-san build-fuzz

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d) $(TEST_BIN:=.d) $(TEST_SUPPORT_OBJ:.o=.d)
$(BUILD)/src/gemm/%.o: OPT = -O3
