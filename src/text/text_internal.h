/*
 * text_internal.h — what the text readers share inside src/text: the one
 * UTF-8 check (RFC 3629) that parallel text, BPE codes, dict.txt and
 * `nomul bpe apply` all apply; the corpora's hash, string set and mkdir -p.
 */
#ifndef NOMUL_TEXT_INTERNAL_H
#define NOMUL_TEXT_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

/* The byte offset of the first invalid UTF-8 sequence in s[0..n), or -1 (no
 * overlongs, no surrogates, nothing above U+10FFFF). */
long nomul_utf8_invalid_at(const unsigned char *s, size_t n);

/* FNV-1a of a string: the corpora's split hash and the string sets' hash. */
uint64_t nomul_text_hash(const char *s);

/* A set of strings (open addressing on nomul_text_hash; the strings are not
 * copied): add returns 1 when s was new, 0 when present, -1 out of memory.
 * Zero-initialize; free(slot) when done. */
typedef struct {
    const char **slot;
    size_t cap, n;
} nomul_strset;
int nomul_strset_add(nomul_strset *t, const char *s);

/* mkdir -p; -1 after a report naming the folder. */
int nomul_text_mkdirs(const char *dir);

#endif
