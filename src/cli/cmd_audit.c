/*
 * cmd_audit.c — `nomul audit`: one training step under the operation
 * counters, for the float baseline and for a configuration, with the
 * energy each would cost.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "nomul/nomul.h"

static const char audit_usage[] =
    "usage: nomul audit [--config FILE] [--set KEY=VALUE ...]\n"
    "\n"
    "Runs one training step (forward, backward, AdamW) of a small pre-norm\n"
    "transformer block classifier twice, under nomul's operation counters: with\n"
    "every operation in standard float (the baseline) and with the configuration\n"
    "(a JSON file with the reference's keys linear_cfg, conv_cfg, bmm_cfg,\n"
    "norm_cfg, functional_cfg, loss_functional_cfg, opt_functional_cfg, then\n"
    "--set overrides; default: everything piecewise affine). Prints, per class,\n"
    "how many operations each executed, the energy per step at 45 nm (Horowitz,\n"
    "ISSCC 2014: fp32 multiply 3.7 pJ, fp32 add 0.9 pJ, int32 add 0.1 pJ), and\n"
    "ends with the float multiplications per step of the configuration.\n";

/* The configuration's errors come out once, through cli_error with the
 * command's name, instead of also on the default handler's line. */
static void quiet(nomul_status status, const char *message) { (void)status, (void)message; }

int cmd_audit(int argc, char **argv)
{
    cli_args a;
    cli_args_init(&a, argc, argv, "audit");
    const char *arg, *config = NULL;
    nomul_op_cfgs cfg, base;
    nomul_op_cfgs_all_pam(&cfg);
    nomul_op_cfgs_default(&base);
    const char *sets[64];
    int nsets = 0;
    while ((arg = cli_next(&a))) {
        if (cli_is_help(arg)) {
            fputs(audit_usage, stdout);
            return CLI_OK;
        } else if (cli_is(&a, arg, "config")) {
            if (!(config = cli_value(&a, "config")))
                return CLI_USAGE;
        } else if (cli_is(&a, arg, "set")) {
            const char *v = cli_value(&a, "set");
            if (!v)
                return CLI_USAGE;
            if (nsets == 64) {
                cli_error("audit: at most 64 --set options");
                return CLI_USAGE;
            }
            sets[nsets++] = v;
        } else {
            cli_unknown(&a, arg);
            return CLI_USAGE;
        }
    }
    if (config) {
        char *text;
        if (!cli_read_file("audit", config, &text))
            return CLI_USAGE;
        nomul_op_cfgs_default(&cfg); /* a file states its choices; the rest are float */
        nomul_set_error_handler(quiet);
        int rc = nomul_op_cfgs_parse_json(&cfg, text);
        nomul_set_error_handler(NULL);
        free(text);
        if (rc) {
            cli_error("audit: %s: %s", config, nomul_last_error_message());
            return CLI_USAGE;
        }
    }
    for (int i = 0; i < nsets; i++) {
        char key[128];
        const char *value;
        if (!cli_split_set("audit", sets[i], key, sizeof key, &value))
            return CLI_USAGE;
        nomul_set_error_handler(quiet);
        int r = nomul_op_cfgs_set(&cfg, key, value);
        nomul_set_error_handler(NULL);
        if (r == 0) {
            cli_error("audit: --set %s: not an operation configuration key (linear_cfg, conv_cfg, "
                      "bmm_cfg, norm_cfg, functional_cfg, loss_functional_cfg, "
                      "opt_functional_cfg)", key);
            return CLI_USAGE;
        }
        if (r < 0) {
            cli_error("audit: --set %s", nomul_last_error_message());
            return CLI_USAGE;
        }
    }
    nomul_op_counts cb, cc;
    if (nomul_audit_step(&base, &cb) || nomul_audit_step(&cfg, &cc)) {
        cli_error("audit: the training step failed: %s", nomul_last_error_message());
        return CLI_FAILED;
    }
    printf("nomul audit: one training step (forward, backward, AdamW) of a pre-norm transformer "
           "block,\nbatch 8 x 16 tokens, width 32, 4 heads, MLP 64, 10 classes\n");
    printf("configuration:\n");
    for (int f = 0; f < NOMUL_CFG_COUNT; f++) {
        char buf[256];
        nomul_op_cfg_format(&cfg.family[f], buf, sizeof buf);
        printf("  %-20s %s\n", nomul_op_family_key((nomul_op_family)f), buf);
    }
    printf("\n%-20s %16s %16s %9s\n", "operations", "float baseline", "this config", "pJ each");
    double eb = 0, ec = 0;
    for (int k = 0; k < NOMUL_COUNT_CLASSES; k++) {
        double pj = nomul_op_class_energy_pj((nomul_op_class)k);
        printf("%-20s %16llu %16llu %9.1f\n", nomul_op_class_name((nomul_op_class)k), cb.n[k],
               cc.n[k], pj);
        eb += pj * (double)cb.n[k];
        ec += pj * (double)cc.n[k];
    }
    printf("\nenergy per step (45 nm): float baseline %.3f uJ, this config %.3f uJ (%.2fx less)\n",
           eb / 1e6, ec / 1e6, ec > 0 ? eb / ec : 0.0);
    printf("float multiplications per step: %llu (divisions %llu, exp/log/sqrt %llu)\n",
           cc.n[NOMUL_COUNT_FMUL], cc.n[NOMUL_COUNT_FDIV], cc.n[NOMUL_COUNT_FTRANS]);
    return CLI_OK;
}
