#!/usr/bin/env bash
# The line coverage that the fuzzers' corpora reach in each parser's file: the harnesses are
# built again with clang's source-based coverage, run once over every input of their
# corpora (-runs=0), and llvm-cov reports the file each one attacks.
#   tests/fuzz/coverage.sh [OUT...]     OUT: a run.sh output folder (default build/fuzz),
#                                       whose corpus/ is read; several are merged
set -euo pipefail
cd "$(dirname "$0")/../.."
RUNS=${*:-build/fuzz}
COV=build/fuzz-cov
mkdir -p "$COV/obj"
CFLAGS="-O1 -g -std=c11 -D_GNU_SOURCE -fno-math-errno -fopenmp -Iinclude -Isrc -DGLOW_NO_CLONES
        -DGLOW_NO_PACKED_KERNELS -fprofile-instr-generate -fcoverage-mapping"
BLAS=/usr/lib/x86_64-linux-gnu/openblas-openmp
LIBS="-L$BLAS -Wl,-rpath,$BLAS -lopenblas -lpng -ljpeg -lz -lm -fopenmp -lpthread"
objs=()
for src in src/*.c src/cpu/*.c cli/api*.c cli/json.c; do
    obj="$COV/obj/$(echo "$src" | tr / _).o"
    [ -f "$obj" ] && [ "$obj" -nt "$src" ] || clang $CFLAGS -c "$src" -o "$obj" 2> /dev/null
    objs+=("$obj")
done
model=""
for r in $RUNS; do [ -f "$r/corpus/model/checkpoint.glow" ] && model="$r/corpus/model"; done
# Per file: the functions the corpus reaches (the parser's; a file also holds writers and
# other loaders), the lines and branches of those functions that ran, and the whole file's.
printf '| harness | inputs | file | functions reached | their lines run | their branches taken | lines of the whole file |\n'
printf '|---|---|---|---|---|---|---|\n'
for h in fuzz_idx fuzz_cifar fuzz_image fuzz_text fuzz_checkpoint fuzz_npy fuzz_api; do
    dirs=()
    for r in $RUNS; do [ -d "$r/corpus/$h" ] && dirs+=("$r/corpus/$h"); done
    [ ${#dirs[@]} -gt 0 ] || continue
    clang $CFLAGS -fsanitize=fuzzer "tests/fuzz/$h.c" "${objs[@]}" $LIBS -o "$COV/$h" 2> /dev/null
    rm -f "$COV/$h".profraw
    GLOW_FUZZ_MODEL="$model" OMP_NUM_THREADS=1 LLVM_PROFILE_FILE="$COV/$h.profraw" \
        "$COV/$h" -runs=0 "${dirs[@]}" > "$COV/$h.log" 2>&1
    llvm-profdata merge -sparse "$COV/$h.profraw" -o "$COV/$h.profdata"
    n=$(find "${dirs[@]}" -type f | wc -l)
    case $h in
        fuzz_idx|fuzz_cifar) files="src/data.c" ;;
        fuzz_image) files="src/image.c" ;;
        fuzz_text) files="src/data_text.c" ;;
        fuzz_checkpoint) files="src/checkpoint.c" ;;
        fuzz_npy) files="src/latent.c" ;;
        fuzz_api) files="cli/api.c cli/api_cache.c cli/api_compute.c cli/api_request.c cli/json.c" ;;
    esac
    for f in $files; do
        llvm-cov report "$COV/$h" -instr-profile="$COV/$h.profdata" -show-functions "$f" |
        awk -v h="$h" -v n="$n" -v f="$f" '
            $1 == "TOTAL" { tl = $5; tm = $6 }
            NF == 10 && $1 != "Name" && $1 != "TOTAL" {
                all++
                if ($5 > $6) { fr++; l += $5; lm += $6; b += $8; bm += $9 }
            }
            END { printf "| %s | %s | %s | %d of %d | %.1f%% (%d of %d) | %.1f%% (%d of %d) | %.1f%% |\n",
                         h, n, f, fr, all, 100 * (l - lm) / l, l - lm, l, b ? 100 * (b - bm) / b : 100,
                         b - bm, b, 100 * (tl - tm) / tl }'
    done
done
