/*
 * tu_files.h — what the file-reading tests share: a temporary folder per
 * test program, paths inside it, the last error message of libnomul
 * captured instead of printed, and a small image set and a small translation
 * task for training runs.
 */
#ifndef NOMUL_TU_FILES_H
#define NOMUL_TU_FILES_H

#include <stddef.h>

/* The message of the last error libnomul reported since
 * tu_tmpdir_setup (which installs the capturing handler). */
extern char tu_last_error[1024];

/* Makes $TMPDIR/nomul-TAG-XXXXXX (or under /tmp); 0 on success. */
int tu_tmpdir_setup(const char *tag);
/* Removes it and everything in it; 0 on success. */
int tu_tmpdir_teardown(void);
/* The folder, and NAME inside it (four results stay valid at a time). */
const char *tu_tmpdir(void);
const char *tu_path(const char *name);

/* The whole file at path, NUL-terminated (malloc'd), its length in *len if
 * len is not NULL; a file that cannot be read fails the test (cmocka). */
char *tu_slurp(const char *path, size_t *len);

/* n images of TU_SET_SIDE² pixels whose class (of TU_SET_CLASSES) is the
 * bright quadrant, plus noise drawn from seed, and their labels, as IDX
 * files (the images gzipped if gzip); 0 on success. */
enum { TU_SET_SIDE = 8, TU_SET_CLASSES = 4 };
int tu_write_quadrant_set(const char *images, const char *labels, long n,
                          unsigned long long seed, int gzip);

/* A translation task in the temporary folder: {train,valid,test}.{src,tgt}
 * (120, 16 and 12 pairs) of 3 to 6 words w0..w11 drawn from seed, each
 * target its source reversed, and a fairseq dict.txt of the 12 words. */
void tu_write_reversal_set(unsigned long long seed);

#endif
