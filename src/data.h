/* data.h: what data.c and data_text.c share. */
#ifndef GLOW_DATA_H
#define GLOW_DATA_H

#include "glow.h"

/* Labels for the images of a folder data set (d->names set) from "filename,label" lines,
 * integer labels >= 0, an optional header line; every image must have one. */
int dataset_load_labels_csv(glow_dataset *d, const char *path);
/* n_classes := 1 + the largest label. */
void dataset_count_classes(glow_dataset *d);
/* strcmp for qsort and bsearch over the names (char[256]) of a folder's images. */
int dataset_name_cmp(const void *a, const void *b);

#endif
