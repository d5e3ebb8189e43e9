/*
 * loader.c — batches: augmentation, normalization, and one batch prepared
 * ahead by a background thread.
 *
 * Randomness is a pure function of (seed, epoch, image index) through a
 * splitmix64 hash, never a shared stream: the batch a thread prepares does
 * not depend on timing, and a run resumed at (epoch, batch) continues with
 * exactly the images and crops an uninterrupted run would have used.
 *
 * The prefetch is a two-slot ring with one job in flight: when the caller
 * takes batch j (slot j&1), the worker starts batch j+1 in the other slot,
 * the one the caller gave back by calling again.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "data_internal.h"
#include "nomul/data.h"

static void norm_table(const nomul_image_set *s, const nomul_augment *aug, float t[4][256])
{
    for (int c = 0; c < s->c && c < 4; c++) {
        float mean = aug ? aug->mean[c] : 0.0f, sd = aug && aug->std[c] != 0.0f ? aug->std[c] : 1.0f;
        for (int v = 0; v < 256; v++)
            t[c][v] = ((float)v / 255.0f - mean) / sd;
    }
}

void nomul_make_batch(const nomul_image_set *s, const long *idx, int b, const nomul_augment *aug,
                      uint64_t seed, long epoch, float *x, int32_t *y)
{
    float t[4][256];
    norm_table(s, aug, t);
    const int h = s->h, w = s->w, C = s->c, pad = aug ? aug->crop_pad : 0;
    const size_t plane = (size_t)h * (size_t)w;
    const int ra = aug && aug->randaugment_n > 0;
    uint8_t *work = ra ? malloc(plane * (size_t)C) : NULL;
    const float m0 = aug ? aug->mean[0] * 255.0f : 0.0f;
    const uint8_t fill = (uint8_t)(m0 < 0 ? 0 : m0 > 255 ? 255 : m0 + 0.5f);
    for (int i = 0; i < b; i++) {
        const long id = idx[i];
        uint64_t r = nomul_mix64(nomul_mix64(seed ^ nomul_mix64((uint64_t)epoch)) ^ (uint64_t)id);
        int oy = 0, ox = 0, flip = 0;
        if (pad > 0) {
            oy = (int)(r % (uint64_t)(2 * pad + 1)) - pad;
            r = nomul_mix64(r);
            ox = (int)(r % (uint64_t)(2 * pad + 1)) - pad;
            r = nomul_mix64(r);
        }
        if (aug && aug->hflip)
            flip = (int)(r >> 63);
        const uint8_t *src = s->pixels + (size_t)id * plane * (size_t)C;
        float *dst = x + (size_t)i * plane * (size_t)C;
        /* streams of their own, so turning one augmentation on leaves the
         * others' choices as they were */
        uint64_t ra_r = nomul_mix64(r ^ 0x52414e44ull), er_r = nomul_mix64(r ^ 0x45524153ull);
        if (work) {
            memcpy(work, src, plane * (size_t)C);
            randaugment_image(work, h, w, C, aug, fill, &ra_r);
            src = work;
        }
        for (int c = 0; c < C; c++) {
            const float *tc = t[c < 4 ? c : 3];
            for (int yy = 0; yy < h; yy++) {
                const int sy = yy + oy;
                float *row = dst + (size_t)c * plane + (size_t)yy * (size_t)w;
                for (int xx = 0; xx < w; xx++) {
                    const int sx = (flip ? w - 1 - xx : xx) + ox;
                    row[xx] = sy < 0 || sy >= h || sx < 0 || sx >= w
                                  ? tc[0]
                                  : tc[src[((size_t)sy * (size_t)w + (size_t)sx) * (size_t)C + (size_t)c]];
                }
            }
        }
        if (aug && aug->erase_prob > 0.0f)
            random_erase(dst, h, w, C, aug->erase_prob, &er_r);
        y[i] = s->labels[id];
    }
    free(work);
}

struct nomul_loader {
    const nomul_image_set *s;
    int batch, shuffle, drop_last;
    nomul_augment aug;
    uint64_t seed;
    long nb, epoch, *perm;
    float *x[2];
    int32_t *y[2];
    int size[2];
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int quit, posted, active, slot;
    long job;
};

static void produce(nomul_loader *l, long j, int slot)
{
    long start = j * l->batch, n = l->s->n - start;
    int b = n < l->batch ? (int)n : l->batch;
    nomul_make_batch(l->s, l->perm + start, b, &l->aug, l->seed, l->epoch, l->x[slot], l->y[slot]);
    l->size[slot] = b;
}

static void *worker(void *arg)
{
    nomul_loader *l = arg;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        while (!l->quit && !l->posted)
            pthread_cond_wait(&l->cv, &l->mu);
        if (l->quit)
            break;
        long j = l->job;
        int slot = l->slot;
        pthread_mutex_unlock(&l->mu);
        produce(l, j, slot);
        pthread_mutex_lock(&l->mu);
        l->posted = 0;
        pthread_cond_broadcast(&l->cv);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

nomul_loader *nomul_loader_new(const nomul_image_set *s, int batch, int shuffle, int drop_last,
                               const nomul_augment *aug, uint64_t seed)
{
    if (!s || s->n < 1 || batch < 1 || s->c < 1 || s->c > 4 ||
        (aug && (aug->crop_pad < 0 || aug->crop_pad > s->h || aug->crop_pad > s->w))) {
        nomul_report(NOMUL_EINVAL, "nomul_loader_new: want a non-empty set of 1..4 channels, a "
                                   "batch of at least 1 and a crop padding within the image");
        return NULL;
    }
    if (drop_last && s->n < batch) {
        nomul_report(NOMUL_EINVAL,
                     "nomul_loader_new: %ld images make no full batch of %d (drop_last)", s->n,
                     batch);
        return NULL;
    }
    nomul_loader *l = calloc(1, sizeof *l);
    if (!l)
        goto oom;
    l->s = s;
    l->batch = batch;
    l->shuffle = shuffle;
    l->drop_last = drop_last;
    if (aug)
        l->aug = *aug;
    l->seed = seed;
    l->nb = drop_last ? s->n / batch : (s->n + batch - 1) / batch;
    l->perm = malloc((size_t)s->n * sizeof *l->perm);
    size_t floats = (size_t)batch * (size_t)s->h * (size_t)s->w * (size_t)s->c;
    for (int k = 0; k < 2; k++) {
        l->x[k] = nomul_aligned_alloc(floats * sizeof(float));
        l->y[k] = malloc((size_t)batch * sizeof(int32_t));
        if (!l->x[k] || !l->y[k])
            goto oom;
    }
    if (!l->perm)
        goto oom;
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->cv, NULL);
    if (pthread_create(&l->thread, NULL, worker, l) != 0) {
        pthread_mutex_destroy(&l->mu);
        pthread_cond_destroy(&l->cv);
        nomul_report(NOMUL_ENOMEM, "nomul_loader_new: cannot start the loader thread");
        l->thread = 0;
        goto fail;
    }
    nomul_loader_start(l, 0, 0);
    return l;
oom:
    nomul_report(NOMUL_ENOMEM, "nomul_loader_new: out of memory");
fail:
    if (l) {
        free(l->perm);
        for (int k = 0; k < 2; k++) {
            nomul_aligned_free(l->x[k]);
            free(l->y[k]);
        }
        free(l);
    }
    return NULL;
}

void nomul_loader_start(nomul_loader *l, long epoch, long first)
{
    pthread_mutex_lock(&l->mu);
    while (l->posted) /* the worker reads perm: let it finish */
        pthread_cond_wait(&l->cv, &l->mu);
    l->epoch = epoch;
    const long n = l->s->n;
    for (long i = 0; i < n; i++)
        l->perm[i] = i;
    if (l->shuffle) {
        uint64_t r = nomul_mix64(l->seed ^ nomul_mix64((uint64_t)epoch ^ 0x5EEDull));
        for (long i = n - 1; i > 0; i--) {
            r = nomul_mix64(r);
            long j = (long)(r % (uint64_t)(i + 1));
            long t = l->perm[i];
            l->perm[i] = l->perm[j];
            l->perm[j] = t;
        }
    }
    l->active = first >= 0 && first < l->nb;
    if (l->active) {
        l->job = first;
        l->slot = 0;
        l->posted = 1;
        pthread_cond_broadcast(&l->cv);
    }
    pthread_mutex_unlock(&l->mu);
}

int nomul_loader_next(nomul_loader *l, const float **x, const int32_t **y)
{
    pthread_mutex_lock(&l->mu);
    if (!l->active) {
        pthread_mutex_unlock(&l->mu);
        return 0;
    }
    while (l->posted)
        pthread_cond_wait(&l->cv, &l->mu);
    const int slot = l->slot;
    const long j = l->job;
    l->active = j + 1 < l->nb;
    if (l->active) {
        l->job = j + 1;
        l->slot = slot ^ 1;
        l->posted = 1;
        pthread_cond_broadcast(&l->cv);
    }
    pthread_mutex_unlock(&l->mu);
    *x = l->x[slot];
    *y = l->y[slot];
    return l->size[slot];
}

long nomul_loader_batches(const nomul_loader *l)
{
    return l->nb;
}

void nomul_loader_free(nomul_loader *l)
{
    if (!l)
        return;
    pthread_mutex_lock(&l->mu);
    l->quit = 1;
    pthread_cond_broadcast(&l->cv);
    pthread_mutex_unlock(&l->mu);
    pthread_join(l->thread, NULL);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->cv);
    free(l->perm);
    for (int k = 0; k < 2; k++) {
        nomul_aligned_free(l->x[k]);
        free(l->y[k]);
    }
    free(l);
}
