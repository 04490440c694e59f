/* api_cache.c: the latents of encoded images, in an LRU cache of fixed size, and their
 * ids (api_internal.h). */
#include <stdio.h>
#include <string.h>
#include "api_internal.h"

void api_format_id(char out[17], uint64_t id) { snprintf(out, 17, "%016llx", (unsigned long long)id); }

int api_parse_id(const char *s, uint64_t *id) {
    if (strlen(s) != 16) return -1;
    uint64_t v = 0;
    for (int k = 0; k < 16; k++) {
        int c = s[k];
        int h = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
        if (h < 0) return -1;
        v = v << 4 | (uint64_t)h;
    }
    *id = v;
    return v ? 0 : -1;
}

/* An id is 40 bits drawn from a keyed counter above the 24-bit slot of its entry, so a
 * lookup reads one slot; the drawn bits tell a live id from an evicted one. */
#define SLOT_BITS 24

/* Store a latent; returns its id. The least recently used entry makes room (a scan: this
 * comes with an encoding pass, which costs far more). */
uint64_t api_cache_put(api *a, const glow_real *z, int label, int gallery, double bpd) {
    pthread_mutex_lock(&a->cache_lock);
    int slot = 0;
    for (int i = 0; i < a->cache_n; i++) {
        if (!a->entries[i].id) { slot = i; break; }
        if (a->entries[i].used < a->entries[slot].used) slot = i;
    }
    entry *e = &a->entries[slot];
    if (e->id && e->gallery >= 0) a->gallery_slot[e->gallery] = -1;
    uint64_t id;
    do id = glow_rng_key(a->id_key, 0x656e74, ++a->next, 0) << SLOT_BITS | (uint64_t)slot;
    while (id >> SLOT_BITS == 0);
    *e = (entry){id, ++a->clock, label, gallery, bpd};
    if (gallery >= 0) a->gallery_slot[gallery] = slot;
    memcpy(a->latents + a->dim * slot, z, sizeof(glow_real) * a->dim);
    pthread_mutex_unlock(&a->cache_lock);
    return id;
}

/* Copy the latent of `id` (and its entry) out; -1 if it is not (or no longer) cached. */
int api_cache_get(api *a, uint64_t id, glow_real *z, entry *e) {
    uint64_t slot = id & ((1u << SLOT_BITS) - 1);
    if (slot >= (uint64_t)a->cache_n) return -1;
    pthread_mutex_lock(&a->cache_lock);
    entry *found = a->entries[slot].id == id ? &a->entries[slot] : NULL;
    if (found) {
        found->used = ++a->clock;
        if (z) memcpy(z, a->latents + a->dim * slot, sizeof(glow_real) * a->dim);
        if (e) *e = *found;
    }
    pthread_mutex_unlock(&a->cache_lock);
    return found ? 0 : -1;
}

/* The cached entry of gallery image g, if any: encoding it again would give the same. */
uint64_t api_cache_find_gallery(api *a, int g, entry *e) {
    uint64_t id = 0;
    pthread_mutex_lock(&a->cache_lock);
    int slot = a->gallery_slot[g];
    if (slot >= 0) {
        a->entries[slot].used = ++a->clock;
        *e = a->entries[slot];
        id = e->id;
    }
    pthread_mutex_unlock(&a->cache_lock);
    return id;
}
