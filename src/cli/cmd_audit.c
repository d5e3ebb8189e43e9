/*
 * cmd_audit.c — `nomul audit`: one training step of the configured model
 * (train's configuration sources and defaults) under the operation
 * counters, for the float baseline and for the configuration, with the
 * energy each would cost.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "nomul/nomul.h"

static const char audit_usage[] =
    "usage: nomul audit [--config FILE] [--set KEY=VALUE ...] [--checkpoint FILE]\n"
    "\n"
    "Runs one training step (forward, backward, optimizer) of the configured model\n"
    "on a random batch of the configured shape twice, under nomul's operation\n"
    "counters: with every operation in standard float (the baseline) and with the\n"
    "configuration. The configuration comes from the same sources as 'nomul train'\n"
    "(the embedded default: vit_fmnist with everything piecewise affine; a\n"
    "checkpoint's; each --config file; then --set, e.g. --set model=resnet20 or\n"
    "--set linear_cfg=standard). Prints, per class, how many operations each\n"
    "executed, the energy per step at 45 nm (Horowitz, ISSCC 2014: fp32 multiply\n"
    "3.7 pJ, fp32 add 0.9 pJ, int32 add 0.1 pJ), and ends with the float\n"
    "multiplications per step of the configuration. Mixup and cutmix are left out.\n";

int cmd_audit(int argc, char **argv)
{
    nomul_train_config cfg, base;
    int help, rc = cli_train_config("audit", argc, argv, &cfg, &help);
    if (rc || help) {
        if (help)
            fputs(audit_usage, stdout);
        return rc;
    }
    base = cfg;
    nomul_op_cfgs_default(&base.ops);
    nomul_op_counts cb, cc;
    if (nomul_audit_step(&base, &cb) || nomul_audit_step(&cfg, &cc)) {
        cli_error("audit: the training step failed: %s", nomul_last_error_message());
        return CLI_FAILED;
    }
    printf("nomul audit: one training step (forward, backward, %s) of %s,\n",
           nomul_train_config_choice(&cfg, "optimizer"), cfg.model);
    if (cfg.task == NOMUL_TASK_TRANSLATION)
        printf("batch %ld sentence pairs of %d + %d random tokens\n",
               cfg.max_tokens / NOMUL_AUDIT_PAIR_TOKENS > 1
                   ? cfg.max_tokens / NOMUL_AUDIT_PAIR_TOKENS : 1,
               NOMUL_AUDIT_PAIR_TOKENS, NOMUL_AUDIT_PAIR_TOKENS);
    else
        printf("batch %d random images of %dx%dx%d, %d classes\n", cfg.batch_size, cfg.channels,
               cfg.image, cfg.image, cfg.classes);
    printf("configuration:\n");
    for (int f = 0; f < NOMUL_CFG_COUNT; f++) {
        char buf[256];
        nomul_op_cfg_format(&cfg.ops.family[f], buf, sizeof buf);
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
