/*
 * cmd_bench_train.c — `nomul bench train`: training throughput and peak
 * memory, model by model and operation configuration by configuration (float,
 * PAM products, fully piecewise affine with exact or approximate
 * derivatives), the ratios to float, and, where Debian's python3-torch is
 * installed, the same models trained by PyTorch (experiments/bench/
 * torch_twin.py) at each thread count, all in one run.
 *
 * Every row runs in a child process of its own (fork), so that its peak
 * resident memory (wait4's ru_maxrss) is that row's alone; the rate is
 * nomul_train's steady rate (nomul_train_result.items_per_s: the training
 * steps after the first three, without evaluation).
 */
#define _DEFAULT_SOURCE /* wait4 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cjson/cJSON.h>

#include "cli.h"
#include "nomul/nomul.h"

static const char train_bench_usage[] =
    "usage: nomul bench train [--models LIST] [--configs LIST] [--steps N]\n"
    "                         [--threads N] [--data DIR] [--torch auto|on|off]\n"
    "                         [--torch-threads LIST] [--torch-script FILE]\n"
    "                         [--rounds N]\n"
    "\n"
    "Trains each model with each operation configuration for N timed steps\n"
    "(default 30, after 3 untimed ones; batch 64 images of Fashion-MNIST, or\n"
    "4096 tokens of the translation data in DIR, default data/ding-de-en from\n"
    "sh experiments/ding/prepare.sh), each row in a process of its own, and prints\n"
    "images or tokens per second, the ratio to the model's float row and the\n"
    "row's peak resident memory. With PyTorch (Debian's python3-torch) the same\n"
    "models are trained by its twin script at each of the torch threads (default\n"
    "1 and the nomul threads), the convolutional ones also in channels_last memory\n"
    "format (rows marked cl: faster there), and nomul's float row is compared\n"
    "with the best.\n"
    "\n"
    "  --models LIST    vit_fmnist,resnet20,transformer_tiny,transformer_mini (default;\n"
    "                   transformer_mini is experiments/lohelp's size)\n"
    "  --configs LIST   float,pam,pa,pa_approx (default): float; PAM products (linear,\n"
    "                   conv, bmm) with exact derivatives; every family piecewise\n"
    "                   affine with exact derivatives; the same with the approximate\n"
    "                   backward\n"
    "  --threads N      nomul's threads (default: every core)\n"
    "  --rounds N       runs every row N times, round by round (each round all the\n"
    "                   model's rows in turn), and keeps each row's best rate (default\n"
    "                   1; 3 on a shared machine, whose speed drifts over minutes);\n"
    "                   each row then also prints the least and greatest of its ratios\n"
    "                   to the float row of the same round (the float row: of its\n"
    "                   rates to its best), and the PyTorch comparison its per-round\n"
    "                   range, which a drift between rounds moves less than the best\n"
    "                   rates' ratio\n";

#define MAX_ROWS 16
#define MAX_ROUNDS 100

/* The least and greatest of num[k] / den[k] over the rounds k where both
 * ran (rate > 0) into *lo, *hi; how many rounds that was */
static int round_ratios(int rounds, const double *num, const double *den, double *lo, double *hi)
{
    int n = 0;
    *lo = *hi = 0.0;
    for (int k = 0; k < rounds; k++) {
        if (!(num[k] > 0.0 && den[k] > 0.0))
            continue;
        const double q = num[k] / den[k];
        if (!n || q < *lo)
            *lo = q;
        if (!n || q > *hi)
            *hi = q;
        n++;
    }
    return n;
}

/* "   per round 0.70-0.74x" where two rounds or more give ratios, else "" */
static void round_range(char *buf, size_t size, int rounds, const double *num,
                        const double *den)
{
    double lo, hi;
    buf[0] = 0;
    if (round_ratios(rounds, num, den, &lo, &hi) >= 2)
        snprintf(buf, size, "   per round %.2f-%.2fx", lo, hi);
}

typedef struct {
    double items_per_s, peak_mb;
    long params; /* trainable parameters (nomul rows) */
    int ok;
    char items[16];
    char error[512];
} row_result;

static int is_translation(const char *model) { return strncmp(model, "transformer", 11) == 0; }
/* the convolutional models, whose PyTorch twin also runs in channels_last */
static int is_cnn(const char *model)
{
    return !is_translation(model) && strncmp(model, "vit", 3) != 0;
}

/* The configuration of one row: the defaults of a short run of model on the
 * benchmark's data, with the operation configuration cfg. */
static int row_config(nomul_train_config *c, const char *model, const char *cfg, long steps,
                      const char *data, const char *out_dir)
{
    char v[NOMUL_PATH_MAX + 64];
    nomul_train_config_default(c);
    int bad = nomul_train_config_set(c, "model", model);
    if (is_translation(model)) {
        static const char *const files[][2] = {
            {"data.train_src", "train.bpe.de"}, {"data.train_tgt", "train.bpe.en"},
            {"data.valid_src", "valid.bpe.de"}, {"data.valid_tgt", "valid.bpe.en"},
            {"data.test_src", "test.bpe.de"},   {"data.test_tgt", "test.bpe.en"},
            {"data.src_dict", "dict.de.txt"},   {"data.tgt_dict", "dict.en.txt"},
            {"data.bpe_codes", "codes"}};
        bad = bad || nomul_train_config_set(c, "task", "translation") ||
              nomul_train_config_set(c, "max_tokens", "4096") ||
              nomul_train_config_set(c, "aug.hflip", "false");
        for (size_t i = 0; i < sizeof files / sizeof *files && !bad; i++) {
            snprintf(v, sizeof v, "%s/%s", data, files[i][1]);
            bad = nomul_train_config_set(c, files[i][0], v);
        }
    } else {
        /* one epoch of exactly the steps run */
        snprintf(v, sizeof v, "%ld", 64 * steps);
        bad = bad || nomul_train_config_set(c, "data.train_limit", v) ||
              nomul_train_config_set(c, "data.test_limit", "64");
    }
    snprintf(v, sizeof v, "%ld", steps);
    bad = bad || nomul_train_config_set(c, "steps", v) ||
          nomul_train_config_set(c, "warmup_steps", "2") ||
          nomul_train_config_set(c, "log_every", v) ||
          nomul_train_config_set(c, "audit", "false") ||
          nomul_train_config_set(c, "out_dir", out_dir);
    static const char *const families[] = {"linear_cfg", "conv_cfg", "bmm_cfg", "norm_cfg",
                                           "functional_cfg", "loss_functional_cfg",
                                           "opt_functional_cfg"};
    for (size_t i = 0; i < sizeof families / sizeof *families && !bad; i++) {
        const char *f = families[i];
        int product = i < 3;
        const char *value = "standard";
        if (!strcmp(cfg, "pa") || (!strcmp(cfg, "pam") && product))
            value = "pam";
        else if (!strcmp(cfg, "pa_approx"))
            value = "{\"subtype\": \"pam\", \"dkwargs\": {\"approx_bwd\": true}}";
        bad = nomul_train_config_set(c, f, value);
    }
    return bad || nomul_train_config_check(c);
}

/* One row in a child process: its rate through a pipe, its peak memory from
 * wait4. */
static row_result run_row(const char *model, const char *cfg, long steps, const char *data)
{
    row_result r;
    memset(&r, 0, sizeof r);
    char dir[] = "/tmp/nomul-bench-XXXXXX";
    int fd[2];
    if (!mkdtemp(dir) || pipe(fd)) {
        snprintf(r.error, sizeof r.error, "cannot create a temporary folder or pipe: %s",
                 strerror(errno));
        return r;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        row_result cr;
        memset(&cr, 0, sizeof cr);
        nomul_train_config c;
        FILE *devnull = fopen("/dev/null", "w");
        nomul_train_options o = {NULL, devnull, 0, 1e9, 0, 1};
        nomul_train_result res;
        if (!devnull || row_config(&c, model, cfg, steps, data, dir) ||
            nomul_train(&c, &o, &res)) {
            snprintf(cr.error, sizeof cr.error, "%s",
                     devnull ? nomul_last_error_message() : "cannot open /dev/null");
        } else {
            cr.params = res.params;
            cr.ok = 1;
            cr.items_per_s = res.items_per_s;
            snprintf(cr.items, sizeof cr.items, "%s", is_translation(model) ? "tokens" : "images");
        }
        ssize_t w = write(fd[1], &cr, sizeof cr);
        _exit(w == (ssize_t)sizeof cr && cr.ok ? 0 : 1);
    }
    close(fd[1]);
    if (pid < 0) {
        close(fd[0]);
        snprintf(r.error, sizeof r.error, "fork: %s", strerror(errno));
        return r;
    }
    ssize_t got = read(fd[0], &r, sizeof r);
    close(fd[0]);
    int status = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    wait4(pid, &status, 0, &ru);
    if (got != (ssize_t)sizeof r) {
        memset(&r, 0, sizeof r);
        snprintf(r.error, sizeof r.error, "the row's process ended without a result (status %d)",
                 status);
    }
    r.peak_mb = (double)ru.ru_maxrss / 1024.0;
    char cmd[sizeof dir + 16];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "nomul: bench train: could not remove %s\n", dir);
    return r;
}

/* PyTorch's twin of one model at one thread count: the last line of the
 * script's output, a JSON object. */
/* Debian's python3-torch is in Debian's interpreter, which may not be the
 * first python3 on the PATH */
static const char *python(void)
{
    return access("/usr/bin/python3", X_OK) == 0 ? "/usr/bin/python3" : "python3";
}

static row_result run_torch(const char *script, const char *model, int threads, int cl,
                            long steps, const char *data, long params)
{
    row_result r;
    memset(&r, 0, sizeof r);
    char cmd[2 * NOMUL_PATH_MAX + 256], expect[48] = "";
    if (params > 0) /* else the script asks build/nomul itself */
        snprintf(expect, sizeof expect, "--expect-params %ld", params);
    snprintf(cmd, sizeof cmd,
             "%s '%s' --model %s --threads %d%s --steps %ld --warmup 3 %s %s '%s' 2>&1",
             python(), script, model, threads, cl ? " --channels-last" : "", steps - 3, expect,
             is_translation(model) ? "--max-tokens 4096 --data" : "--batch 64 --data",
             is_translation(model) ? data : "/usr/share/datasets/fashion-mnist");
    if (getenv(NOMUL_SPIN_MARK)) /* PyTorch with libgomp's default, as users run it */
        unsetenv("GOMP_SPINCOUNT");
    FILE *p = popen(cmd, "r");
    if (!p) {
        snprintf(r.error, sizeof r.error, "cannot run python3: %s", strerror(errno));
        return r;
    }
    char line[4096], last[4096] = "";
    while (fgets(line, sizeof line, p))
        if (line[0] != '\n')
            snprintf(last, sizeof last, "%s", line);
    int status = pclose(p);
    cJSON *j = cJSON_Parse(last);
    const cJSON *rate = cJSON_GetObjectItemCaseSensitive(j, "items_per_s");
    const cJSON *mem = cJSON_GetObjectItemCaseSensitive(j, "peak_rss_mb");
    const cJSON *items = cJSON_GetObjectItemCaseSensitive(j, "items");
    if (status != 0 || !cJSON_IsNumber(rate) || !cJSON_IsNumber(mem) || !cJSON_IsString(items)) {
        last[strcspn(last, "\n")] = 0;
        snprintf(r.error, sizeof r.error, "the twin script failed: %s", last);
    } else {
        r.ok = 1;
        r.items_per_s = rate->valuedouble;
        r.peak_mb = mem->valuedouble;
        snprintf(r.items, sizeof r.items, "%s", items->valuestring);
    }
    cJSON_Delete(j);
    return r;
}

static int split_list(const char *what, char *list, char **out, int max)
{
    int n = 0;
    char *save = NULL;
    for (char *t = strtok_r(list, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
        if (n == max) {
            cli_error("bench train: at most %d %s", max, what);
            return -1;
        }
        out[n++] = t;
    }
    if (n == 0)
        cli_error("bench train: no %s given", what);
    return n ? n : -1;
}

static int torch_available(const char *script)
{
    struct stat st;
    if (stat(script, &st) || !S_ISREG(st.st_mode))
        return 0;
    char cmd[64];
    snprintf(cmd, sizeof cmd, "%s -c 'import torch' >/dev/null 2>&1", python());
    return system(cmd) == 0;
}

int bench_train(int argc, char **argv)
{
    cli_args a;
    cli_args_init(&a, argc, argv, "bench train");
    char models_buf[512] = "vit_fmnist,resnet20,transformer_tiny,transformer_mini";
    char configs_buf[256] = "float,pam,pa,pa_approx";
    char tthreads_buf[64] = "";
    const char *data = "data/ding-de-en", *torch = "auto",
               *script = "experiments/bench/torch_twin.py";
    uint64_t steps = 30, threads = 0, rounds = 1;
    const char *arg;
    while ((arg = cli_next(&a))) {
        const char *v;
        if (cli_is_help(arg)) {
            fputs(train_bench_usage, stdout);
            return CLI_OK;
        } else if (cli_is(&a, arg, "models")) {
            if (!(v = cli_value(&a, "models")))
                return CLI_USAGE;
            snprintf(models_buf, sizeof models_buf, "%s", v);
        } else if (cli_is(&a, arg, "configs")) {
            if (!(v = cli_value(&a, "configs")))
                return CLI_USAGE;
            snprintf(configs_buf, sizeof configs_buf, "%s", v);
        } else if (cli_is(&a, arg, "torch-threads")) {
            if (!(v = cli_value(&a, "torch-threads")))
                return CLI_USAGE;
            snprintf(tthreads_buf, sizeof tthreads_buf, "%s", v);
        } else if (cli_is(&a, arg, "steps")) {
            if (!(v = cli_value(&a, "steps")) || !cli_parse_u64("steps", v, 1, 100000, &steps))
                return CLI_USAGE;
        } else if (cli_is(&a, arg, "rounds")) {
            if (!(v = cli_value(&a, "rounds")) || !cli_parse_u64("rounds", v, 1, MAX_ROUNDS, &rounds))
                return CLI_USAGE;
        } else if (cli_is(&a, arg, "threads")) {
            if (!(v = cli_value(&a, "threads")) || !cli_parse_u64("threads", v, 1, 4096, &threads))
                return CLI_USAGE;
        } else if (cli_is(&a, arg, "data")) {
            if (!(data = cli_value(&a, "data")))
                return CLI_USAGE;
        } else if (cli_is(&a, arg, "torch")) {
            if (!(torch = cli_value(&a, "torch")))
                return CLI_USAGE;
            if (strcmp(torch, "auto") && strcmp(torch, "on") && strcmp(torch, "off")) {
                cli_error("bench train: --torch wants auto, on or off, not '%s'", torch);
                return CLI_USAGE;
            }
        } else if (cli_is(&a, arg, "torch-script")) {
            if (!(script = cli_value(&a, "torch-script")))
                return CLI_USAGE;
        } else {
            cli_unknown(&a, arg);
            return CLI_USAGE;
        }
    }
    char *models[MAX_ROWS], *configs[8], *tthr[8];
    int nm = split_list("models", models_buf, models, MAX_ROWS);
    int nc = split_list("configurations", configs_buf, configs, 8);
    if (nm < 0 || nc < 0)
        return CLI_USAGE;
    for (int i = 0; i < nm; i++)
        if (!nomul_model_find(models[i])) {
            cli_error("bench train: unknown model '%s'", models[i]);
            return CLI_USAGE;
        }
    for (int i = 0; i < nc; i++)
        if (strcmp(configs[i], "float") && strcmp(configs[i], "pam") && strcmp(configs[i], "pa") &&
            strcmp(configs[i], "pa_approx")) {
            cli_error("bench train: unknown configuration '%s' (float, pam, pa, pa_approx)",
                      configs[i]);
            return CLI_USAGE;
        }
    if (threads)
        nomul_set_num_threads((int)threads);
    int nt = nomul_get_num_threads();
    if (!tthreads_buf[0])
        snprintf(tthreads_buf, sizeof tthreads_buf, nt > 1 ? "1,%d" : "1", nt);
    int ntt = split_list("torch threads", tthreads_buf, tthr, 8);
    if (ntt < 0)
        return CLI_USAGE;
    int use_torch = strcmp(torch, "off") && torch_available(script);
    if (!strcmp(torch, "on") && !use_torch) {
        cli_error("bench train: --torch on, but python3 cannot import torch or %s is missing "
                  "(apt-get install python3-torch)", script);
        return CLI_USAGE;
    }
    steps += 3; /* the untimed first steps */
    /* the float rows' kernels, and PyTorch's linear layers' (it calls the
     * same OpenBLAS; the environment is every row's) */
    char core[96];
    printf("nomul bench train: %d threads, ISA %s, OpenBLAS core %s, %ld timed steps per row, "
           "best of %d round%s%s\n", nt, cli_isa(),
           cli_blas_core(core, sizeof core), (long)steps - 3, (int)rounds, rounds > 1 ? "s" : "",
           use_torch ? "; PyTorch twin rows from " : "; no PyTorch rows");
    if (use_torch)
        printf("  %s\n", script);
    char cpu[192];
    printf("  on %s\n", cli_cpu(cpu, sizeof cpu));
    printf("%-18s %-16s %12s %10s %10s\n", "model", "configuration", "items/s", "vs float",
           "peak MB");
    int failed = 0;
    for (int i = 0; i < nm; i++) {
        if (is_translation(models[i])) {
            char probe[NOMUL_PATH_MAX + 32];
            snprintf(probe, sizeof probe, "%s/train.bpe.de", data);
            if (access(probe, R_OK)) {
                printf("%-18s (skipped: no %s; sh experiments/ding/prepare.sh makes it)\n",
                       models[i], probe);
                continue;
            }
        }
        /* each row's best round (a failed round keeps its error) */
        /* PyTorch's rows: each thread count, and for the convolutional
         * models each also in channels_last (v = 2·k + channels_last) */
        const int nfmt = is_cnn(models[i]) ? 2 : 1;
        row_result best[8], tbest[16];
        memset(best, 0, sizeof best);
        memset(tbest, 0, sizeof tbest);
        /* every round's rates (0: failed or not run): rows, and PyTorch's best */
        static double rate[8][MAX_ROUNDS], trate[MAX_ROUNDS];
        memset(rate, 0, sizeof rate);
        memset(trate, 0, sizeof trate);
        long params = 0;
        for (int round = 0; round < (int)rounds; round++) {
            for (int j = 0; j < nc; j++) {
                row_result r = run_row(models[i], configs[j], (long)steps, data);
                if (r.ok) {
                    params = r.params;
                    rate[j][round] = r.items_per_s;
                }
                if (!best[j].error[0] && (!r.ok || r.items_per_s > best[j].items_per_s))
                    best[j] = r;
            }
            if (!use_torch)
                continue;
            for (int v = 0; v < nfmt * ntt; v++) {
                int tt = atoi(tthr[v / nfmt]);
                row_result r = run_torch(script, models[i], tt > 0 ? tt : 1, v % nfmt,
                                         (long)steps, data, params);
                if (r.ok && r.items_per_s > trate[round])
                    trate[round] = r.items_per_s;
                if (!tbest[v].error[0] && (!r.ok || r.items_per_s > tbest[v].items_per_s))
                    tbest[v] = r;
            }
        }
        double float_rate = 0.0, float_mb = 0.0;
        int jf = -1;
        for (int j = 0; j < nc; j++)
            if (!strcmp(configs[j], "float") && best[j].ok) {
                float_rate = best[j].items_per_s;
                float_mb = best[j].peak_mb;
                jf = j;
            }
        /* the float row's rates against its best, as a constant "round" */
        double fbest[MAX_ROUNDS];
        for (int k = 0; k < (int)rounds; k++)
            fbest[k] = float_rate;
        for (int j = 0; j < nc; j++) {
            const row_result *r = &best[j];
            if (!r->ok) {
                printf("%-18s %-16s failed: %s\n", models[i], configs[j], r->error);
                failed = 1;
                continue;
            }
            char ratio[32] = "", range[64] = "";
            if (float_rate > 0.0)
                snprintf(ratio, sizeof ratio, "%.2fx", r->items_per_s / float_rate);
            if (jf >= 0)
                round_range(range, sizeof range, (int)rounds, rate[j], j == jf ? fbest : rate[jf]);
            printf("%-18s %-16s %12.1f %10s %10.0f   %s/s%s\n", models[i], configs[j],
                   r->items_per_s, ratio, r->peak_mb, r->items, range);
        }
        fflush(stdout);
        if (!use_torch)
            continue;
        double tb = 0.0, tb_mb = 0.0;
        for (int v = 0; v < nfmt * ntt; v++) {
            const row_result *r = &tbest[v];
            char label[32];
            snprintf(label, sizeof label, "pytorch %s thr%s", tthr[v / nfmt],
                     v % nfmt ? " cl" : "");
            if (!r->ok) {
                printf("%-18s %-16s failed: %s\n", models[i], label, r->error);
                failed = 1;
                continue;
            }
            if (r->items_per_s > tb) {
                tb = r->items_per_s;
                tb_mb = r->peak_mb;
            }
            char ratio[32] = "";
            if (float_rate > 0.0)
                snprintf(ratio, sizeof ratio, "%.2fx", r->items_per_s / float_rate);
            printf("%-18s %-16s %12.1f %10s %10.0f   %s/s\n", models[i], label, r->items_per_s,
                   ratio, r->peak_mb, r->items);
        }
        if (tb > 0.0 && float_rate > 0.0) {
            char range[64] = "";
            double lo, hi;
            if (round_ratios((int)rounds, rate[jf], trate, &lo, &hi) >= 2)
                snprintf(range, sizeof range, " (per round %.2f-%.2fx)", lo, hi);
            printf("%-18s nomul float / best PyTorch: %.2fx the speed%s, %.2fx the memory\n",
                   models[i], float_rate / tb, range, tb_mb > 0.0 ? float_mb / tb_mb : 0.0);
        }
        fflush(stdout);
    }
    return failed ? CLI_FAILED : CLI_OK;
}
