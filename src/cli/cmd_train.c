/*
 * cmd_train.c — `nomul train` and `nomul eval`: a configuration from the
 * embedded default, a JSON file, a checkpoint and --set overrides, in that
 * order, handed to the trainer (nomul/train.h).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "nomul/nomul.h"

static const char train_usage[] =
    "usage: nomul train [--config FILE] [--set KEY=VALUE ...] [--resume CHECKPOINT]\n"
    "                   [--keys] [--print-config] [--progress auto|bar|lines]\n"
    "                   [--profile]\n"
    "\n"
    "Trains an image classifier. Without options: the embedded default, vit_fmnist\n"
    "on Fashion-MNIST (Debian's dataset-fashion-mnist) with every operation\n"
    "piecewise affine (forward, backward, loss and optimizer), ending with the\n"
    "multiplication audit of its training steps.\n"
    "\n"
    "  --config FILE      a JSON object of configuration keys over the default\n"
    "                     (repeatable: later files override earlier ones)\n"
    "  --set KEY=VALUE    one key over the configuration (repeatable), e.g.\n"
    "                     --set epochs=5 --set linear_cfg=standard --set data.train_limit=1000\n"
    "  --resume CKPT      continue from a checkpoint: its configuration (then --config\n"
    "                     and --set over it), parameters, optimizer state and step;\n"
    "                     the run continues exactly as if never interrupted\n"
    "  --keys             list every key with its value and meaning, and exit\n"
    "  --print-config     print the resulting configuration as JSON, and exit\n"
    "  --progress MODE    a bar redrawn in place (bar), plain lines (lines) or by\n"
    "                     whether stderr is a terminal (auto, the default)\n"
    "  --profile          at the end, the time per training step by operation\n"
    "                     (forward and backward, float or piecewise affine), the\n"
    "                     optimizer and the batch\n"
    "\n"
    "The run folder (out_dir) receives config.json, metrics.jsonl (one JSON object\n"
    "per log line and per epoch; draw them with 'nomul plot') and\n"
    "checkpoint_last.safetensors (parameters under timm's names, the optimizer's\n"
    "moments under optimizer.*, the configuration and step in the metadata).\n";

static const char translate_usage[] =
    "usage: nomul translate --checkpoint FILE [--config FILE] [--set KEY=VALUE ...]\n"
    "                       [--input FILE | SENTENCE...]\n"
    "\n"
    "Translates raw sentences with a checkpoint of a translation run: the SENTENCE\n"
    "arguments, else the lines of --input FILE, else of stdin; one line of stdout\n"
    "per sentence. Its configuration names the dictionaries, the BPE merges and the\n"
    "tokenizer (data.tokenizer moses: each sentence is tokenized in data.src_lang\n"
    "before BPE, each translation detokenized in data.tgt_lang after BPE is\n"
    "removed); --set beam=N, lenpen, max_len_a, max_len_b or an operation family\n"
    "change the search. At the end the speed (sentences per second, the checkpoint's\n"
    "loading included) is printed: on stdout after the arguments' translations, on\n"
    "stderr when reading a file or stdin.\n";

static const char eval_usage[] =
    "usage: nomul eval --checkpoint FILE [--config FILE] [--set KEY=VALUE ...]\n"
    "\n"
    "Evaluates a checkpoint written by 'nomul train' on the test set of its\n"
    "configuration (--set changes it, e.g. data.test=... or linear_cfg=standard to\n"
    "run the trained weights in float). Prints the test loss and accuracy.\n";

typedef struct opts {
    const char *configs[16], *resume, *checkpoint, *input;
    int nconfigs;
    const char *texts[256]; /* translate: sentences given as arguments */
    int ntexts;
    const char *sets[128];
    int nsets, keys, print, tty, profile;
} opts;

/* The library's reports come out once, through cli_error with the command's
 * name, instead of also on the default handler's line. */
static void quiet(nomul_status status, const char *message) { (void)status, (void)message; }

static int parse(int argc, char **argv, const char *command, opts *o, int *help)
{
    cli_args a;
    cli_args_init(&a, argc, argv, command);
    const char *arg;
    memset(o, 0, sizeof *o);
    o->tty = -1;
    nomul_set_error_handler(quiet);
    *help = 0;
    while ((arg = cli_next(&a))) {
        if (cli_is_help(arg)) {
            *help = 1;
            return CLI_OK;
        } else if (cli_is(&a, arg, "config")) {
            if (o->nconfigs == 16) {
                cli_error("%s: at most 16 --config files", command);
                return CLI_USAGE;
            }
            if (!(o->configs[o->nconfigs++] = cli_value(&a, "config")))
                return CLI_USAGE;
        } else if (cli_is(&a, arg, "resume") && !strcmp(command, "train")) {
            if (!(o->resume = cli_value(&a, "resume")))
                return CLI_USAGE;
        } else if (cli_is(&a, arg, "checkpoint") && strcmp(command, "train")) {
            if (!(o->checkpoint = cli_value(&a, "checkpoint")))
                return CLI_USAGE;
        } else if (cli_is(&a, arg, "input") && !strcmp(command, "translate")) {
            if (!(o->input = cli_value(&a, "input")))
                return CLI_USAGE;
        } else if (!strcmp(command, "translate") && (arg[0] != '-' || !arg[1])) {
            if (o->ntexts == 256) {
                cli_error("%s: at most 256 sentences as arguments (--input FILE for more)",
                          command);
                return CLI_USAGE;
            }
            o->texts[o->ntexts++] = arg;
        } else if (cli_is(&a, arg, "set")) {
            const char *v = cli_value(&a, "set");
            if (!v)
                return CLI_USAGE;
            if (o->nsets == 128) {
                cli_error("%s: at most 128 --set options", command);
                return CLI_USAGE;
            }
            o->sets[o->nsets++] = v;
        } else if (cli_is(&a, arg, "keys") && !strcmp(command, "train")) {
            o->keys = 1;
        } else if (cli_is(&a, arg, "profile") && !strcmp(command, "train")) {
            o->profile = 1;
        } else if (cli_is(&a, arg, "print-config") && !strcmp(command, "train")) {
            o->print = 1;
        } else if (cli_is(&a, arg, "progress") && !strcmp(command, "train")) {
            const char *v = cli_value(&a, "progress");
            if (!v)
                return CLI_USAGE;
            if (!strcmp(v, "auto"))
                o->tty = -1;
            else if (!strcmp(v, "bar"))
                o->tty = 1;
            else if (!strcmp(v, "lines"))
                o->tty = 0;
            else {
                cli_error("%s: --progress wants auto, bar or lines, not '%s'", command, v);
                return CLI_USAGE;
            }
        } else {
            cli_unknown(&a, arg);
            return CLI_USAGE;
        }
    }
    return CLI_OK;
}

/* default → checkpoint (if any) → each --config in order → --set */
static int build_config(const char *command, const opts *o, const char *ckpt,
                        nomul_train_config *c)
{
    nomul_train_config_default(c);
    if (ckpt && nomul_checkpoint_config(ckpt, c)) {
        cli_error("%s: %s", command, nomul_last_error_message());
        return CLI_USAGE;
    }
    for (int i = 0; i < o->nconfigs; i++) {
        char *text;
        if (!cli_read_file(command, o->configs[i], &text))
            return CLI_USAGE;
        int rc = nomul_train_config_parse_json(c, text);
        free(text);
        if (rc) {
            cli_error("%s: %s: %s", command, o->configs[i], nomul_last_error_message());
            return CLI_USAGE;
        }
    }
    for (int i = 0; i < o->nsets; i++) {
        char key[160];
        const char *value;
        if (!cli_split_set(command, o->sets[i], key, sizeof key, &value))
            return CLI_USAGE;
        if (nomul_train_config_set(c, key, value)) {
            cli_error("%s: --set %s", command, nomul_last_error_message());
            return CLI_USAGE;
        }
    }
    if (nomul_train_config_check(c)) {
        cli_error("%s: %s", command, nomul_last_error_message());
        return CLI_USAGE;
    }
    return CLI_OK;
}

int cli_train_config(const char *command, int argc, char **argv, nomul_train_config *c,
                     int *help)
{
    opts o;
    int rc = parse(argc, argv, command, &o, help);
    return rc || *help ? rc : build_config(command, &o, o.checkpoint, c);
}

int cmd_train(int argc, char **argv)
{
    opts o;
    int help, rc = parse(argc, argv, "train", &o, &help);
    if (rc || help) {
        if (help)
            fputs(train_usage, stdout);
        return rc;
    }
    nomul_train_config c;
    if ((rc = build_config("train", &o, o.resume, &c)))
        return rc;
    if (o.keys) {
        printf("configuration keys (current values):\n");
        nomul_train_config_print_keys(&c, stdout);
        return CLI_OK;
    }
    if (o.print) {
        size_t len = (size_t)nomul_train_config_format(&c, NULL, 0) + 1;
        char *json = malloc(len);
        if (!json) {
            cli_error("train: out of memory");
            return CLI_FAILED;
        }
        nomul_train_config_format(&c, json, len);
        fputs(json, stdout);
        free(json);
        return CLI_OK;
    }
    /* under mpirun: join the ranks (a build without MPI refuses) */
    if (nomul_dist_launched_size() > 1 && nomul_dist_init(&argc, &argv)) {
        cli_error("train: %s", nomul_last_error_message());
        return CLI_USAGE;
    }
    const int rank = nomul_dist_rank(), ranks = nomul_dist_size();
    nomul_train_options to = {o.resume, stderr, o.tty, 10.0, o.profile, 0};
    nomul_train_result r;
    if (nomul_train(&c, &to, &r)) {
        rc = nomul_last_error() == NOMUL_ENOMEM || nomul_last_error() == NOMUL_EIO ? CLI_FAILED
                                                                                 : CLI_USAGE;
        if (ranks > 1 && !nomul_dist_error_is_shared()) {
            /* this rank alone failed: the others would wait for it */
            cli_error("train: rank %d of %d: %s; ending all ranks", rank, ranks,
                      nomul_last_error_message());
            nomul_dist_abort(rc);
        }
        if (rank == 0) /* an agreed error: every rank has it, rank 0 says it */
            cli_error("train: %s", nomul_last_error_message());
        nomul_dist_finalize();
        return rc;
    }
    nomul_dist_finalize();
    if (rank > 0)
        return CLI_OK;
    /* the summary on stdout, for scripts */
    printf("steps %ld  train_loss %.4f  %s %.*f  %s %.*f  seconds %.1f\n", r.steps, r.train_loss,
           r.eval_loss.name, r.eval_loss.digits, r.eval_loss.value, r.metric.name, r.metric.digits,
           r.metric.value, r.seconds);
    if (c.audit && r.counted_steps)
        printf("float multiplications per training step: %.0f\n",
               (double)r.counts.n[NOMUL_COUNT_FMUL] / (double)r.counted_steps);
    return CLI_OK;
}

int cmd_eval(int argc, char **argv)
{
    opts o;
    int help, rc = parse(argc, argv, "eval", &o, &help);
    if (rc || help) {
        if (help)
            fputs(eval_usage, stdout);
        return rc;
    }
    if (!o.checkpoint) {
        cli_error("eval: --checkpoint FILE is required (see nomul eval --help)");
        return CLI_USAGE;
    }
    nomul_train_config c;
    if ((rc = build_config("eval", &o, o.checkpoint, &c)))
        return rc;
    double loss, acc;
    if (nomul_evaluate_checkpoint(o.checkpoint, &c, &loss, &acc)) {
        cli_error("eval: %s", nomul_last_error_message());
        return CLI_USAGE;
    }
    printf("%s: %s on %s: test loss %.4f, test accuracy %.2f%%\n", o.checkpoint, c.model,
           c.test_images, loss, 100.0 * acc);
    return CLI_OK;
}

int cmd_translate(int argc, char **argv)
{
    opts o;
    int help, rc = parse(argc, argv, "translate", &o, &help);
    if (rc || help) {
        if (help)
            fputs(translate_usage, stdout);
        return rc;
    }
    if (!o.checkpoint) {
        cli_error("translate: --checkpoint FILE is required (see nomul translate --help)");
        return CLI_USAGE;
    }
    nomul_train_config c;
    if ((rc = build_config("translate", &o, o.checkpoint, &c)))
        return rc;
    if (c.task != NOMUL_TASK_TRANSLATION) {
        cli_error("translate: '%s' is a checkpoint of task '%s', not translation", o.checkpoint,
                  nomul_train_task_name(c.task));
        return CLI_USAGE;
    }
    if (o.input && o.ntexts) {
        cli_error("translate: sentences as arguments or --input FILE, not both");
        return CLI_USAGE;
    }
    char **lines = NULL;
    long n = 0;
    if (o.ntexts) { /* the arguments as lines, checked by the same reader */
        size_t len = 1;
        for (int i = 0; i < o.ntexts; i++)
            len += strlen(o.texts[i]) + 1;
        char *all = malloc(len), *p = all;
        for (int i = 0; all && i < o.ntexts; i++)
            p += sprintf(p, "%s\n", o.texts[i]);
        FILE *f = all ? fmemopen(all, (size_t)(p - all), "r") : NULL;
        n = f ? nomul_text_read_lines(f, "argument", &lines) : -1;
        if (f)
            fclose(f);
        free(all);
        if (n < 0) {
            cli_error("translate: %s", f ? nomul_last_error_message() : "out of memory");
            return f ? CLI_USAGE : CLI_FAILED;
        }
    } else {
        FILE *f = o.input && strcmp(o.input, "-") ? fopen(o.input, "rb") : stdin;
        if (!f) {
            cli_error("translate: cannot open '%s'", o.input);
            return CLI_USAGE;
        }
        n = nomul_text_read_lines(f, f == stdin ? "<stdin>" : o.input, &lines);
        if (f != stdin)
            fclose(f);
        if (n < 0) {
            cli_error("translate: %s", nomul_last_error_message());
            return CLI_USAGE;
        }
    }
    char **out = calloc((size_t)(n ? n : 1), sizeof *out);
    rc = CLI_OK;
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (!out || nomul_translate_checkpoint(o.checkpoint, &c, (const char *const *)lines, n, out)) {
        cli_error("translate: %s", out ? nomul_last_error_message() : "out of memory");
        rc = CLI_USAGE;
    } else {
        clock_gettime(CLOCK_MONOTONIC, &t1);
        double sec = (double)(t1.tv_sec - t0.tv_sec) + 1e-9 * (double)(t1.tv_nsec - t0.tv_nsec);
        for (long i = 0; i < n; i++) {
            puts(out[i]);
            free(out[i]);
        }
        fflush(stdout);
        fprintf(o.ntexts ? stdout : stderr, "%ld sentences in %.2f s: %.1f sentences/s\n", n,
                sec, sec > 0 ? (double)n / sec : 0.0);
    }
    nomul_text_free_lines(lines, n);
    free(out);
    return rc;
}
