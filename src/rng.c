/* rng.c: a counter-based random generator. A draw is a pure function of a 64-bit key and a
 * counter, so any thread, rank or resumed run that asks for the same (key, i) gets the same
 * number. The mixing function is SplitMix64's finaliser, applied twice to key + i. */
#include <math.h>
#include "glow.h"

static uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

uint64_t glow_rng_key(uint64_t seed, uint64_t purpose, uint64_t a, uint64_t b) {
    uint64_t k = mix64(seed + 0x9e3779b97f4a7c15ULL);
    k = mix64(k ^ (purpose * 0xd1b54a32d192ed03ULL));
    k = mix64(k ^ (a * 0xabc98388fb8fac03ULL));
    return mix64(k ^ (b * 0x8cb92ba72f3d8dd7ULL));
}

static uint64_t draw(uint64_t key, uint64_t i) {
    return mix64(mix64(key + i * 0x9e3779b97f4a7c15ULL) ^ key);
}

double glow_rng_uniform(uint64_t key, uint64_t i) {
    return (double)(draw(key, i) >> 11) * 0x1.0p-53; /* 53 random bits in [0, 1) */
}

/* Box-Muller on the pair of uniforms (2i, 2i+1); the cosine branch only, so draw i is
 * independent of whether i-1 was asked for. */
double glow_rng_normal(uint64_t key, uint64_t i) {
    double u1 = glow_rng_uniform(key, 2 * i), u2 = glow_rng_uniform(key, 2 * i + 1);
    return sqrt(-2.0 * log(1.0 - u1)) * cos(2.0 * M_PI * u2);
}
