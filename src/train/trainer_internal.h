/* trainer_internal.h — what the trainer's files share: the loop and the step
 * (trainer.c), its tasks, image classification (task_image.c, mixing in
 * mixup.c) and translation (task_translation.c), the run folder (rundir.c)
 * and checkpoints (checkpoint.c). */
#ifndef NOMUL_TRAINER_INTERNAL_H
#define NOMUL_TRAINER_INTERNAL_H

#include <stdint.h>
#include <stdio.h>

#include "nomul/autodiff.h"
#include "nomul/models.h"
#include "nomul/optim.h"
#include "nomul/train.h"

typedef struct run_state {
    long step;                      /* optimizer steps done */
    double epoch_loss, window_loss; /* running sums since the epoch / log line began */
    long epoch_n, window_n;
    nomul_adamw adam;
} run_state;

typedef struct trainer trainer;

/* The kill-and-resume test's hook inside the safetensors writer
 * (safetensors.c): when set, called with the count of tensors whose bytes
 * are in the temporary file so far, of n, after each one. NULL (the
 * default) outside the test (checkpoint.c sets it). */
extern void (*nomul_st_write_hook)(int written, int n);

/* What a task supplies to the loop. */
typedef struct train_task {
    const char *items;        /* what the rate counts: "images", "tokens" */
    const char *eval_loss;    /* the evaluated loss's key: "test_loss", "valid_loss" */
    const char *metric;       /* the evaluation's metric key: "test_acc", "test_bleu" */
    const char *metric_label; /* for humans: "test acc", "test BLEU" */
    double metric_scale;      /* printed as metric · scale (100 for a fraction in percent) */
    double result_scale;      /* the result's unit (nomul_train_result.metric): metric · scale */
    int result_digits;        /* the decimals of the result's metric in summaries */
    /* data and model: sets p, np, per_epoch, describe, td */
    int (*setup)(trainer *t);
    void (*start)(trainer *t, long epoch, long first);
    /* the loss of the next batch, built on t->g (reset); items: its images or tokens */
    nomul_tensor *(*loss)(trainer *t, const run_state *st, long *items);
    /* test (or validation) loss and the metric; final: the run's last evaluation */
    int (*evaluate)(trainer *t, int final, double *loss, double *metric);
    void (*free)(trainer *t);
    /* (optional) what the evaluation needs, checked before the first step */
    int (*check)(trainer *t);
} train_task;

/* Seconds summed over the profiled steps (nomul train --profile). */
typedef struct {
    long steps;
    double step_s, forward_s, backward_s, optimizer_s;
} train_profile;

struct trainer {
    const nomul_train_config *c;
    FILE *out;
    const train_task *task;
    void *td; /* the task's data */
    nomul_param *p;
    int np, ntrain;              /* parameters and buffers; the trainable ones */
    float **mom, **vel, **grads; /* grads, sizes: of the trainable ones */
    size_t *sizes;
    nomul_graph *g;
    float *lr;
    long total, per_epoch;
    char describe[160];
    char dir[NOMUL_PATH_MAX], metrics[NOMUL_PATH_MAX + 32];
    train_profile *prof; /* NULL unless profiling */
    /* data parallelism (src/dist/): this rank of nranks computes rows
     * [lo, hi) of every global batch (train_shard); rank 0 alone writes */
    int rank, nranks;
    float *flat; /* nranks > 1: the trainable gradients and the loss, packed */
    size_t nflat;
    FILE *quiet; /* ranks > 0: their progress goes here (/dev/null) */
    double comm_s, step_s; /* seconds in the gradient exchange, in steps (nranks > 1) */
    long comm_steps;
    double eval_need; /* the task's check: bytes of the arena evaluation needs at most */
    /* grad_norms: the last logged step's norms ([0] the whole gradient's,
     * then one per trainable tensor) and their metric keys */
    double *gnorm;
    char **gnorm_keys;
};

/* The arena bytes of a forward pass without gradients as a function of its
 * shapes, from dry runs at tiny ones (evalmem.c). evalmem_forward runs the
 * forward of a batch of b on g (s source and t target tokens where the model
 * takes lengths), 0 or -1 after a report. evalmem_fit_new fits the model's
 * forward (lengths: 0 for an image model, whose shapes are the batch alone);
 * 0, or -1 after a report. evalmem_bytes: an upper bound of the arena bytes
 * the forward needs at (b, s, t), at most 63 bytes per allocation above it. */
enum { EVALMEM_TERMS = 6 };
typedef int (*evalmem_forward)(void *ctx, nomul_graph *g, int b, int s, int t);
typedef struct evalmem_fit {
    int terms;                            /* 1 (no lengths) or EVALMEM_TERMS */
    double asked[2][EVALMEM_TERMS];       /* bytes: A's, B's coefficients */
    double allocs[2][EVALMEM_TERMS];      /* allocations: the same */
} evalmem_fit;
int evalmem_fit_new(nomul_graph *g, int lengths, evalmem_forward f, void *ctx, evalmem_fit *fit);
double evalmem_bytes(const evalmem_fit *fit, long b, long s, long t);

/* Rows [*lo, *hi) of a global batch of b for this rank: b·rank/N ..
 * b·(rank + 1)/N (the whole batch for one rank). */
void train_shard(const trainer *t, long b, long *lo, long *hi);
/* Several ranks: rank 0's buffers (batch-norm statistics) to all, as PyTorch
 * DDP's broadcast_buffers, before each step and each evaluation. */
int train_sync_buffers(const trainer *t);
/* nomul_cross_entropy of the whole global batch over the ranks: this
 * rank's rows (logits, targets) give their part of the gradient; the value
 * is the global batch's loss, on every rank (one rank: nomul_cross_entropy). */
nomul_tensor *train_cross_entropy(const trainer *t, nomul_graph *g, const nomul_op_cfg *cfg,
                                  nomul_tensor *logits, const int *targets, int ignore_index,
                                  float smoothing);
/* The same for a rank with none of the batch's rows (a translation batch of
 * fewer sentences than ranks): the global loss, no gradient. */
nomul_tensor *train_cross_entropy_no_rows(const trainer *t, nomul_graph *g,
                                         const nomul_op_cfg *cfg);

extern const train_task image_task, translation_task;

struct nomul_safetensors;
/* The cross-entropy −log softmax(z)[target] of one row of n logits, in
 * double (evaluation only); *argmax (if not NULL) gets the largest logit's
 * index, the first on ties. */
/* The process's peak resident memory in MB (getrusage). */
double train_peak_rss_mb(void);
/* profile.c: the table of a profiled run (ms per step by operation). */
void train_profile_print(FILE *out, const train_profile *p, const nomul_graph *g);
double train_row_nll(const float *z, int n, int target, int *argmax);
/* Writes text to path (replacing it); reports and returns -1 on failure. */
int train_write_text(const char *path, const char *text);
/* Copies the checkpoint's tensors of these names into the parameters (shapes
 * checked); -1 after a report naming the file and tensor. */
int train_load_params(const struct nomul_safetensors *f, const char *path, nomul_param *p,
                      int np);

/* The run folder: creates path and its parents (reports failures naming
 * out_dir); keeps the metric lines of steps up to `step` (a resumed run
 * rewrites what the interrupted one logged after its checkpoint, and an
 * epoch's line at that step, which came after it); writes config.json.
 * 0, or -1 after a report. */
int train_make_dirs(const char *path);
int train_truncate_metrics(const char *path, long step);
int train_write_config(const trainer *t);
/* Removes the temporary files of checkpoint writes a killed run left in
 * the run folder (checkpoint*.safetensors.tmp.*). 0, or -1 after a report. */
int train_remove_partial_checkpoints(const char *dir);

/* Writes checkpoint_last.safetensors (and checkpoint_STEP.safetensors with
 * checkpoint_keep) in the run folder; restores the parameters, moments and
 * state st from the checkpoint at path. 0, or -1 after a report. */
int train_checkpoint(const trainer *t, const run_state *st);
int train_resume(trainer *t, const char *path, run_state *st);

/* Mixes an image batch x of b images with itself reversed (mixup or cutmix,
 * as configured, drawing from *r); returns λ, the weight of each image's
 * own label (1: not mixed). */
double train_mix_batch(const nomul_train_config *c, float *x, int b, uint64_t *r);

#endif
