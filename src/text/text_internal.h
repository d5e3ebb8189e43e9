/*
 * text_internal.h — what the text readers share inside src/text: the one
 * UTF-8 check (RFC 3629) that parallel text, BPE codes, dict.txt and
 * `nomul bpe apply` all apply.
 */
#ifndef NOMUL_TEXT_INTERNAL_H
#define NOMUL_TEXT_INTERNAL_H

#include <stddef.h>

/* The byte offset of the first invalid UTF-8 sequence in s[0..n), or -1 (no
 * overlongs, no surrogates, nothing above U+10FFFF). */
long nomul_utf8_invalid_at(const unsigned char *s, size_t n);

#endif
