#!/usr/bin/env bash
# Build the libFuzzer harnesses (clang, with ASan and UBSan) against the library's sources,
# make their seed corpora from real files, and run each for SECONDS (default 60):
#   tests/fuzz/run.sh [SECONDS] [HARNESS...]        (make fuzz FUZZ_SECONDS=N)
#   FUZZ_RUNS=1000000 tests/fuzz/run.sh 0 [HARNESS...]  (N executions each, no time limit)
# FUZZ_OUT (default build/fuzz) keeps two runs apart.
# A crash stops the run with the harness's reproducer in build/fuzz/crashes/; turn it into
# a regression test of the normal suite. Each harness's final statistics (executions,
# coverage) go to build/fuzz/stats.txt.
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS_EACH=${1:-60}
RUNS=${FUZZ_RUNS:-}
shift || true
HARNESSES=${*:-$(cd tests/fuzz && ls fuzz_*.c | sed 's/\.c$//')}
OUT=${FUZZ_OUT:-build/fuzz}
mkdir -p "$OUT/obj" "$OUT/crashes"
CFLAGS="-O1 -g -std=c11 -D_GNU_SOURCE -fno-math-errno -fopenmp -Iinclude -Isrc -DGLOW_NO_CLONES -DGLOW_NO_PACKED_KERNELS
        -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined"
BLAS=/usr/lib/x86_64-linux-gnu/openblas-openmp
LIBS="-L$BLAS -Wl,-rpath,$BLAS -lopenblas -lpng -ljpeg -lz -lm -fopenmp"
objs=()
for src in src/*.c src/cpu/*.c; do
    obj="$OUT/obj/$(echo "$src" | tr / _).o"
    if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ] || [ include/glow.h -nt "$obj" ]; then
        clang $CFLAGS -c "$src" -o "$obj"
    fi
    objs+=("$obj")
done
# glow serve's request handling, for fuzz_api alone.
api_objs=()
for src in cli/api*.c cli/json.c; do
    obj="$OUT/obj/$(echo "$src" | tr / _).o"
    if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ] || [ cli/api.h -nt "$obj" ] || [ cli/api_internal.h -nt "$obj" ]; then
        clang $CFLAGS -c "$src" -o "$obj"
    fi
    api_objs+=("$obj")
done
bash tests/fuzz/seeds.sh "$OUT/corpus"
: > "$OUT/stats.txt"
for h in $HARNESSES; do
    extra=()
    [ "$h" = fuzz_api ] && extra=("${api_objs[@]}")
    clang $CFLAGS -fsanitize=fuzzer "tests/fuzz/$h.c" "${extra[@]}" "${objs[@]}" $LIBS -lpthread -o "$OUT/$h"
    mkdir -p "$OUT/corpus/$h"
    if [ -n "$RUNS" ]; then limit="-runs=$RUNS"; what="$RUNS executions"
    else limit="-max_total_time=$SECONDS_EACH"; what="$SECONDS_EACH s"; fi
    echo "== $h: $what" | tee -a "$OUT/stats.txt"
    start=$(date +%s)
    # -rss_limit_mb: a hostile input must never make the library allocate gigabytes.
    GLOW_FUZZ_MODEL="$OUT/corpus/model" OMP_NUM_THREADS=1 ASAN_OPTIONS=detect_leaks=1 \
        "$OUT/$h" "$OUT/corpus/$h" \
        $limit -rss_limit_mb=1024 -timeout=10 -print_final_stats=1 \
        -artifact_prefix="$OUT/crashes/$h-" 2> "$OUT/$h.log" || {
        tail -40 "$OUT/$h.log"; echo "fuzz: $h failed (reproducer in $OUT/crashes/)"; exit 1; }
    grep -E "^stat::(number_of_executed_units|peak_rss_mb)|cov: " "$OUT/$h.log" | tail -3 | tee -a "$OUT/stats.txt"
    echo "wall_s: $(( $(date +%s) - start ))" | tee -a "$OUT/stats.txt"
done
