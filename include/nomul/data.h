/*
 * nomul/data.h — datasets from real files.
 *
 * IDX (the format of MNIST and Fashion-MNIST, LeCun's "magic 0x0000TTDD"
 * header, big-endian dimensions) read plain or gzip-compressed through zlib:
 * a gzip file is recognised by its content, not by its name. Every check a
 * file can fail (it cannot be opened, its magic is wrong, it is truncated,
 * corrupt, has bytes after its data, or images and labels disagree) is a
 * reported error (nomul/error.h) that names the file; nothing is returned
 * half-read.
 */
#ifndef NOMUL_DATA_H
#define NOMUL_DATA_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* IDX element types, as the format numbers them. */
typedef enum nomul_idx_type {
    NOMUL_IDX_U8 = 0x08,
    NOMUL_IDX_I8 = 0x09,
    NOMUL_IDX_I16 = 0x0B,
    NOMUL_IDX_I32 = 0x0C,
    NOMUL_IDX_F32 = 0x0D,
    NOMUL_IDX_F64 = 0x0E,
} nomul_idx_type;

#define NOMUL_IDX_MAX_DIMS 8

/* One IDX array: dims[0] is the item count; data holds dims[0]*...*dims[ndim-1]
 * elements of `type`, converted to host byte order. */
typedef struct nomul_idx {
    nomul_idx_type type;
    int ndim;
    long dims[NOMUL_IDX_MAX_DIMS];
    long count;      /* elements in all */
    int elem_bytes;  /* 1, 2, 4 or 8 */
    void *data;
} nomul_idx;

/* Reads an IDX file (plain or gzip); NULL after a report on any problem. */
nomul_idx *nomul_idx_read(const char *path);
void nomul_idx_free(nomul_idx *a);
/* Writes an IDX file (gzip-compressed when gzip is nonzero); 0 on success. */
int nomul_idx_write(const char *path, const nomul_idx *a, int gzip);

/* A labelled image dataset in memory: n images of h×w pixels with c channels,
 * stored as bytes in height, width, channel order (as IDX and image files
 * hold them), and one label in [0, classes) per image. */
typedef struct nomul_image_set {
    long n;
    int h, w, c;
    int classes;
    uint8_t *pixels; /* n*h*w*c */
    int32_t *labels; /* n */
} nomul_image_set;

/* Pairs an IDX image file (unsigned bytes, N×H×W or N×H×W×C) with an IDX
 * label file (unsigned bytes, N): the counts must agree and every label be
 * below `classes` (0: one more than the largest label). NULL after a report. */
nomul_image_set *nomul_image_set_from_idx(const char *images_path, const char *labels_path,
                                          int classes);
void nomul_image_set_free(nomul_image_set *s);

/* CIFAR binary batches (data_batch_1.bin ... data_batch_5.bin, test_batch.bin):
 * records of `label_bytes` label bytes (1 for CIFAR-10; 2 for CIFAR-100,
 * coarse then fine, of which the fine label is kept) then 32×32×3 pixels,
 * channel-major. The files are concatenated in the order given; a file whose
 * size is not a whole number of records, or a label not below the class
 * count (10 or 100), is an error naming the file. */
/* An image folder, as torchvision's ImageFolder reads one: root/CLASS/FILE,
 * classes numbered in the byte order of their folder names, files with the
 * extensions .png, .jpg or .jpeg (any case) in name order within each class;
 * other files are skipped. Images are decoded (libpng, libjpeg) to c channels
 * (1: grey, 3: RGB; palettes, 16-bit samples and alpha, composited on black,
 * are converted) and must all be h×w (h = w = 0: the size of the first one),
 * at most NOMUL_IMAGE_MAX_SIDE on each side (checked against the first
 * image's header before any pixel is allocated).
 * Errors name the file or folder: none or an empty class folder, an image
 * that does not decode, or one of another size. class_names (optional)
 * receives a malloc'd array of `classes` malloc'd names. */
#define NOMUL_IMAGE_MAX_SIDE 4096
nomul_image_set *nomul_image_set_from_folder(const char *root, int h, int w, int c,
                                             char ***class_names);

nomul_image_set *nomul_image_set_from_cifar(const char *const *paths, int npaths,
                                            int label_bytes);

/* Augmentation and normalization of a batch. Each image's random choices
 * come from (seed, epoch, image index) alone, so a batch is the same whatever
 * thread prepares it and a resumed run sees the images it would have seen.
 * Normalization (v/255 − mean[c]) / std[c] is tabulated per channel (256
 * entries per batch), so each pixel costs a table lookup. Sets of more than
 * 4 channels are refused by the loader. */
typedef struct nomul_augment {
    int crop_pad;   /* random crop of the original size after zero padding by this much */
    int hflip;      /* flip left-right with probability 1/2 */
    float mean[4];  /* per channel, on the 0..1 scale */
    float std[4];   /* per channel; 0 is taken as 1 */
    /* RandAugment (timm's rand-mM-mstdS-inc1): randaugment_n operations per
     * image (0: off), magnitude randaugment_m (0..10) with standard deviation
     * randaugment_mstd, each applied with probability 1/2 */
    int randaugment_n;
    float randaugment_m, randaugment_mstd;
    /* random erasing (timm's mode "pixel"): with this probability a box of
     * 2%..33% of the image, aspect 0.3..3.3, is filled with N(0, 1) noise
     * after normalization */
    float erase_prob;
} nomul_augment;

/* One RandAugment operation on an 8-bit image (h×w×c, c ≤ 4), in place:
 * AutoContrast, Equalize, Invert, Rotate, Posterize, Solarize, SolarizeAdd,
 * Color, Contrast, Brightness, Sharpness, ShearX, ShearY, TranslateX,
 * TranslateY, at a signed level in [−1, 1] (magnitude / 10; the sign picks
 * the direction), geometric ones filling with `fill`. 0, or -1 after a report
 * for an unknown name. */
int nomul_augment_op(const char *name, uint8_t *img, int h, int w, int c, float level,
                     uint8_t fill);

/* Writes images idx[0..b) of s as float N×C×H×W into x, labels into y. */
void nomul_make_batch(const nomul_image_set *s, const long *idx, int b, const nomul_augment *aug,
                      uint64_t seed, long epoch, float *x, int32_t *y);

/* Batches over an epoch (a seeded shuffle of the set per epoch, or the set in
 * order), prepared by a background thread one batch ahead of the caller. */
typedef struct nomul_loader nomul_loader;
nomul_loader *nomul_loader_new(const nomul_image_set *s, int batch, int shuffle, int drop_last,
                               const nomul_augment *aug, uint64_t seed);
/* Starts epoch `epoch` at batch `first` (0 normally; a resumed run passes
 * where it stopped). */
void nomul_loader_start(nomul_loader *l, long epoch, long first);
/* The next batch of the epoch: its size (0 at the end of the epoch), with
 * *x (N×C×H×W) and *y valid until the next call of next or start. */
int nomul_loader_next(nomul_loader *l, const float **x, const int32_t **y);
long nomul_loader_batches(const nomul_loader *l); /* per epoch */
void nomul_loader_free(nomul_loader *l);

#ifdef __cplusplus
}
#endif
#endif
