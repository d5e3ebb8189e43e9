/* data_internal.h — what loader.c uses of randaugment.c. */
#ifndef NOMUL_DATA_INTERNAL_H
#define NOMUL_DATA_INTERNAL_H

#include <stdint.h>

#include "nomul/data.h"

/* RandAugment on one 8-bit HWC image, drawing from the stream *r. */
void randaugment_image(uint8_t *img, int h, int w, int c, const nomul_augment *a, uint8_t fill,
                       uint64_t *r);
/* Random erasing of one normalized CHW image with probability prob. */
void random_erase(float *x, int h, int w, int c, float prob, uint64_t *r);

#endif
