/*
 * nomul/text.h — text for translation: parallel corpora (one UTF-8 sentence
 * per line in a source and a target file), a German–English corpus built
 * from Debian's trans-de-en dictionary, corpora from LibreOffice's help pages,
 * and BLEU as sacreBLEU scores it.
 */
#ifndef NOMUL_TEXT_H
#define NOMUL_TEXT_H

#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Reads every line of a stream (LF or CRLF; a last line without a newline
 * counts) into *lines, each without its line break; name labels errors:
 * invalid UTF-8 (RFC 3629) or a NUL byte is an error naming it and the line.
 * Returns the count, or -1 after the report (*lines NULL). */
long nomul_text_read_lines(FILE *f, const char *name, char ***lines);
void nomul_text_free_lines(char **lines, long n);

/* A parallel corpus: src[i] translates to tgt[i]. */
typedef struct nomul_parallel {
    long n;
    char **src, **tgt;
} nomul_parallel;

/* Reads two files of one sentence per line (LF or CRLF). Invalid UTF-8 (RFC
 * 3629), a NUL byte, or line counts that differ are errors naming the file
 * and line; NULL after the report. */
nomul_parallel *nomul_parallel_read(const char *src_path, const char *tgt_path);
void nomul_parallel_free(nomul_parallel *p);

/* Builds a German–English corpus from a Ding dictionary file (Debian's
 * /usr/share/trans/de-en: "DE | DE2 :: EN | EN2", ";" between synonyms,
 * {m} [ugs.] (…) annotations) into out_dir/{train,valid,test}.{de,en}:
 * alternatives paired in order (entries whose sides have different counts
 * skipped), the first synonym of each side, annotations removed, spaces
 * collapsed; kept when both sides are whole sentences (an uppercase first
 * letter, ending in . ! or ?, 4 to 50 words) without the dictionary's
 * placeholders (etw., jdm., sth., sb., ...), the first pair of each German
 * sentence only. The split hashes the German sentence (FNV-1a, mod 100):
 * 0–1 test, 2–3 valid, the rest train. counts: train, valid, test. */
int nomul_ding_corpus(const char *dict_path, const char *out_dir, long counts[3]);

/* A parallel corpus from LibreOffice's help pages (Debian's
 * libreoffice-help-LANG: .html pages under help_root/LANG, the same relative
 * paths and the same id attributes in every language). A language code names
 * the folder help_root/LANG, or the one help_root/LANG-* ("en" is "en-US");
 * a missing or ambiguous one is an error naming the languages there. Every
 * page (libxml2's HTML parser, errors recovered, no network) gives its units:
 * the p, h1–h6, td, th, li, dt and dd elements with an id attribute inside
 * <div id="DisplayArea"> (the whole page without one), not nested in another
 * unit, the first of a repeated id; a unit's text is its text nodes in order
 * (entities decoded; inline markup flattened; a space for <br> and around
 * nested blocks; hidden switch cases dropped except the id "default…" one;
 * scripts and styles dropped), normalized by nomul_lohelp_normalize. Units
 * pair by (page, id); a pair is dropped when a side is empty, the sides are
 * identical, a side has more than NOMUL_LOHELP_MAX_WORDS words, the longer
 * side has more than NOMUL_LOHELP_MAX_RATIO × the shorter's words +
 * NOMUL_LOHELP_RATIO_SLACK, or its source text came before (pages in byte
 * order, units in document order). The split hashes the source text
 * (FNV-1a mod 1000: 0–28 test, 29–57 valid, the rest train) into
 * out_dir/{train,valid,test}.{src_lang,tgt_lang}. 0, or -1 after a report. */
#define NOMUL_LOHELP_MAX_WORDS 100
#define NOMUL_LOHELP_MAX_RATIO 3
#define NOMUL_LOHELP_RATIO_SLACK 3
typedef struct nomul_lohelp_counts {
    long pages;        /* source-language pages */
    long pages_paired; /* of those, pages the target language has too */
    long units;        /* units in the paired pages (source side) */
    long paired;       /* of those, ids the target page has too */
    long dropped[4];   /* empty side, identical sides, too long, length ratio */
    long duplicates;   /* a source text seen before */
    long split[3];     /* train, valid, test */
} nomul_lohelp_counts;
int nomul_lohelp_corpus(const char *help_root, const char *src_lang, const char *tgt_lang,
                        const char *out_dir, nomul_lohelp_counts *counts);
/* A unit's text normalized in place: $[officename] and %PRODUCTNAME (the help's
 * product-name variables) become LibreOffice; white space (ASCII, U+00A0,
 * U+2000–U+200A, U+202F, U+205F, U+3000) collapses to one space, trimmed;
 * U+00AD, U+200B, U+FEFF and other control characters are removed. */
void nomul_lohelp_normalize(char *text);

/* Word tokenization in the style of the Moses tokenizer (what fairseq's
 * IWSLT14 preparation runs before BPE; rules written for nomul, no escaping
 * of & | < > ' " [ ]), per language: "en", "de" (a code such as "en-US" counts
 * by its first two letters), anything else generic. White space collapses,
 * control characters go; every character but letters, digits, periods,
 * hyphens, commas and apostrophes becomes a token ("..." and "…" too), except
 * (nomul's departure from Moses, for technical text) a symbol other than a
 * bracket or quote between two letters or digits (and/or, in_out, B2:E5,
 * Ctrl+C stay words); commas
 * split off unless between digits (1,000); hyphens stay inside words
 * (E-Mail); apostrophes: English "don't" → "don 't" and "1990's" → "1990 's",
 * German keeps them between letters ("geht's"), others split them off; a
 * word's final period splits off unless the word has a period and a letter
 * inside (z.B., U.S.), is a nonbreaking prefix (nomul's lists: single letters,
 * titles, months, common abbreviations), is followed by a lowercase word, or
 * is a numeric prefix (No., Nr., S.) before a number. A malloc'd string, or
 * NULL after a report (invalid UTF-8). */
char *nomul_moses_tokenize(const char *line, const char *lang);
/* The inverse for ordinary text, as Moses' detokenizer: , . ? ! : ; % ) ] } …
 * join the previous token, ( [ { ¿ ¡ and a currency sign before a number the
 * next (in German only after a word: 5 € stays); straight double quotes alternate opening and closing, a lone
 * apostrophe closes an open one, else (English) joins a word ending in s, else
 * opens; English 't 's 're ... join the word before; typographic quotes open
 * and close by the language's convention (en “ ‘ « open, ” » close; de „ ‚ »
 * open, “ ‘ « close). detok(tok(x)) == x for text spaced that way. */
char *nomul_moses_detokenize(const char *line, const char *lang);

/* sacreBLEU's default tokenizer "13a" (mteval-v13a.pl): entities unescaped,
 * ASCII punctuation split off, periods and commas split unless between
 * digits, dashes after digits split, spaces collapsed. A malloc'd string
 * (free it), or NULL after a report. */
char *nomul_tokenize_13a(const char *line);

/* sacreBLEU's "intl" tokenizer (mteval-v14's international tokenization):
 * in turn, punctuation after a non-number split off ((\P{N})(\p{P}) →
 * "\1 \2 "), punctuation before a non-number ((\p{P})(\P{N}) → " \1 \2"),
 * symbols (\p{S} → " \1 "), each rule's matches left to right without
 * overlap as Python's regex.sub, then whitespace collapsed; N, P, S are
 * ICU's Unicode general categories. "1,000.5" stays whole, "Hello, world!"
 * is "Hello , world !". A malloc'd string (free it), or NULL after a report
 * (invalid UTF-8 is one). */
char *nomul_tokenize_intl(const char *line);

typedef struct nomul_bleu_result {
    double score;        /* BLEU, 0..100 */
    double precision[4]; /* n-gram precisions in percent (smoothed where 0) */
    double bp;           /* brevity penalty */
    long hyp_len, ref_len;
    long matches[4], totals[4];
} nomul_bleu_result;

/* Corpus BLEU of n hypotheses against nrefs reference sets (refs[j][s] is
 * reference j of sentence s), exactly as sacreBLEU's defaults (13a, 4-grams,
 * "exp" smoothing, closest reference length; each segment's trailing
 * whitespace cut first, as sacreBLEU's rstrip). 0, or -1 after a report. */
int nomul_bleu(const char *const *hyps, const char *const *const *refs, int nrefs, long n,
               nomul_bleu_result *r);

/* sacreBLEU's --tokenize: 13a (the default), none (split on whitespace
 * only), char (every character a token), intl (nomul_tokenize_intl; a
 * segment of invalid UTF-8 is an error naming it). */
typedef enum {
    NOMUL_BLEU_TOK_13A,
    NOMUL_BLEU_TOK_NONE,
    NOMUL_BLEU_TOK_CHAR,
    NOMUL_BLEU_TOK_INTL
} nomul_bleu_tok;

typedef struct nomul_bleu_opts {
    int lowercase; /* sacreBLEU's -lc: Python's str.lower() for Latin, Greek, Cyrillic */
    nomul_bleu_tok tokenize;
} nomul_bleu_opts;

/* nomul_bleu with sacreBLEU's options (NULL: the defaults). */
int nomul_bleu_opt(const char *const *hyps, const char *const *const *refs, int nrefs, long n,
                   const nomul_bleu_opts *o, nomul_bleu_result *r);

/* Byte-pair encoding as subword-nmt: words (split on spaces) as UTF-8 code
 * points, the last marked "</w>"; each merge joins the most frequent
 * adjacent pair (ties: the greatest pair of strings, as subword-nmt's max
 * over (count, pair)); learning stops after `merges` merges or when the best
 * pair occurs fewer than min_freq times. NULL after a report (a line of
 * invalid UTF-8 is one). */
typedef struct nomul_bpe nomul_bpe;
nomul_bpe *nomul_bpe_learn(const char *const *lines, long n, int merges, int min_freq);
/* A merges file in subword-nmt's format ("#version: 0.2", then "A B" lines;
 * CRLF read), written or read: a folder, no merges, another version, a
 * malformed line, invalid UTF-8 or a NUL is refused (the line named). */
int nomul_bpe_save(const nomul_bpe *b, const char *path);
nomul_bpe *nomul_bpe_load(const char *path);
int nomul_bpe_merges(const nomul_bpe *b);
void nomul_bpe_free(nomul_bpe *b);
/* A line segmented as subword-nmt's apply_bpe: the lowest-ranked pair merged
 * while any applies, every subword but a word's last marked "@@"; malloc'd
 * (free it), NULL after a report (invalid UTF-8 is one). */
char *nomul_bpe_apply(nomul_bpe *b, const char *line);
/* A vocabulary read from fairseq's dict.txt ("TOKEN COUNT" lines, trailing
 * white space and CRLF stripped): ids 0..3 are fairseq's specials <s>, <pad>,
 * </s>, <unk>, then the file's tokens in order. "TOKEN COUNT
 * #fairseq:overwrite" adds TOKEN again under the next id, which it then looks
 * up to, as fairseq does. A malformed line, a repeated token without that
 * flag, invalid UTF-8, a NUL or a count beyond a long is an error naming the
 * line. */
enum { NOMUL_BOS = 0, NOMUL_PAD = 1, NOMUL_EOS = 2, NOMUL_UNK = 3 };
typedef struct nomul_vocab nomul_vocab;
nomul_vocab *nomul_vocab_load(const char *path);
void nomul_vocab_free(nomul_vocab *v);
int nomul_vocab_size(const nomul_vocab *v);
int nomul_vocab_id(const nomul_vocab *v, const char *token); /* -1 if absent */
const char *nomul_vocab_token(const nomul_vocab *v, int id);
/* The ids of a line's space-separated tokens (unknown ones <unk>) and </s>,
 * as fairseq binarizes; their count, or -1 after a report if more than max. */
int nomul_vocab_encode(const nomul_vocab *v, const char *line, int *ids, int max);

/* Batches by a token budget, as fairseq's --max-tokens: pairs ordered by
 * target then source length (stable), each batch filled while
 * (pairs + 1) · (longest side) ≤ max_tokens. *order receives the pair
 * indices in that order, *starts the nb + 1 batch boundaries in it (both
 * malloc'd); returns nb, or -1 after a report (a pair longer than the budget
 * is named). */
long nomul_token_batches(const long *src_len, const long *tgt_len, long n, long max_tokens,
                         long **starts, long **order);
/* The order of nb batches in an epoch: a Fisher–Yates shuffle from the seed
 * and the epoch, so a resumed run replays it. */
void nomul_shuffle_batches(long nb, uint64_t seed, long epoch, long *perm);

/* Undoes the segmentation in place ("@@ " and a final "@@" removed), as
 * fairseq's --remove-bpe before scoring. */
void nomul_bpe_remove(char *line);

#ifdef __cplusplus
}
#endif

#endif
