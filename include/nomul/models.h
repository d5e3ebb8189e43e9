/*
 * nomul/models.h — models built on the autodiff graph, every product and
 * composite taking the per-family operation configuration (nomul/opcfg.h).
 *
 * A model owns its parameters, each named as timm names it (so checkpoints
 * map onto PyTorch state dicts) and flagged for weight decay (matrices) or
 * not (biases, norms, tokens, positions), as the DeiT recipe trains them.
 */
#ifndef NOMUL_MODELS_H
#define NOMUL_MODELS_H

#include <stdint.h>

#include "nomul/autodiff.h"
#include "nomul/opcfg.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct nomul_param {
    char name[64];
    nomul_tensor *t;
    int decay;  /* 1: weight decay applies */
    int buffer; /* 1: state, not trained (batch norm's running statistics):
                 * saved in checkpoints, skipped by the optimizer */
} nomul_param;

/* What one forward pass is for: training (dropout and drop-path active) or
 * evaluation, and the seed of this pass's random choices. */
typedef struct nomul_forward_opts {
    int train;
    float drop_path; /* stochastic depth: the rate of the last block (linear in depth) */
    uint64_t seed;
    /* data parallelism: this batch is rows [batch_offset, batch_offset + b)
     * of a global batch of batch_total (0: the batch is the whole); the
     * per-example draws (drop-path) are those of the global batch's rows */
    int batch_offset, batch_total;
} nomul_forward_opts;


/* ViT / DeiT: patch embedding (a conv of kernel and stride `patch`), a class
 * token, learned positions, `depth` pre-norm blocks of multi-head attention
 * and a GELU MLP, a final layer norm and a linear head on the class token. */
typedef struct nomul_vit_config {
    int image, channels, patch;
    int dim, depth, heads, mlp;
    int classes;
} nomul_vit_config;

/* Named sizes: "vit_fmnist" (28×28×1, patch 7, 64 wide, 4 blocks, 4 heads,
 * MLP 128), "vit_fmnist_p4" (the same with patch 4: 49 tokens, 2.3× the work),
 * "vit_fmnist_tiny" (the same with 32 wide, 2 blocks, 2 heads),
 * "deit_tiny_patch16_224" (224×224×3, 192 wide, 12 blocks, 3 heads, 1000
 * classes). 0 and a reported error for an unknown name (the message lists
 * the names). */
int nomul_vit_config_named(const char *name, nomul_vit_config *out);

typedef struct nomul_vit nomul_vit;

/* A ViT with timm's initialisation (truncated normal σ 0.02 for matrices,
 * positions and the class token; zero biases; unit norms) from the seed;
 * NULL after a report for an invalid configuration. */
nomul_vit *nomul_vit_new(const nomul_vit_config *c, uint64_t seed);
void nomul_vit_free(nomul_vit *m);
/* The parameters, in a fixed order; their count. */
int nomul_vit_params(nomul_vit *m, nomul_param **params);
/* Logits (batch, classes) of images x (batch, channels, image, image). */
nomul_tensor *nomul_vit_forward(nomul_vit *m, nomul_graph *g, const nomul_op_cfgs *cfgs,
                                nomul_tensor *x);

/* The same with training options (drop-path); nomul_vit_forward is this
 * in evaluation mode. */
nomul_tensor *nomul_vit_forward_opts(nomul_vit *m, nomul_graph *g, const nomul_op_cfgs *cfgs,
                                     nomul_tensor *x, const nomul_forward_opts *o);

/* ---- Any model by name: the registry ----------------------------------------- */

/* Every model nomul builds is one row of one table (model.c): its name, its
 * kind and its family's constructor. nomul_model_names() lists them all. */
typedef enum nomul_model_kind {
    NOMUL_MODEL_IMAGE_CLASSIFIER, /* images (b, channels, image, image) → logits (b, classes) */
    NOMUL_MODEL_SEQ2SEQ           /* sources and target prefixes → logits over the target vocabulary */
} nomul_model_kind;

typedef struct nomul_model_info {
    const char *name;
    nomul_model_kind kind;
} nomul_model_info;

/* What the data fixes of a model: image classifiers read image, channels
 * and classes; seq2seq models vocab_src and vocab_tgt. */
typedef struct nomul_model_data {
    int image, channels, classes;
    int vocab_src, vocab_tgt;
} nomul_model_data;

/* The registry's row of a name; NULL after a report listing the names. */
const nomul_model_info *nomul_model_find(const char *name);
/* Every model's name, comma separated: "vit_fmnist, ..., transformer_tiny". */
const char *nomul_model_names(void);
/* "image classifier" or "seq2seq model", for messages. */
const char *nomul_model_kind_name(nomul_model_kind kind);

typedef struct nomul_model nomul_model;

/* Any model by name, sized for the data (the input and head of an image
 * classifier, the vocabularies of a seq2seq model). NULL after a report for
 * an unknown name or a size the architecture cannot take. */
nomul_model *nomul_model_create(const char *name, const nomul_model_data *d, uint64_t seed);
/* An image classifier by name for images of image×image pixels with
 * `channels` channels and `classes` classes (nomul_model_create for that
 * kind; a seq2seq name is reported). */
nomul_model *nomul_model_new(const char *name, int image, int channels, int classes,
                             uint64_t seed);
void nomul_model_free(nomul_model *m);
const char *nomul_model_name(const nomul_model *m);
nomul_model_kind nomul_model_get_kind(const nomul_model *m);
int nomul_model_params(nomul_model *m, nomul_param **params);
long nomul_model_param_count(nomul_model *m);
/* An image classifier's logits (batch, classes) of images x (batch,
 * channels, image, image); NULL after a report for a seq2seq model. */
nomul_tensor *nomul_model_forward(nomul_model *m, nomul_graph *g, const nomul_op_cfgs *cfgs,
                                  nomul_tensor *x, const nomul_forward_opts *o);
struct nomul_seq2seq;
/* A seq2seq model's transformer (owned by m: nomul_seq2seq_forward,
 * nomul_seq2seq_translate take it); NULL for an image classifier. */
struct nomul_seq2seq *nomul_model_seq2seq(nomul_model *m);

/* ---- the transformer encoder-decoder (translation) --------------------------- */

/* The FFN's activation (fairseq's activation_fn): ReLU, its default, or GELU
 * (piecewise affine when functional_cfg is) */
typedef enum { NOMUL_ACT_RELU, NOMUL_ACT_GELU } nomul_activation;

typedef struct nomul_seq2seq_config {
    int vocab_src, vocab_tgt;
    int dim, ffn, heads, enc_layers, dec_layers;
    int max_positions;
    float dropout;
    int share_dec_embed; /* the output projection is the decoder's embedding table */
    int pad, bos, eos;   /* token ids (fairseq's: 1, 0, 2) */
    nomul_activation activation; /* the FFN's (named sizes: ReLU) */
} nomul_seq2seq_config;

/* Named sizes: "transformer_iwslt_de_en" (fairseq's: 512 wide, FFN 1024, 4
 * heads, 6 + 6 layers, dropout 0.3), "transformer_small" (256, 512, 4, 3 + 3,
 * 0.2), "transformer_tiny" (64, 128, 4, 2 + 2, 0.1); shared decoder input and
 * output embeddings, 1024 positions, ReLU FFNs. 0 and a report for a name that is not
 * a seq2seq model of the registry. */
int nomul_seq2seq_config_named(const char *name, int vocab_src, int vocab_tgt,
                               nomul_seq2seq_config *c);

typedef struct nomul_seq2seq nomul_seq2seq;
/* fairseq's initialisation (embeddings N(0, 1/d) with zero padding rows,
 * Xavier-uniform matrices, zero biases, unit norms) from the seed. */
nomul_seq2seq *nomul_seq2seq_new(const nomul_seq2seq_config *c, uint64_t seed);
void nomul_seq2seq_free(nomul_seq2seq *m);
int nomul_seq2seq_params(nomul_seq2seq *m, nomul_param **params);
const nomul_seq2seq_config *nomul_seq2seq_get_config(const nomul_seq2seq *m);
/* Logits (b·t, vocab_tgt) of the target inputs tgt_in (b, t: bos then the
 * target shifted right) given the sources src (b, s, padded with pad). */
nomul_tensor *nomul_seq2seq_forward(nomul_seq2seq *m, nomul_graph *g, const nomul_op_cfgs *cfgs,
                                    const int *src, int b, int s, const int *tgt_in, int t,
                                    const nomul_forward_opts *o);

typedef struct nomul_search_opts {
    int beam;           /* 1: greedy */
    double len_penalty; /* scores are Σ log p / length^len_penalty (fairseq's lenpen) */
    double max_len_a, max_len_b; /* at most a·(source length) + b tokens */
} nomul_search_opts;

/* Beam search for each of b sources (b, s, padded): out[i] receives a
 * malloc'd array of out_len[i] token ids (without bos and eos). Runs in the
 * model's configured arithmetic; hypotheses are ranked in double. 0, or -1
 * after a report (nothing allocated then). */
int nomul_seq2seq_translate(nomul_seq2seq *m, nomul_graph *g, const nomul_op_cfgs *cfgs,
                            const int *src, int b, int s, const nomul_search_opts *so,
                            int **out, int *out_len);

#ifdef __cplusplus
}
#endif
#endif
