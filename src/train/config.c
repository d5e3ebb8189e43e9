/*
 * config.c — the trainer's configuration (nomul/train.h): one table of keys
 * serves JSON files, --set overrides, checks, the JSON written into
 * checkpoints and the --keys listing, so they cannot disagree.
 */
#include <float.h>
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "../core/internal.h"
#include "../core/opcfg_internal.h"
#include "nomul/error.h"
#include "nomul/train.h"

typedef enum { K_STR, K_INT, K_LONG, K_FLOAT, K_BOOL, K_FLOAT4, K_ENUM } key_type;

typedef struct key_def {
    const char *name;
    key_type type;
    size_t off, size;
    double lo, hi;             /* numeric range */
    const char *const *values; /* K_ENUM: the names, in the enum's order, NULL-terminated */
    const char *help;
} key_def;

/* The names of the enumerated keys' values; index = the enum's value. */
static const char *const task_names[] = {"image", "translation", NULL};
static const char *const format_names[] = {"idx", "cifar", "folder", NULL};
static const char *const optimizer_names[] = {"adamw", "sgd", NULL};
static const char *const moments_names[] = {"reference", "delta", NULL};
static const char *const schedule_names[] = {"cosine", "constant", "inverse_sqrt", NULL};
static const char *const tokenizer_names[] = {"none", "moses", NULL};
static const char *const grad_norms_names[] = {"off", "total", "per_tensor", NULL};
static const char *const activation_names[] = {"relu", "gelu", NULL};
_Static_assert(NOMUL_TASK_TRANSLATION == 1 && NOMUL_DATA_FORMAT_FOLDER == 2 &&
                   NOMUL_OPTIMIZER_SGD == 1 && NOMUL_ADAM_MOMENTS_DELTA == 1 &&
                   NOMUL_LR_INVERSE_SQRT == 2 && NOMUL_TOKENIZER_MOSES == 1 &&
                   NOMUL_GRAD_NORMS_PER_TENSOR == 2 && NOMUL_ACT_GELU == 1,
               "the name tables follow the enums");
/* an enumerated field is read and written as an int */
_Static_assert(sizeof(nomul_train_task) == sizeof(int) &&
                   sizeof(nomul_data_format) == sizeof(int) &&
                   sizeof(nomul_optimizer_kind) == sizeof(int) &&
                   sizeof(nomul_adam_moments) == sizeof(int) &&
                   sizeof(nomul_lr_schedule) == sizeof(int) &&
                   sizeof(nomul_tokenizer) == sizeof(int) &&
                   sizeof(nomul_activation) == sizeof(int) &&
                   sizeof(nomul_grad_norms) == sizeof(int),
               "enums are ints");

#define FIELD(f) offsetof(nomul_train_config, f), sizeof(((nomul_train_config *)0)->f)
static const key_def keys[] = {
    {"task", K_ENUM, FIELD(task), 0, 0, task_names, "what is trained"},
    {"model", K_STR, FIELD(model), 0, 0, NULL, "the architecture (nomul_model_names)"},
    {"data.format", K_ENUM, FIELD(data_format), 0, 0, format_names, "the files' format"},
    {"data.train", K_STR, FIELD(train_images), 0, 0, NULL,
     "training images: IDX file, CIFAR batches (comma separated) or folder root"},
    {"data.train_labels", K_STR, FIELD(train_labels), 0, 0, NULL, "IDX training labels"},
    {"data.test", K_STR, FIELD(test_images), 0, 0, NULL, "test images (as data.train)"},
    {"data.test_labels", K_STR, FIELD(test_labels), 0, 0, NULL, "IDX test labels"},
    {"data.image", K_INT, FIELD(image), 1, 4096, NULL, "image height and width"},
    {"data.channels", K_INT, FIELD(channels), 1, 4, NULL, "channels per pixel"},
    {"data.classes", K_INT, FIELD(classes), 2, 65536, NULL,
     "number of classes (idx: at most 256, one byte per label)"},
    {"data.train_limit", K_LONG, FIELD(train_limit), 0, 1e12, NULL,
     "train on the first N images only (0: all)"},
    {"data.test_limit", K_LONG, FIELD(test_limit), 0, 1e12, NULL,
     "evaluate on the first N images only (0: all)"},
    {"data.train_src", K_STR, FIELD(train_src), 0, 0, NULL, "translation: training sources (BPE)"},
    {"data.train_tgt", K_STR, FIELD(train_tgt), 0, 0, NULL, "translation: training targets (BPE)"},
    {"data.valid_src", K_STR, FIELD(valid_src), 0, 0, NULL, "translation: validation sources"},
    {"data.valid_tgt", K_STR, FIELD(valid_tgt), 0, 0, NULL, "translation: validation targets"},
    {"data.test_src", K_STR, FIELD(test_src), 0, 0, NULL, "translation: test sources (BPE)"},
    {"data.test_tgt", K_STR, FIELD(test_tgt), 0, 0, NULL,
     "translation: test targets (BPE; BLEU against them with BPE removed)"},
    {"data.src_dict", K_STR, FIELD(src_dict), 0, 0, NULL, "translation: fairseq dict.txt"},
    {"data.tgt_dict", K_STR, FIELD(tgt_dict), 0, 0, NULL, "translation: fairseq dict.txt"},
    {"data.bpe_codes", K_STR, FIELD(bpe_codes), 0, 0, NULL,
     "translation: the merges file, for nomul translate"},
    {"data.tokenizer", K_ENUM, FIELD(tokenizer), 0, 0, tokenizer_names,
     "translation: none, or moses (the files were tokenized per language before BPE: test "
     "BLEU and nomul translate detokenize, translate tokenizes its input)"},
    {"data.src_lang", K_STR, FIELD(src_lang), 0, 0, NULL,
     "translation: the source language (en, de, ...) for data.tokenizer"},
    {"data.tgt_lang", K_STR, FIELD(tgt_lang), 0, 0, NULL,
     "translation: the target language for data.tokenizer"},
    {"data.test_ref", K_STR, FIELD(test_ref), 0, 0, NULL,
     "translation: raw test references for BLEU (empty: the test targets, BPE removed, "
     "detokenized)"},
    {"max_tokens", K_LONG, FIELD(max_tokens), 1, 1e9, NULL,
     "translation: tokens per batch (fairseq's --max-tokens)"},
    {"beam", K_INT, FIELD(beam), 1, 100, NULL,
     "translation: beam size (at most 100: the decoder recomputes beam × length tokens a step)"},
    {"lenpen", K_FLOAT, FIELD(lenpen), 0, 100, NULL, "translation: length penalty"},
    {"max_len_a", K_FLOAT, FIELD(max_len_a), 0, 100, NULL, "translation: max length a·src + b"},
    {"max_len_b", K_FLOAT, FIELD(max_len_b), 0, 1023, NULL,
     "translation: max length a·src + b (at most 1023, the positions of the decoder)"},
    {"epochs", K_LONG, FIELD(epochs), 0, 1e9, NULL, "passes over the training set"},
    {"steps", K_LONG, FIELD(steps), 0, 1e8, NULL,
     "optimizer steps (> 0 overrides epochs; at most 10^8: one learning rate is kept per step)"},
    {"batch_size", K_INT, FIELD(batch_size), 1, 1 << 20, NULL, "training batch"},
    {"eval_batch_size", K_INT, FIELD(eval_batch_size), 1, 1 << 20, NULL,
     "evaluation batch (its forward's activations are all held: memory grows with it)"},
    {"optimizer", K_ENUM, FIELD(optimizer), 0, 0, optimizer_names, "the optimizer"},
    {"adam_moments", K_ENUM, FIELD(adam_moments), 0, 0, moments_names,
     "PA AdamW's moment averages: PAM(m, b1) + PAM(g, 1 - b1), or m += PAM(g - m, 1 - b1)"},
    {"lr", K_FLOAT, FIELD(lr), 0, 1e6, NULL, "peak learning rate"},
    {"min_lr", K_FLOAT, FIELD(min_lr), 0, 1e6, NULL, "final learning rate of the cosine"},
    {"schedule", K_ENUM, FIELD(schedule), 0, 0, schedule_names,
     "the learning-rate schedule after the warmup"},
    {"warmup_steps", K_LONG, FIELD(warmup_steps), 0, 1e8, NULL, "linear warmup steps"},
    {"weight_decay", K_FLOAT, FIELD(weight_decay), 0, 1e6, NULL,
     "decoupled weight decay (matrices only)"},
    {"beta1", K_FLOAT, FIELD(beta1), 0, 0.999999, NULL, "AdamW β1"},
    {"beta2", K_FLOAT, FIELD(beta2), 0, 0.999999, NULL, "AdamW β2"},
    {"eps", K_FLOAT, FIELD(eps), 0, 1, NULL, "AdamW ε"},
    {"momentum", K_FLOAT, FIELD(momentum), 0, 0.999999, NULL, "SGD momentum"},
    {"clip_grad", K_FLOAT, FIELD(clip_grad), 0, 1e9, NULL, "gradient-norm clip (0: none)"},
    {"label_smoothing", K_FLOAT, FIELD(label_smoothing), 0, 0.999, NULL,
     "cross-entropy label smoothing"},
    {"dropout", K_FLOAT, FIELD(dropout), -1, 0.999, NULL,
     "translation: the transformer's dropout (negative: the named model's own, e.g. "
     "transformer_mini's 0.1)"},
    {"activation_fn", K_ENUM, FIELD(activation_fn), 0, 0, activation_names,
     "translation: the transformer FFN's activation (fairseq's activation_fn; gelu is "
     "piecewise affine when functional_cfg is)"},
    {"drop_path", K_FLOAT, FIELD(drop_path), 0, 0.999, NULL, "stochastic depth of the last block"},
    {"aug.crop_pad", K_INT, FIELD(crop_pad), 0, 1024, NULL, "random crop after zero padding"},
    {"aug.hflip", K_BOOL, FIELD(hflip), 0, 1, NULL, "random horizontal flips"},
    {"aug.mean", K_FLOAT4, FIELD(mean), -1e6, 1e6, NULL, "per-channel mean (0..1 scale)"},
    {"aug.std", K_FLOAT4, FIELD(std), 0, 1e6, NULL, "per-channel standard deviation"},
    {"aug.randaugment_n", K_INT, FIELD(randaugment_n), 0, 16, NULL,
     "RandAugment operations per image (0: off; DeiT: 2)"},
    {"aug.randaugment_m", K_FLOAT, FIELD(randaugment_m), 0, 10, NULL,
     "RandAugment magnitude (DeiT: 9)"},
    {"aug.randaugment_mstd", K_FLOAT, FIELD(randaugment_mstd), 0, 10, NULL,
     "RandAugment magnitude noise (DeiT: 0.5)"},
    {"aug.erase_prob", K_FLOAT, FIELD(erase_prob), 0, 1, NULL,
     "random erasing probability (DeiT: 0.25)"},
    {"mixup", K_FLOAT, FIELD(mixup), 0, 100, NULL, "mixup Beta(α, α) (0: off; DeiT: 0.8)"},
    {"cutmix", K_FLOAT, FIELD(cutmix), 0, 100, NULL, "cutmix Beta(α, α) (0: off; DeiT: 1.0)"},
    {"mix_prob", K_FLOAT, FIELD(mix_prob), 0, 1, NULL, "probability of mixing a batch"},
    {"mix_switch_prob", K_FLOAT, FIELD(mix_switch_prob), 0, 1, NULL,
     "with both on: probability of cutmix rather than mixup"},
    {"seed", K_LONG, FIELD(seed), 0, 9.0e15, NULL, "initialisation, shuffling, augmentation"},
    {"out_dir", K_STR, FIELD(out_dir), 0, 0, NULL,
     "run folder: config.json, metrics.jsonl, checkpoints"},
    {"log_every", K_LONG, FIELD(log_every), 1, 1e12, NULL, "steps between metric lines"},
    {"checkpoint_every", K_LONG, FIELD(checkpoint_every), 0, 1e12, NULL,
     "steps between checkpoints (0: at the end only)"},
    {"checkpoint_keep", K_BOOL, FIELD(checkpoint_keep), 0, 1, NULL,
     "also keep checkpoint_STEP.safetensors"},
    {"eval_every", K_INT, FIELD(eval_every), 0, 1 << 30, NULL,
     "epochs between evaluations (0: at the end only)"},
    {"arena_mb", K_LONG, FIELD(arena_mb), 1, 1 << 20, NULL,
     "autodiff arena (pages are touched only as used)"},
    {"audit", K_BOOL, FIELD(audit), 0, 1, NULL, "count the arithmetic of every training step"},
    {"grad_norms", K_ENUM, FIELD(grad_norms), 0, 0, grad_norms_names,
     "the gradient's L2 norm (before clipping) on each metric line: grad_norm, and "
     "per_tensor also grad_norm/NAME for every trained tensor (a float diagnostic, in the "
     "audit's counts)"},
};
#define NKEYS (sizeof keys / sizeof keys[0])

void nomul_train_config_default(nomul_train_config *c)
{
    memset(c, 0, sizeof *c);
    c->task = NOMUL_TASK_IMAGE;
    snprintf(c->model, sizeof c->model, "vit_fmnist");
    c->data_format = NOMUL_DATA_FORMAT_IDX;
    const char *d = "/usr/share/datasets/fashion-mnist";
    snprintf(c->train_images, sizeof c->train_images, "%s/train-images-idx3-ubyte.gz", d);
    snprintf(c->train_labels, sizeof c->train_labels, "%s/train-labels-idx1-ubyte.gz", d);
    snprintf(c->test_images, sizeof c->test_images, "%s/t10k-images-idx3-ubyte.gz", d);
    snprintf(c->test_labels, sizeof c->test_labels, "%s/t10k-labels-idx1-ubyte.gz", d);
    c->image = 28;
    c->channels = 1;
    c->classes = 10;
    c->epochs = 3;
    c->batch_size = 64;
    /* the training batch's size: evaluation keeps every activation of its
     * forward in the arena, so 500 images took ResNet20's peak memory from
     * 185 to 778 MB (the ViT's 103 to 270), and paging that memory in cost
     * more than the larger batch saved (the same results: each image's
     * logits do not depend on its batch) */
    c->eval_batch_size = 64;
    c->optimizer = NOMUL_OPTIMIZER_ADAMW;
    c->adam_moments = NOMUL_ADAM_MOMENTS_REFERENCE;
    c->lr = 2e-3f;
    c->min_lr = 1e-5f;
    c->schedule = NOMUL_LR_COSINE;
    c->warmup_steps = 200;
    c->weight_decay = 0.05f;
    c->beta1 = 0.9f;
    c->beta2 = 0.999f;
    c->eps = 1e-8f;
    c->momentum = 0.9f;
    c->clip_grad = 0.0f;
    c->label_smoothing = 0.1f;
    c->drop_path = 0.0f;
    c->dropout = -1.0f;
    c->crop_pad = 0;
    c->hflip = 1;
    c->max_tokens = 4096;
    c->beam = 5;
    c->lenpen = 1.0f;
    c->max_len_a = 1.2f;
    c->max_len_b = 10.0f;
    c->randaugment_m = 9.0f;
    c->randaugment_mstd = 0.5f;
    c->mix_prob = 1.0f;
    c->mix_switch_prob = 0.5f;
    c->mean[0] = c->mean[1] = c->mean[2] = c->mean[3] = 0.2860f; /* Fashion-MNIST */
    c->std[0] = c->std[1] = c->std[2] = c->std[3] = 0.3530f;
    c->seed = 0;
    snprintf(c->out_dir, sizeof c->out_dir, "runs/vit_fmnist_pa");
    c->log_every = 50;
    c->checkpoint_every = 0;
    c->eval_every = 1;
    c->arena_mb = 4096;
    c->audit = 1;
    /* fully piecewise affine with the approximate backward: of the two fully
     * multiplication-free recipes it keeps float quality best on the tasks
     * measured (README, "The fully-PA default"); the exact derivatives stay
     * one --set away (experiments/fmnist/6_pa_full.json) */
    nomul_op_cfgs_all_pam(&c->ops);
    for (int f = 0; f < NOMUL_CFG_COUNT; f++)
        c->ops.family[f].approx_bwd = 1;
}

static const key_def *find_key(const char *name)
{
    for (size_t i = 0; i < NKEYS; i++)
        if (!strcmp(keys[i].name, name))
            return &keys[i];
    return NULL;
}

const char *nomul_train_task_name(nomul_train_task task)
{
    return task == NOMUL_TASK_TRANSLATION ? task_names[1] : task_names[0];
}

const char *nomul_train_config_choice(const nomul_train_config *c, const char *key)
{
    const key_def *k = find_key(key);
    if (!k || k->type != K_ENUM)
        return NULL;
    return k->values[*(const int *)((const char *)c + k->off)];
}

/* The index of v among the names, or -1. */
static int value_index(const char *const *names, const char *v)
{
    for (int i = 0; names[i]; i++)
        if (!strcmp(names[i], v))
            return i;
    return -1;
}

/* The names as "a|b|c", for messages and --keys. */
static const char *value_list(const char *const *names, char *buf, size_t len)
{
    size_t at = 0;
    buf[0] = 0;
    for (int i = 0; names[i] && at < len; i++)
        at += (size_t)snprintf(buf + at, len - at, "%s%s", i ? "|" : "", names[i]);
    return buf;
}

static int number(const key_def *k, const cJSON *v, double *out)
{
    if (!cJSON_IsNumber(v)) {
        nomul_report(NOMUL_EINVAL, "config key '%s' wants a number", k->name);
        return -1;
    }
    double x = v->valuedouble;
    if (!isfinite(x) || x < k->lo || x > k->hi) {
        nomul_report(NOMUL_EINVAL, "config key '%s' = %g is outside [%g, %g]", k->name, x, k->lo,
                     k->hi);
        return -1;
    }
    if ((k->type == K_INT || k->type == K_LONG) && x != floor(x)) {
        nomul_report(NOMUL_EINVAL, "config key '%s' wants a whole number, not %g", k->name, x);
        return -1;
    }
    if (k->type == K_FLOAT || k->type == K_FLOAT4) {
        /* the field is a float: a value it cannot hold as a normal number
         * would silently become 0 (1e-50) or lose its precision */
        float f = (float)x;
        if (x != 0 && !(isfinite(f) && fabsf(f) >= FLT_MIN)) {
            nomul_report(NOMUL_EINVAL,
                         "config key '%s' = %g is not 0 and too small for a float (the "
                         "smallest is %g)",
                         k->name, x, (double)FLT_MIN);
            return -1;
        }
    }
    *out = x;
    return 0;
}

/* Whether a JSON text holds the escape \u0000, which cJSON would turn into
 * a NUL that cuts the string short (an out_dir of "runs\u0000x" would
 * become "runs"). Outside strings a backslash is not JSON at all. */
static int has_nul_escape(const char *json)
{
    for (const char *p = json; *p; p++) {
        if (*p != '\\')
            continue;
        if (p[1] == 'u' && p[2] == '0' && p[3] == '0' && p[4] == '0' && p[5] == '0')
            return 1;
        if (p[1])
            p++; /* the escaped character: \\ is one backslash */
    }
    return 0;
}

static int apply(nomul_train_config *c, const key_def *k, const cJSON *v)
{
    char *field = (char *)c + k->off;
    double x;
    switch (k->type) {
    case K_STR:
        if (!cJSON_IsString(v)) {
            nomul_report(NOMUL_EINVAL, "config key '%s' wants a string", k->name);
            return -1;
        }
        if (strlen(v->valuestring) >= k->size) {
            nomul_report(NOMUL_EINVAL, "config key '%s': the value is longer than %zu bytes",
                         k->name, k->size - 1);
            return -1;
        }
        memcpy(field, v->valuestring, strlen(v->valuestring) + 1);
        return 0;
    case K_ENUM: {
        char list[128];
        int i = cJSON_IsString(v) ? value_index(k->values, v->valuestring) : -1;
        if (!cJSON_IsString(v))
            nomul_report(NOMUL_EINVAL, "config key '%s' wants a string", k->name);
        else if (i < 0)
            nomul_report(NOMUL_EINVAL, "config key '%s' = '%s' is not one of %s", k->name,
                         v->valuestring, value_list(k->values, list, sizeof list));
        if (i < 0)
            return -1;
        *(int *)field = i;
        return 0;
    }
    case K_BOOL:
        if (cJSON_IsBool(v))
            *(int *)field = cJSON_IsTrue(v);
        else if (cJSON_IsNumber(v) && (v->valuedouble == 0 || v->valuedouble == 1))
            *(int *)field = v->valueint;
        else {
            nomul_report(NOMUL_EINVAL, "config key '%s' wants true or false", k->name);
            return -1;
        }
        return 0;
    case K_INT:
        if (number(k, v, &x))
            return -1;
        *(int *)field = (int)x;
        return 0;
    case K_LONG:
        if (number(k, v, &x))
            return -1;
        *(long *)field = (long)x;
        return 0;
    case K_FLOAT:
        if (number(k, v, &x))
            return -1;
        *(float *)field = (float)x;
        return 0;
    case K_FLOAT4: {
        float vals[4];
        int n = 0;
        if (cJSON_IsArray(v)) {
            n = cJSON_GetArraySize(v);
            if (n < 1 || n > 4) {
                nomul_report(NOMUL_EINVAL,
                             "config key '%s' wants 1 to 4 numbers (one per channel)", k->name);
                return -1;
            }
            for (int i = 0; i < n; i++) {
                if (number(k, cJSON_GetArrayItem(v, i), &x))
                    return -1;
                vals[i] = (float)x;
            }
        } else {
            if (number(k, v, &x))
                return -1;
            vals[0] = (float)x;
            n = 1;
        }
        for (int i = 0; i < 4; i++) /* a short list repeats its last value */
            ((float *)field)[i] = vals[i < n ? i : n - 1];
        return 0;
    }
    }
    return -1;
}

/* Applies one key of a JSON object (the op configs go to opcfg.c). */
static int apply_json(nomul_train_config *c, const char *name, const cJSON *v)
{
    int r = nomul_op_cfgs_set_cjson(&c->ops, name, v);
    if (r)
        return r == 1 ? 0 : -1;
    if (cJSON_IsObject(v)) { /* nested: {"data": {"train": ...}} */
        for (const cJSON *e = v->child; e; e = e->next) {
            char sub[160];
            if ((size_t)snprintf(sub, sizeof sub, "%s.%s", name, e->string) >= sizeof sub) {
                nomul_report(NOMUL_EINVAL, "config key '%s.%s' is too long", name, e->string);
                return -1;
            }
            if (apply_json(c, sub, e))
                return -1;
        }
        return 0;
    }
    const key_def *k = find_key(name);
    if (!k) {
        nomul_report(NOMUL_EINVAL, "unknown config key '%s' (nomul train --keys lists them)", name);
        return -1;
    }
    return apply(c, k, v);
}

int nomul_train_config_parse_json(nomul_train_config *c, const char *json)
{
    if (has_nul_escape(json)) {
        nomul_report(NOMUL_EINVAL, "the configuration holds \\u0000 (a NUL) in a string");
        return -1;
    }
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(json, &end, 0);
    if (root && end && *end) { /* what follows the object may only be white space */
        end += strspn(end, " \t\r\n");
        if (*end) {
            nomul_report(NOMUL_EINVAL,
                         "the configuration has more after its JSON object (near '%.20s')", end);
            cJSON_Delete(root);
            return -1;
        }
    }
    if (!root || !cJSON_IsObject(root)) {
        const char *at = cJSON_GetErrorPtr();
        nomul_report(NOMUL_EINVAL, "the configuration is not a JSON object%s%.20s%s",
                     root || !at ? "" : " (error near '", root || !at ? "" : at,
                     root || !at ? "" : "')");
        cJSON_Delete(root);
        return -1;
    }
    int r = 0;
    for (const cJSON *e = root->child; e && !r; e = e->next)
        r = apply_json(c, e->string, e);
    cJSON_Delete(root);
    return r;
}

int nomul_train_config_set(nomul_train_config *c, const char *key, const char *value)
{
    int r = nomul_op_cfgs_set(&c->ops, key, value);
    if (r)
        return r == 1 ? 0 : -1;
    const key_def *k = find_key(key);
    if (!k) {
        nomul_report(NOMUL_EINVAL, "unknown config key '%s' (nomul train --keys lists them)", key);
        return -1;
    }
    if (value[0] == '"' && has_nul_escape(value)) {
        nomul_report(NOMUL_EINVAL, "config key '%s': the value holds \\u0000 (a NUL)", key);
        return -1;
    }
    cJSON *v = NULL;
    if ((k->type == K_STR || k->type == K_ENUM) && value[0] != '"')
        v = cJSON_CreateString(value); /* a bare word or path */
    else {
        v = cJSON_ParseWithOpts(value, NULL, 1);
        if (!v && k->type == K_FLOAT4) { /* 0.5,0.5,0.5 */
            size_t n = strlen(value) + 3;
            char *arr = malloc(n);
            if (arr) {
                snprintf(arr, n, "[%s]", value);
                v = cJSON_ParseWithOpts(arr, NULL, 1);
                free(arr);
            }
        }
        if (!v) /* not JSON: the word itself, for apply's message on the type */
            v = cJSON_CreateString(value);
    }
    if (!v) {
        nomul_report(NOMUL_EINVAL, "config key '%s': cannot read the value '%s'", key, value);
        return -1;
    }
    r = apply(c, k, v);
    cJSON_Delete(v);
    return r;
}

int nomul_train_config_check(const nomul_train_config *c)
{
    if (!c->model[0]) {
        nomul_report(NOMUL_EINVAL, "config key 'model' is empty");
        return -1;
    }
    if (c->task == NOMUL_TASK_TRANSLATION) {
        const char *need[][2] = {{"data.train_src", c->train_src}, {"data.train_tgt", c->train_tgt},
                                 {"data.valid_src", c->valid_src}, {"data.valid_tgt", c->valid_tgt},
                                 {"data.test_src", c->test_src},   {"data.test_tgt", c->test_tgt},
                                 {"data.src_dict", c->src_dict},   {"data.tgt_dict", c->tgt_dict}};
        for (size_t i = 0; i < sizeof need / sizeof need[0]; i++)
            if (!need[i][1][0]) {
                nomul_report(NOMUL_EINVAL, "task translation needs config key '%s'", need[i][0]);
                return -1;
            }
        if (c->tokenizer == NOMUL_TOKENIZER_MOSES && (!c->src_lang[0] || !c->tgt_lang[0])) {
            nomul_report(NOMUL_EINVAL, "config key 'data.tokenizer' moses needs 'data.src_lang' "
                         "and 'data.tgt_lang'");
            return -1;
        }
    } else if (c->activation_fn != NOMUL_ACT_RELU) {
        nomul_report(NOMUL_EINVAL, "config key 'activation_fn' applies to task translation "
                     "only (the image models' activations are their own)");
        return -1;
    } else if (!c->train_images[0] || !c->test_images[0]) {
        nomul_report(NOMUL_EINVAL, "config keys 'data.train' and 'data.test' must name the data");
        return -1;
    }
    if (c->task != NOMUL_TASK_TRANSLATION && c->data_format == NOMUL_DATA_FORMAT_IDX &&
        (!c->train_labels[0] || !c->test_labels[0])) {
        nomul_report(NOMUL_EINVAL,
                     "data.format idx needs 'data.train_labels' and 'data.test_labels'");
        return -1;
    }
    if (c->epochs < 1 && c->steps < 1) {
        nomul_report(NOMUL_EINVAL, "set 'epochs' or 'steps' to at least 1");
        return -1;
    }
    if (c->task != NOMUL_TASK_TRANSLATION && c->data_format == NOMUL_DATA_FORMAT_IDX &&
        c->classes > 256) {
        nomul_report(NOMUL_EINVAL,
                     "config key 'data.classes' = %d: IDX labels are bytes, at most 256 classes",
                     c->classes);
        return -1;
    }
    if (c->task != NOMUL_TASK_TRANSLATION && c->crop_pad > c->image) {
        nomul_report(NOMUL_EINVAL,
                     "config key 'aug.crop_pad' = %d exceeds the image size (data.image %d)",
                     c->crop_pad, c->image);
        return -1;
    }
    if (c->min_lr > c->lr) {
        nomul_report(NOMUL_EINVAL, "config key 'min_lr' (%g) exceeds 'lr' (%g)", c->min_lr, c->lr);
        return -1;
    }
    if (!c->out_dir[0]) {
        nomul_report(NOMUL_EINVAL, "config key 'out_dir' is empty");
        return -1;
    }
    return 0;
}

/* The shortest of the %.1g ... %.9g texts that reads back to the same float
 * (0.002, not 0.00200000009; 10, not 1e+01), both as strtof reads it and as
 * cJSON does (strtod, then the cast to float): configurations written into
 * config.json and checkpoints come back exactly on --resume. %.9g always
 * reads back. */
static int format_float(char *buf, size_t len, float x)
{
    char best[32], t[32];
    snprintf(best, sizeof best, "%.9g", x);
    for (int digits = 1; digits < 9; digits++) {
        snprintf(t, sizeof t, "%.*g", digits, x);
        if (strlen(t) < strlen(best) && strtof(t, NULL) == x && (float)strtod(t, NULL) == x)
            memcpy(best, t, strlen(t) + 1);
    }
    return snprintf(buf, len, "%s", best);
}

/* One key's value as JSON. */
/* The longest formatted value: a string field of NOMUL_PATH_MAX − 1 bytes
 * that are all control characters, each escaped by cJSON as \u00XX (six
 * bytes), with its quotes (a shorter buffer cut the JSON a checkpoint
 * stores in the middle of a string: found by fuzz_config). */
enum { VALUE_MAX = 6 * NOMUL_PATH_MAX + 16 };

static int format_value(const nomul_train_config *c, const key_def *k, char *buf, size_t len)
{
    const char *field = (const char *)c + k->off;
    switch (k->type) {
    case K_STR:
    case K_ENUM: {
        cJSON *s = cJSON_CreateString(k->type == K_STR ? field : k->values[*(const int *)field]);
        char *t = s ? cJSON_PrintUnformatted(s) : NULL;
        int n = snprintf(buf, len, "%s", t ? t : "\"\"");
        free(t);
        cJSON_Delete(s);
        return n;
    }
    case K_BOOL: return snprintf(buf, len, "%s", *(const int *)field ? "true" : "false");
    case K_INT: return snprintf(buf, len, "%d", *(const int *)field);
    case K_LONG: return snprintf(buf, len, "%ld", *(const long *)field);
    case K_FLOAT: return format_float(buf, len, *(const float *)field);
    case K_FLOAT4: {
        const float *f = (const float *)field;
        char v[4][32];
        for (int i = 0; i < 4; i++)
            format_float(v[i], sizeof v[i], f[i]);
        return snprintf(buf, len, "[%s, %s, %s, %s]", v[0], v[1], v[2], v[3]);
    }
    }
    return 0;
}

int nomul_train_config_format(const nomul_train_config *c, char *buf, size_t len)
{
    size_t at = 0;
    char v[VALUE_MAX];
#define PUT(...)                                                                           \
    do {                                                                                   \
        int n_ = snprintf(at < len ? buf + at : NULL, at < len ? len - at : 0, __VA_ARGS__); \
        at += n_ > 0 ? (size_t)n_ : 0;                                                     \
    } while (0)
    PUT("{");
    for (size_t i = 0; i < NKEYS; i++) {
        format_value(c, &keys[i], v, sizeof v);
        PUT("%s\n  \"%s\": %s", i ? "," : "", keys[i].name, v);
    }
    for (int f = 0; f < NOMUL_CFG_COUNT; f++) {
        nomul_op_cfg_format(&c->ops.family[f], v, sizeof v);
        PUT(",\n  \"%s\": %s", nomul_op_family_key((nomul_op_family)f), v);
    }
    PUT("\n}\n");
#undef PUT
    return (int)at;
}

void nomul_train_config_print_keys(const nomul_train_config *c, FILE *out)
{
    char v[VALUE_MAX], list[128];
    for (size_t i = 0; i < NKEYS; i++) {
        format_value(c, &keys[i], v, sizeof v);
        fprintf(out, "  %-20s %s\n  %-20s   %s%s%s\n", keys[i].name, v, "", keys[i].help,
                keys[i].values ? ": " : "",
                keys[i].values ? value_list(keys[i].values, list, sizeof list) : "");
    }
    for (int f = 0; f < NOMUL_CFG_COUNT; f++) {
        nomul_op_cfg_format(&c->ops.family[f], v, sizeof v);
        fprintf(out, "  %-20s %s\n", nomul_op_family_key((nomul_op_family)f), v);
    }
}
