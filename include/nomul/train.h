/*
 * nomul/train.h — the trainer: a configuration read from JSON and `--set`
 * overrides, and a training run (data, model, optimizer, schedule, progress,
 * metric logs, safetensors checkpoints, exact resume) and evaluation.
 *
 * Configuration keys (JSON objects nest: {"data": {"train": ...}} is the key
 * data.train; `nomul train --keys` prints them all with their defaults):
 *   task                       image | translation
 *   model                      a name of nomul_model_names(): an image classifier
 *                              (task image) or a seq2seq model (task translation)
 *   data.train_src, data.train_tgt, data.valid_src, data.valid_tgt,
 *   data.test_src, data.test_tgt, data.src_dict, data.tgt_dict, data.bpe_codes
 *                              translation: BPE-segmented parallel text, fairseq
 *                              dict.txt files, the merges file
 *   data.tokenizer, data.src_lang, data.tgt_lang, data.test_ref
 *                              translation: none | moses (the text was tokenized
 *                              per language before BPE; test BLEU and translate
 *                              detokenize), the languages, raw test references
 *   max_tokens, beam, lenpen, max_len_a, max_len_b   translation batches, search
 *   data.format                idx | cifar | folder
 *   data.train, data.test      images: an IDX file, CIFAR batch files
 *                              (comma separated) or a folder root
 *   data.train_labels, data.test_labels   IDX label files (idx only)
 *   data.image, data.channels, data.classes   the images' size and classes
 *   data.train_limit, data.test_limit     use only the first N (0: all)
 *   epochs | steps             length (steps > 0 wins)
 *   batch_size, eval_batch_size
 *   optimizer                  adamw | sgd
 *   lr, min_lr, schedule (cosine | constant | inverse_sqrt), warmup_steps
 *   weight_decay, beta1, beta2, eps, momentum, clip_grad (0: none)
 *   label_smoothing, drop_path, dropout (translation; negative: the model's own),
 *   activation_fn (translation: relu | gelu, the FFN's)
 *   aug.crop_pad, aug.hflip, aug.mean, aug.std (arrays, one per channel),
 *   aug.randaugment_n, aug.randaugment_m, aug.randaugment_mstd, aug.erase_prob
 *   mixup, cutmix (Beta α; 0: off), mix_prob, mix_switch_prob
 *   seed, out_dir, log_every, checkpoint_every (steps; 0: at the end only),
 *   checkpoint_keep (also keep checkpoint_STEP.safetensors), eval_every
 *   (epochs), arena_mb (the autodiff arena), audit (count the arithmetic),
 *   grad_norms (off | total | per_tensor: the gradient's L2 norm on each
 *   metric line, before clipping; a float diagnostic the audit counts)
 *   linear_cfg, conv_cfg, bmm_cfg, norm_cfg, functional_cfg,
 *   loss_functional_cfg, opt_functional_cfg   as nomul/opcfg.h
 */
#ifndef NOMUL_TRAIN_H
#define NOMUL_TRAIN_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "nomul/audit.h"
#include "nomul/models.h"
#include "nomul/opcfg.h"
#include "nomul/optim.h"

#ifdef __cplusplus
extern "C" {
#endif

#define NOMUL_PATH_MAX 1024

/* The enumerated keys, parsed once from their names (in this order). */
typedef enum { NOMUL_TASK_IMAGE, NOMUL_TASK_TRANSLATION } nomul_train_task;
typedef enum {
    NOMUL_DATA_FORMAT_IDX,
    NOMUL_DATA_FORMAT_CIFAR,
    NOMUL_DATA_FORMAT_FOLDER
} nomul_data_format;
typedef enum { NOMUL_OPTIMIZER_ADAMW, NOMUL_OPTIMIZER_SGD } nomul_optimizer_kind;
typedef enum { NOMUL_TOKENIZER_NONE, NOMUL_TOKENIZER_MOSES } nomul_tokenizer;
typedef enum { NOMUL_LR_COSINE, NOMUL_LR_CONSTANT, NOMUL_LR_INVERSE_SQRT } nomul_lr_schedule;
typedef enum {
    NOMUL_GRAD_NORMS_OFF,
    NOMUL_GRAD_NORMS_TOTAL,
    NOMUL_GRAD_NORMS_PER_TENSOR
} nomul_grad_norms;

typedef struct nomul_train_config {
    nomul_train_task task;
    char model[64];
    nomul_data_format data_format;
    char train_images[NOMUL_PATH_MAX], train_labels[NOMUL_PATH_MAX];
    char test_images[NOMUL_PATH_MAX], test_labels[NOMUL_PATH_MAX];
    int image, channels, classes;
    long train_limit, test_limit;
    long epochs, steps;
    int batch_size, eval_batch_size;
    nomul_optimizer_kind optimizer;
    nomul_adam_moments adam_moments;
    float lr, min_lr;
    nomul_lr_schedule schedule;
    long warmup_steps;
    float weight_decay, beta1, beta2, eps, momentum, clip_grad;
    float label_smoothing, drop_path;
    float dropout; /* translation: the transformer's dropout (negative: the named model's) */
    nomul_activation activation_fn; /* translation: the FFN's (fairseq's name; ReLU default) */
    int crop_pad, hflip;
    float mean[4], std[4];
    /* translation: BPE-segmented parallel files, fairseq dictionaries, the
     * merges file (for nomul translate), batching and search */
    char train_src[NOMUL_PATH_MAX], train_tgt[NOMUL_PATH_MAX];
    char valid_src[NOMUL_PATH_MAX], valid_tgt[NOMUL_PATH_MAX];
    char test_src[NOMUL_PATH_MAX], test_tgt[NOMUL_PATH_MAX];
    char src_dict[NOMUL_PATH_MAX], tgt_dict[NOMUL_PATH_MAX], bpe_codes[NOMUL_PATH_MAX];
    /* moses: the files were tokenized (nomul_moses_tokenize) in src_lang and
     * tgt_lang before BPE; test_ref: the raw test references (empty: the
     * detokenized test targets) */
    nomul_tokenizer tokenizer;
    char src_lang[16], tgt_lang[16], test_ref[NOMUL_PATH_MAX];
    long max_tokens;
    int beam;
    float lenpen, max_len_a, max_len_b;
    int randaugment_n;
    float randaugment_m, randaugment_mstd, erase_prob;
    float mixup, cutmix, mix_prob, mix_switch_prob;
    long seed;
    char out_dir[NOMUL_PATH_MAX];
    long log_every, checkpoint_every;
    int checkpoint_keep, eval_every;
    long arena_mb;
    int audit;
    nomul_grad_norms grad_norms;
    nomul_op_cfgs ops;
} nomul_train_config;

/* The embedded default: vit_fmnist on Fashion-MNIST from Debian's
 * dataset-fashion-mnist, every operation piecewise affine. */
void nomul_train_config_default(nomul_train_config *c);
/* Applies the keys of a JSON object; 0, or -1 after a report naming the key
 * (nomul/error.h). */
int nomul_train_config_parse_json(nomul_train_config *c, const char *json);
/* Applies one KEY=VALUE (as --set gives it; a JSON value or a bare word); 0,
 * or -1 after a report. */
int nomul_train_config_set(nomul_train_config *c, const char *key, const char *value);
/* Checks the whole configuration (sizes, ranges, names); 0, or -1 after a
 * report. */
int nomul_train_config_check(const nomul_train_config *c);
/* The configuration as one JSON object (flat dotted keys); the length
 * snprintf would write. */
int nomul_train_config_format(const nomul_train_config *c, char *buf, size_t len);
/* Every key with its current value, one per line, for --keys. */
void nomul_train_config_print_keys(const nomul_train_config *c, FILE *out);
/* The task's name as the key "task" spells it: "image", "translation". */
const char *nomul_train_task_name(nomul_train_task task);
/* The name of an enumerated key's current value ("optimizer" → "adamw"), or
 * NULL if key is not an enumerated key. */
const char *nomul_train_config_choice(const nomul_train_config *c, const char *key);

/* A figure of a run's last evaluation, named as metrics.jsonl names it. */
typedef struct nomul_train_metric {
    const char *name; /* "test_loss", "valid_loss", "test_acc", "test_bleu" */
    double value;     /* NaN if not evaluated */
    int digits;       /* the decimals a summary prints */
} nomul_train_metric;

typedef struct nomul_train_result {
    long steps;                   /* the step reached */
    double train_loss;            /* mean training loss of the last epoch (or part) */
    nomul_train_metric eval_loss; /* images: the test loss; translation: the validation loss */
    nomul_train_metric metric;    /* images: the test accuracy (a fraction); translation: the
                                   * test BLEU (0 to 100) */
    double seconds;               /* wall time of this run */
    nomul_op_counts counts;    /* arithmetic of this run's training steps (audit) */
    long counted_steps;
    /* images or tokens per second of the training steps after the first
     * few (0 if there were too few), evaluations and checkpoints excluded */
    double items_per_s;
    double peak_rss_mb; /* the process's peak resident memory so far */
    long params;        /* the model's trainable parameters */
    /* the graph's arena (MB): the most any evaluation used (validation and
     * decoding for translation), and the bound of it checked before the
     * first step (0 if not known) */
    double eval_arena_mb, eval_arena_bound_mb;
    /* the most of the graph's arena (MB) one training step used: its
     * forward's activations and the backward's gradients */
    double train_arena_mb;
} nomul_train_result;

typedef struct nomul_train_options {
    const char *resume; /* a checkpoint to continue from, or NULL */
    FILE *out;          /* progress and summaries (NULL: stderr) */
    int tty;            /* progress bar style: 1 terminal, 0 plain lines, -1 auto */
    double progress_interval; /* seconds between plain progress lines */
    int profile; /* print the time per step by operation at the end */
    int no_eval; /* no evaluation at all, not even the final one (benchmarks) */
} nomul_train_options;

/* Trains as configured; 0 on success, -1 after a report (nomul/error.h). */
int nomul_train(const nomul_train_config *c, const nomul_train_options *o,
                nomul_train_result *result);

/* Reads a checkpoint's configuration (its "nomul.config" metadata) into c;
 * 0, or -1 after a report. */
int nomul_checkpoint_config(const char *path, nomul_train_config *c);

/* Evaluates a checkpoint on the test set of c (normally its own configuration,
 * possibly with overrides): mean loss and accuracy. 0, or -1 after a report. */
int nomul_evaluate_checkpoint(const char *path, const nomul_train_config *c, double *loss,
                              double *acc);

/* Translates n raw lines with a translation checkpoint and its configuration
 * c (data.tokenizer moses tokenizes them in data.src_lang first and
 * detokenizes the output in data.tgt_lang; data.bpe_codes segments them, BPE
 * is removed from the output; beam,
 * lenpen, max_len_a, max_len_b as configured): out[i] receives a malloc'd
 * line. 0, or -1 after a report (nothing allocated then). */
int nomul_translate_checkpoint(const char *path, const nomul_train_config *c,
                               const char *const *lines, long n, char **out);

/* Runs one training step of the configured model (model, task and data
 * sizes, batch_size or max_tokens, the operation families, the optimizer
 * and its settings, clip_grad, drop_path, label_smoothing, seed) on a random
 * batch under the counters (nomul/audit.h), and returns what it executed;
 * mixup and cutmix are left out. A translation batch is max_tokens /
 * NOMUL_AUDIT_PAIR_TOKENS sentence pairs (at least one) of that many source
 * and target tokens. 0, or -1 after a report. */
#define NOMUL_AUDIT_PAIR_TOKENS 32
int nomul_audit_step(const nomul_train_config *c, nomul_op_counts *out);

#ifdef __cplusplus
}
#endif

#endif
