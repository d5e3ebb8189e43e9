/*
 * cmd_text.c — `nomul corpus ding` (a German–English corpus from Debian's
 * trans-de-en) and `nomul bleu` (sacreBLEU's default score of a file of
 * translations against one or more reference files).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "nomul/nomul.h"

static const char corpus_usage[] =
    "usage: nomul corpus ding [--dict FILE] [-o DIR]\n"
    "\n"
    "Extracts aligned German-English sentence pairs from a Ding dictionary (default:\n"
    "/usr/share/trans/de-en from Debian's trans-de-en) into DIR/{train,valid,test}.{de,en}\n"
    "(default DIR: data/ding-de-en): alternatives paired in order, the first synonym,\n"
    "annotations removed, whole sentences of 4 to 50 words without placeholders,\n"
    "one pair per German sentence; 2% test and 2% valid by a hash of the German side.\n";

static const char bleu_usage[] =
    "usage: nomul bleu --ref REF [--ref REF2 ...] HYP\n"
    "\n"
    "Corpus BLEU of the translations in HYP (one per line) against the references,\n"
    "as sacreBLEU computes it by default (13a tokenization, 4-grams, exp smoothing,\n"
    "closest reference length), printed in sacreBLEU's format. The files must have\n"
    "the same number of lines and be valid UTF-8.\n";

static void quiet(nomul_status status, const char *message) { (void)status, (void)message; }

int cmd_corpus(int argc, char **argv)
{
    if (argc < 2 || cli_is_help(argv[1])) {
        fputs(corpus_usage, argc < 2 ? stderr : stdout);
        return argc < 2 ? CLI_USAGE : CLI_OK;
    }
    if (strcmp(argv[1], "ding")) {
        cli_error("corpus: unknown corpus '%s' (ding)", argv[1]);
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
    const char *refs[16], *hyp = NULL, *arg;
    int nref = 0;
    while ((arg = cli_next(&a))) {
        if (cli_is_help(arg)) {
            fputs(bleu_usage, stdout);
            return CLI_OK;
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
    if (nomul_bleu((const char *const *)p[0]->src, rl, nref, p[0]->n, &r)) {
        cli_error("bleu: %s", nomul_last_error_message());
        rc = CLI_FAILED;
        goto out;
    }
    printf("BLEU = %.2f %.1f/%.1f/%.1f/%.1f (BP = %.3f ratio = %.3f hyp_len = %ld ref_len = %ld)\n",
           r.score, r.precision[0], r.precision[1], r.precision[2], r.precision[3], r.bp,
           r.ref_len ? (double)r.hyp_len / (double)r.ref_len : 0.0, r.hyp_len, r.ref_len);
    rc = CLI_OK;
out:
    for (int j = 0; j < nref; j++)
        nomul_parallel_free(p[j]);
    return rc;
}
