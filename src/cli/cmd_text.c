/*
 * cmd_text.c — `nomul corpus ding` (a German–English corpus from Debian's
 * trans-de-en), `nomul corpus lohelp` (any two of LibreOffice's help
 * languages), `nomul bleu` (sacreBLEU's default score of a file of
 * translations against one or more reference files) and `nomul tokenize` /
 * `nomul detokenize` (Moses-style, around BPE).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "nomul/nomul.h"

static const char corpus_usage[] =
    "usage: nomul corpus ding [--dict FILE] [-o DIR]\n"
    "       nomul corpus lohelp --src LANG --tgt LANG [-o DIR] [--help-root ROOT]\n"
    "\n"
    "Extracts aligned German-English sentence pairs from a Ding dictionary (default:\n"
    "/usr/share/trans/de-en from Debian's trans-de-en) into DIR/{train,valid,test}.{de,en}\n"
    "(default DIR: data/ding-de-en): alternatives paired in order, the first synonym,\n"
    "annotations removed, whole sentences of 4 to 50 words without placeholders,\n"
    "one pair per German sentence; 2% test and 2% valid by a hash of the German side.\n"
    "\n"
    "'lohelp' pairs the paragraphs, headings and table cells of LibreOffice's help\n"
    "pages (Debian's libreoffice-help-LANG, under ROOT, default\n"
    "/usr/share/libreoffice/help) by page and id attribute into\n"
    "DIR/{train,valid,test}.{SRC,TGT} (default DIR: data/lohelp-SRC-TGT): inline\n"
    "markup flattened, entities decoded, white space collapsed; pairs dropped when a\n"
    "side is empty, the sides are identical, a side has over 100 words, the longer\n"
    "side has over 3x+3 the shorter's words, or the source came before; about 2.9%\n"
    "test and 2.9% valid by a hash of the source side. LANG 'en' finds ROOT/en-US.\n";

static const char bleu_usage[] =
    "usage: nomul bleu --ref REF [--ref REF2 ...] [-lc] [--tokenize 13a|none|char|intl] HYP\n"
    "\n"
    "Corpus BLEU of the translations in HYP (one per line) against the references,\n"
    "as sacreBLEU 2.x computes it (13a tokenization by default, 4-grams, exp smoothing,\n"
    "closest reference length), printed in sacreBLEU's format, then sacreBLEU's\n"
    "signature. The files must have the same number of lines and be valid UTF-8.\n"
    "\n"
    "  -lc                 lowercase first (Python's str.lower() for Latin, Greek, Cyrillic)\n"
    "  --tokenize TOK      13a (default), none (whitespace only), char (every character),\n"
    "                      intl (punctuation and symbols split off by their Unicode\n"
    "                      categories, except punctuation between numbers: \"1,000.5\" stays)\n";

static const char bpe_usage[] =
    "usage: nomul bpe learn --merges N [--min-freq F] -o CODES FILE...\n"
    "       nomul bpe apply --codes CODES < IN > OUT\n"
    "       nomul bpe dict -o dict.txt FILE...\n"
    "\n"
    "Byte-pair encoding as subword-nmt: 'learn' writes a merges file in subword-nmt's\n"
    "format from the words of the files (UTF-8, one sentence per line); 'apply'\n"
    "segments stdin with '@@ ' between subwords; 'dict' counts the tokens of\n"
    "segmented files into fairseq's dict.txt (count descending, then by bytes).\n";

static const char tokenize_usage[] =
    "usage: nomul tokenize --lang LANG < IN > OUT\n"
    "       nomul detokenize --lang LANG < IN > OUT\n"
    "\n"
    "Moses-style word tokenization of each stdin line (before BPE: punctuation split\n"
    "off, commas and periods kept inside numbers, English contractions split as\n"
    "don 't, periods kept on abbreviations), and the inverse (after decoding, so that\n"
    "BLEU scores detokenized text). LANG: en, de (rules and abbreviations per\n"
    "language; en-US counts as en), anything else generic.\n";

static void quiet(nomul_status status, const char *message) { (void)status, (void)message; }

/* Every line of the files, concatenated (a parallel read of a file with itself
 * checks the UTF-8). */
static nomul_parallel **read_all(const char *command, char **files, int nfiles, long *total)
{
    nomul_parallel **p = calloc((size_t)nfiles, sizeof *p);
    *total = 0;
    for (int i = 0; p && i < nfiles; i++) {
        if (!(p[i] = nomul_parallel_read(files[i], files[i]))) {
            cli_error("%s: %s", command, nomul_last_error_message());
            for (int k = 0; k < i; k++)
                nomul_parallel_free(p[k]);
            free(p);
            return NULL;
        }
        *total += p[i]->n;
    }
    return p;
}

static int by_string(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int by_count(const void *a, const void *b)
{
    const struct tok {
        const char *s;
        long n;
    } *x = a, *y = b;
    return x->n != y->n ? (x->n < y->n ? 1 : -1) : strcmp(x->s, y->s);
}

int cmd_bpe(int argc, char **argv)
{
    if (argc < 2 || cli_is_help(argv[1])) {
        fputs(bpe_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_USAGE : CLI_OK;
    }
    const char *sub = argv[1];
    if (strcmp(sub, "learn") && strcmp(sub, "apply") && strcmp(sub, "dict")) {
        cli_error("bpe: unknown subcommand '%s' (learn, apply, dict)", sub);
        return CLI_USAGE;
    }
    cli_args a;
    cli_args_init(&a, argc - 1, argv + 1, "bpe");
    const char *out = NULL, *codes = NULL, *arg;
    uint64_t merges = 0, minf = 2;
    char *files[256];
    int nfiles = 0;
    while ((arg = cli_next(&a))) {
        if (cli_is_help(arg)) {
            fputs(bpe_usage, stdout);
            return CLI_OK;
        } else if (cli_is(&a, arg, "merges")) {
            const char *v = cli_value(&a, "merges");
            if (!v || !cli_parse_u64("--merges", v, 1, 10000000, &merges))
                return CLI_USAGE;
        } else if (cli_is(&a, arg, "min-freq")) {
            const char *v = cli_value(&a, "min-freq");
            if (!v || !cli_parse_u64("--min-freq", v, 1, 1000000000, &minf))
                return CLI_USAGE;
        } else if (cli_is(&a, arg, "codes")) {
            if (!(codes = cli_value(&a, "codes")))
                return CLI_USAGE;
        } else if (!strcmp(arg, "-o") || cli_is(&a, arg, "output")) {
            if (!strcmp(arg, "-o") ? !(out = cli_next(&a)) : !(out = cli_value(&a, "output"))) {
                cli_error("bpe: -o needs a file");
                return CLI_USAGE;
            }
        } else if (arg[0] == '-' && arg[1]) {
            cli_unknown(&a, arg);
            return CLI_USAGE;
        } else if (nfiles < 256)
            files[nfiles++] = (char *)arg;
    }
    nomul_set_error_handler(quiet);
    if (!strcmp(sub, "apply")) {
        if (!codes || nfiles) {
            cli_error("bpe apply: want --codes CODES and the text on stdin");
            return CLI_USAGE;
        }
        nomul_bpe *b = nomul_bpe_load(codes);
        if (!b) {
            cli_error("bpe apply: %s", nomul_last_error_message());
            return CLI_USAGE;
        }
        char *line = NULL;
        size_t cap = 0;
        ssize_t len;
        int rc = CLI_OK;
        long no = 0;
        while ((len = getline(&line, &cap, stdin)) >= 0) {
            no++;
            if (len > 0 && line[len - 1] == '\n')
                line[--len] = 0;
            if (memchr(line, 0, (size_t)len)) { /* as learn, dict and translate refuse */
                cli_error("bpe apply: <stdin>:%ld: a NUL byte in the line", no);
                rc = CLI_USAGE;
                break;
            }
            char *o = nomul_bpe_apply(b, line);
            if (!o) {
                cli_error("bpe apply: <stdin>:%ld: %s", no, nomul_last_error_message());
                rc = CLI_USAGE;
                break;
            }
            puts(o);
            free(o);
        }
        free(line);
        nomul_bpe_free(b);
        return rc;
    }
    if (!out || !nfiles || (!strcmp(sub, "learn") && !merges)) {
        cli_error("bpe %s: want %s-o FILE and input files", sub,
                  strcmp(sub, "learn") ? "" : "--merges N, ");
        return CLI_USAGE;
    }
    long total;
    nomul_parallel **p = read_all(sub, files, nfiles, &total);
    if (!p)
        return CLI_USAGE;
    const char **lines = malloc(sizeof *lines * (size_t)(total ? total : 1));
    long k = 0;
    for (int i = 0; lines && i < nfiles; i++)
        for (long j = 0; j < p[i]->n; j++)
            lines[k++] = p[i]->src[j];
    int rc = CLI_FAILED;
    if (!lines) {
        cli_error("bpe: out of memory");
    } else if (!strcmp(sub, "learn")) {
        nomul_bpe *b = nomul_bpe_learn(lines, total, (int)merges, (int)minf);
        if (!b || nomul_bpe_save(b, out))
            cli_error("bpe learn: %s", nomul_last_error_message());
        else {
            printf("%s: %d merges from %ld lines\n", out, nomul_bpe_merges(b), total);
            rc = CLI_OK;
        }
        nomul_bpe_free(b);
    } else { /* dict: tokens counted, sorted as fairseq's Dictionary.finalize */
        struct tok {
            const char *s;
            long n;
        } *t = NULL;
        long nt = 0, nw = 0, wcap = 0;
        const char **all = NULL;
        char **copies = calloc((size_t)(total ? total : 1), sizeof *copies);
        for (long i = 0; copies && i < total; i++) {
            if (!(copies[i] = strdup(lines[i])))
                break;
            for (char *save = NULL, *w = strtok_r(copies[i], " ", &save); w;
                 w = strtok_r(NULL, " ", &save)) {
                if (nw == wcap) {
                    const char **na = realloc(all, sizeof *all * (size_t)(wcap = wcap ? 2 * wcap : 4096));
                    if (!na)
                        break;
                    all = na;
                }
                all[nw++] = w;
            }
        }
        /* sort the tokens, count the runs */
        qsort(all, (size_t)nw, sizeof *all, by_string);
        t = malloc(sizeof *t * (size_t)(nw ? nw : 1));
        for (long i = 0; t && i < nw; i++) {
            if (nt && !strcmp(t[nt - 1].s, all[i]))
                t[nt - 1].n++;
            else {
                t[nt].s = all[i];
                t[nt++].n = 1;
            }
        }
        free(all);
        qsort(t, (size_t)nt, sizeof *t, by_count);
        FILE *f = fopen(out, "w");
        if (!f)
            cli_error("bpe dict: cannot write '%s'", out);
        else {
            for (long q = 0; q < nt; q++)
                fprintf(f, "%s %ld\n", t[q].s, t[q].n);
            if (fclose(f))
                cli_error("bpe dict: writing '%s' failed", out);
            else {
                printf("%s: %ld tokens\n", out, nt);
                rc = CLI_OK;
            }
        }
        for (long i = 0; copies && i < total; i++)
            free(copies[i]);
        free(copies);
        free(t);
    }
    free(lines);
    for (int i = 0; i < nfiles; i++)
        nomul_parallel_free(p[i]);
    free(p);
    return rc;
}

static int corpus_lohelp(int argc, char **argv)
{
    cli_args a;
    cli_args_init(&a, argc, argv, "corpus lohelp");
    const char *root = "/usr/share/libreoffice/help", *out = NULL, *src = NULL, *tgt = NULL, *arg;
    while ((arg = cli_next(&a))) {
        if (cli_is_help(arg)) {
            fputs(corpus_usage, stdout);
            return CLI_OK;
        } else if (cli_is(&a, arg, "help-root")) {
            if (!(root = cli_value(&a, "help-root")))
                return CLI_USAGE;
        } else if (cli_is(&a, arg, "src")) {
            if (!(src = cli_value(&a, "src")))
                return CLI_USAGE;
        } else if (cli_is(&a, arg, "tgt")) {
            if (!(tgt = cli_value(&a, "tgt")))
                return CLI_USAGE;
        } else if (cli_is(&a, arg, "output") || !strcmp(arg, "-o")) {
            if (!strcmp(arg, "-o") ? !(out = cli_next(&a)) : !(out = cli_value(&a, "output"))) {
                cli_error("corpus lohelp: -o needs a folder");
                return CLI_USAGE;
            }
        } else {
            cli_unknown(&a, arg);
            return CLI_USAGE;
        }
    }
    if (!src || !tgt) {
        cli_error("corpus lohelp: want --src LANG and --tgt LANG (e.g. --src de --tgt en)");
        return CLI_USAGE;
    }
    char dflt[512];
    if (!out) {
        snprintf(dflt, sizeof dflt, "data/lohelp-%s-%s", src, tgt);
        out = dflt;
    }
    nomul_set_error_handler(quiet);
    nomul_lohelp_counts c;
    if (nomul_lohelp_corpus(root, src, tgt, out, &c)) {
        cli_error("corpus lohelp: %s", nomul_last_error_message());
        return nomul_last_error() == NOMUL_ENOMEM ? CLI_FAILED : CLI_USAGE;
    }
    printf("%s: %ld pages (%ld in both languages), %ld units, %ld paired by id; dropped: %ld "
           "empty, %ld identical, %ld too long, %ld length ratio, %ld duplicates\n",
           root, c.pages, c.pages_paired, c.units, c.paired, c.dropped[0], c.dropped[1],
           c.dropped[2], c.dropped[3], c.duplicates);
    printf("%s: %ld train, %ld valid, %ld test sentence pairs (%s-%s)\n", out, c.split[0],
           c.split[1], c.split[2], src, tgt);
    return CLI_OK;
}

int cmd_corpus(int argc, char **argv)
{
    if (argc < 2 || cli_is_help(argv[1])) {
        fputs(corpus_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_USAGE : CLI_OK;
    }
    if (!strcmp(argv[1], "lohelp"))
        return corpus_lohelp(argc - 1, argv + 1);
    if (strcmp(argv[1], "ding")) {
        cli_error("corpus: unknown corpus '%s' (ding, lohelp)", argv[1]);
        return CLI_USAGE;
    }
    cli_args a;
    cli_args_init(&a, argc - 1, argv + 1, "corpus ding");
    const char *dict = "/usr/share/trans/de-en", *out = "data/ding-de-en", *arg;
    while ((arg = cli_next(&a))) {
        if (cli_is_help(arg)) {
            fputs(corpus_usage, stdout);
            return CLI_OK;
        } else if (cli_is(&a, arg, "dict")) {
            if (!(dict = cli_value(&a, "dict")))
                return CLI_USAGE;
        } else if (cli_is(&a, arg, "output") || !strcmp(arg, "-o")) {
            if (!strcmp(arg, "-o") ? !(out = cli_next(&a)) : !(out = cli_value(&a, "output"))) {
                cli_error("corpus ding: -o needs a folder");
                return CLI_USAGE;
            }
        } else {
            cli_unknown(&a, arg);
            return CLI_USAGE;
        }
    }
    nomul_set_error_handler(quiet);
    long counts[3];
    if (nomul_ding_corpus(dict, out, counts)) {
        cli_error("corpus ding: %s", nomul_last_error_message());
        return nomul_last_error() == NOMUL_ENOMEM ? CLI_FAILED : CLI_USAGE;
    }
    printf("%s: %ld train, %ld valid, %ld test sentence pairs from %s\n", out, counts[0],
           counts[1], counts[2], dict);
    return CLI_OK;
}

int cmd_bleu(int argc, char **argv)
{
    cli_args a;
    cli_args_init(&a, argc, argv, "bleu");
    const char *refs[16], *hyp = NULL, *arg, *tok = "13a";
    int nref = 0;
    nomul_bleu_opts bo = {0, NOMUL_BLEU_TOK_13A};
    while ((arg = cli_next(&a))) {
        if (cli_is_help(arg)) {
            fputs(bleu_usage, stdout);
            return CLI_OK;
        } else if (!strcmp(arg, "-lc") || !strcmp(arg, "--lowercase")) {
            bo.lowercase = 1;
        } else if (cli_is(&a, arg, "tokenize")) {
            if (!(tok = cli_value(&a, "tokenize")))
                return CLI_USAGE;
            if (!strcmp(tok, "13a"))
                bo.tokenize = NOMUL_BLEU_TOK_13A;
            else if (!strcmp(tok, "none"))
                bo.tokenize = NOMUL_BLEU_TOK_NONE;
            else if (!strcmp(tok, "char"))
                bo.tokenize = NOMUL_BLEU_TOK_CHAR;
            else if (!strcmp(tok, "intl"))
                bo.tokenize = NOMUL_BLEU_TOK_INTL;
            else {
                cli_error("bleu: --tokenize '%s': want 13a, none, char or intl", tok);
                return CLI_USAGE;
            }
        } else if (cli_is(&a, arg, "ref")) {
            if (nref == 16) {
                cli_error("bleu: at most 16 references");
                return CLI_USAGE;
            }
            if (!(refs[nref++] = cli_value(&a, "ref")))
                return CLI_USAGE;
        } else if (arg[0] == '-' && arg[1]) {
            cli_unknown(&a, arg);
            return CLI_USAGE;
        } else if (hyp) {
            cli_error("bleu: one hypothesis file only ('%s' and '%s')", hyp, arg);
            return CLI_USAGE;
        } else
            hyp = arg;
    }
    if (!hyp || nref == 0) {
        cli_error("bleu: want --ref REF and a hypothesis file (see nomul bleu --help)");
        return CLI_USAGE;
    }
    nomul_set_error_handler(quiet);
    nomul_parallel *p[16] = {NULL};
    const char *const *rl[16];
    int rc = CLI_USAGE;
    for (int j = 0; j < nref; j++) {
        if (!(p[j] = nomul_parallel_read(hyp, refs[j]))) {
            cli_error("bleu: %s", nomul_last_error_message());
            goto out;
        }
        rl[j] = (const char *const *)p[j]->tgt;
    }
    nomul_bleu_result r;
    if (nomul_bleu_opt((const char *const *)p[0]->src, rl, nref, p[0]->n, &bo, &r)) {
        cli_error("bleu: %s", nomul_last_error_message());
        rc = CLI_FAILED;
        goto out;
    }
    printf("BLEU = %.2f %.1f/%.1f/%.1f/%.1f (BP = %.3f ratio = %.3f hyp_len = %ld ref_len = %ld)\n",
           r.score, r.precision[0], r.precision[1], r.precision[2], r.precision[3], r.bp,
           r.ref_len ? (double)r.hyp_len / (double)r.ref_len : 0.0, r.hyp_len, r.ref_len);
    /* sacreBLEU 2.x's signature; the version names nomul, whose semantics are 2.x's */
    printf("nrefs:%d|case:%s|eff:no|tok:%s|smooth:exp|version:2.x-nomul\n", nref,
           bo.lowercase ? "lc" : "mixed", tok);
    rc = CLI_OK;
out:
    for (int j = 0; j < nref; j++)
        nomul_parallel_free(p[j]);
    return rc;
}

int cmd_tokenize(int argc, char **argv)
{
    const char *cmd = argv[0], *lang = NULL, *arg;
    int detok = !strcmp(cmd, "detokenize");
    cli_args a;
    cli_args_init(&a, argc, argv, cmd);
    while ((arg = cli_next(&a))) {
        if (cli_is_help(arg)) {
            fputs(tokenize_usage, stdout);
            return CLI_OK;
        } else if (cli_is(&a, arg, "lang")) {
            if (!(lang = cli_value(&a, "lang")))
                return CLI_USAGE;
        } else {
            cli_unknown(&a, arg);
            return CLI_USAGE;
        }
    }
    if (!lang) {
        cli_error("%s: want --lang LANG (e.g. --lang de)", cmd);
        return CLI_USAGE;
    }
    nomul_set_error_handler(quiet);
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    long no = 0;
    int rc = CLI_OK;
    while ((len = getline(&line, &cap, stdin)) >= 0) {
        no++;
        if (len > 0 && line[len - 1] == '\n')
            line[--len] = 0;
        if (len > 0 && line[len - 1] == '\r')
            line[--len] = 0;
        if (memchr(line, 0, (size_t)len)) {
            cli_error("%s: <stdin>:%ld: a NUL byte in the line", cmd, no);
            rc = CLI_USAGE;
            break;
        }
        char *o = detok ? nomul_moses_detokenize(line, lang) : nomul_moses_tokenize(line, lang);
        if (!o) {
            cli_error("%s: <stdin>:%ld: %s", cmd, no, nomul_last_error_message());
            rc = CLI_USAGE;
            break;
        }
        puts(o);
        free(o);
    }
    free(line);
    return rc;
}
