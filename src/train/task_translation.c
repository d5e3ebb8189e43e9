/*
 * task_translation.c — the trainer's translation task: BPE-segmented
 * parallel text encoded with fairseq dictionaries, batches by a token budget
 * shuffled per epoch from the seed, the transformer encoder-decoder, label-
 * smoothed cross-entropy over target tokens (padding ignored), validation
 * loss every evaluation and test BLEU (beam search, BPE removed, detokenized
 * when the data were tokenized, sacreBLEU's defaults) at the end.
 *
 * Under several ranks (src/dist/) each takes consecutive sentences of every
 * batch, padded as in the whole batch (so that every sentence draws its
 * dropout as in one process); the validation batches and the test set's
 * batches are split over the ranks, the sums and the hypotheses gathered.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../core/internal.h"
#include "../dist/dist_internal.h"
#include "nomul/safetensors.h"
#include "nomul/text.h"
#include "trainer_internal.h"

typedef struct {
    long n;
    int **src, **tgt; /* token ids, each ending in </s> */
    long *sl, *tl;
    long nb, *starts, *order;
} tset;

typedef struct {
    nomul_vocab *sv, *tv;
    tset train, valid, test;
    char **test_refs; /* test targets with BPE removed */
    nomul_seq2seq *model;
    long *perm;
    long at; /* the next batch of the epoch */
    long epoch;
    int *src, *tin, *tout; /* a batch, padded */
    size_t cap;
} tr_task;

static void tset_free(tset *s)
{
    for (long i = 0; i < s->n; i++) {
        free(s->src ? s->src[i] : NULL);
        free(s->tgt ? s->tgt[i] : NULL);
    }
    free(s->src);
    free(s->tgt);
    free(s->sl);
    free(s->tl);
    free(s->starts);
    free(s->order);
}

static int tset_load(tset *s, const char *sp, const char *tp, const nomul_vocab *sv,
                     const nomul_vocab *tv, long limit, long max_tokens, char ***refs)
{
    nomul_parallel *p = nomul_parallel_read(sp, tp);
    if (!p)
        return -1;
    long n = limit > 0 && limit < p->n ? limit : p->n;
    s->n = n;
    s->src = calloc((size_t)n + 1, sizeof *s->src);
    s->tgt = calloc((size_t)n + 1, sizeof *s->tgt);
    s->sl = malloc(sizeof *s->sl * ((size_t)n + 1));
    s->tl = malloc(sizeof *s->tl * ((size_t)n + 1));
    if (refs)
        *refs = calloc((size_t)n + 1, sizeof **refs);
    int rc = -1;
    if (!s->src || !s->tgt || !s->sl || !s->tl || (refs && !*refs)) {
        nomul_report(NOMUL_ENOMEM, "out of memory reading '%s'", sp);
        goto out;
    }
    for (long i = 0; i < n; i++) {
        int cap = 8;
        for (const char *q = p->src[i]; *q; q++)
            cap += *q == ' ';
        for (const char *q = p->tgt[i]; *q; q++)
            cap += *q == ' ';
        s->src[i] = malloc(sizeof(int) * (size_t)cap);
        s->tgt[i] = malloc(sizeof(int) * (size_t)cap);
        if (!s->src[i] || !s->tgt[i]) {
            nomul_report(NOMUL_ENOMEM, "out of memory reading '%s'", sp);
            goto out;
        }
        int a = nomul_vocab_encode(sv, p->src[i], s->src[i], cap);
        int b = nomul_vocab_encode(tv, p->tgt[i], s->tgt[i], cap);
        if (a < 0 || b < 0)
            goto out;
        s->sl[i] = a;
        s->tl[i] = b;
        if (refs) {
            if (!((*refs)[i] = strdup(p->tgt[i])))
                goto out;
            nomul_bpe_remove((*refs)[i]);
        }
    }
    s->nb = nomul_token_batches(s->sl, s->tl, n, max_tokens, &s->starts, &s->order);
    if (s->nb < 0)
        goto out;
    rc = 0;
out:
    nomul_parallel_free(p);
    return rc;
}

/* A hypothesis with BPE removed, detokenized when the data were tokenized
 * (data.tokenizer moses): s itself, or a new string (s freed); NULL after a
 * report (s freed). */
static char *detokenized(const nomul_train_config *c, char *s)
{
    if (!s || c->tokenizer != NOMUL_TOKENIZER_MOSES)
        return s;
    char *d = nomul_moses_detokenize(s, c->tgt_lang);
    free(s);
    return d;
}

/* The test references as sacreBLEU wants them: raw text (data.test_ref), or
 * the targets with BPE removed, detokenized when the data were tokenized. */
static int test_references(tr_task *k, const nomul_train_config *c)
{
    if (c->tokenizer != NOMUL_TOKENIZER_MOSES)
        return 0;
    if (!c->test_ref[0]) {
        for (long i = 0; i < k->test.n; i++)
            if (!(k->test_refs[i] = detokenized(c, k->test_refs[i])))
                return -1;
        return 0;
    }
    nomul_parallel *p = nomul_parallel_read(c->test_ref, c->test_ref);
    if (!p)
        return -1;
    if (p->n < k->test.n || (c->test_limit == 0 && p->n != k->test.n)) {
        nomul_report(NOMUL_EINVAL, "data.test_ref '%s' has %ld lines, data.test_tgt '%s' %ld",
                     c->test_ref, p->n, c->test_tgt, k->test.n);
        nomul_parallel_free(p);
        return -1;
    }
    for (long i = 0; i < k->test.n; i++) {
        free(k->test_refs[i]);
        k->test_refs[i] = p->src[i];
        p->src[i] = NULL;
    }
    nomul_parallel_free(p);
    return 0;
}

static void tr_free(trainer *t)
{
    tr_task *k = t->td;
    tset_free(&k->train);
    tset_free(&k->valid);
    for (long i = 0; k->test_refs && i < k->test.n; i++)
        free(k->test_refs[i]);
    free(k->test_refs);
    tset_free(&k->test);
    nomul_vocab_free(k->sv);
    nomul_vocab_free(k->tv);
    nomul_seq2seq_free(k->model);
    free(k->perm);
    free(k->src);
    free(k->tin);
    free(k->tout);
    free(k);
    t->td = NULL;
}

static int tr_setup(trainer *t)
{
    const nomul_train_config *c = t->c;
    tr_task *k = calloc(1, sizeof *k);
    if (!(t->td = k)) {
        nomul_report(NOMUL_ENOMEM, "out of memory");
        return -1;
    }
    if (!(k->sv = nomul_vocab_load(c->src_dict)) || !(k->tv = nomul_vocab_load(c->tgt_dict)))
        return -1;
    if (tset_load(&k->train, c->train_src, c->train_tgt, k->sv, k->tv, c->train_limit,
                  c->max_tokens, NULL) ||
        tset_load(&k->valid, c->valid_src, c->valid_tgt, k->sv, k->tv, 0, c->max_tokens, NULL) ||
        tset_load(&k->test, c->test_src, c->test_tgt, k->sv, k->tv, c->test_limit, c->max_tokens,
                  &k->test_refs) ||
        test_references(k, c))
        return -1;
    /* every split must hold sentence pairs: an empty training set has no
     * steps per epoch, an empty validation or test set no loss or BLEU */
    const struct {
        const char *key, *path;
        long n;
    } sets[] = {{"data.train_src", c->train_src, k->train.nb},
                {"data.valid_src", c->valid_src, k->valid.nb},
                {"data.test_src", c->test_src, k->test.nb}};
    for (int i = 0; i < 3; i++)
        if (sets[i].n < 1) {
            nomul_report(NOMUL_EINVAL, "%s ('%s') holds no sentence pairs", sets[i].key,
                         sets[i].path);
            return -1;
        }
    nomul_seq2seq_config mc;
    if (!nomul_seq2seq_config_named(c->model, nomul_vocab_size(k->sv), nomul_vocab_size(k->tv),
                                    &mc))
        return -1;
    if (c->dropout >= 0.0f)
        mc.dropout = c->dropout;
    mc.activation = c->activation_fn;
    if (!(k->model = nomul_seq2seq_new(&mc, (uint64_t)c->seed)))
        return -1;
    t->np = nomul_seq2seq_params(k->model, &t->p);
    t->per_epoch = k->train.nb;
    k->cap = (size_t)c->max_tokens * 2 + 64;
    k->perm = malloc(sizeof *k->perm * (size_t)(k->train.nb + 1));
    k->src = malloc(sizeof(int) * k->cap);
    k->tin = malloc(sizeof(int) * k->cap);
    k->tout = malloc(sizeof(int) * k->cap);
    if (!k->perm || !k->src || !k->tin || !k->tout) {
        nomul_report(NOMUL_ENOMEM, "out of memory");
        return -1;
    }
    snprintf(t->describe, sizeof t->describe, "%ld sentence pairs (%ld valid, %ld test), "
             "vocabularies %d/%d", k->train.n, k->valid.n, k->test.n, nomul_vocab_size(k->sv),
             nomul_vocab_size(k->tv));
    return 0;
}

static void tr_start(trainer *t, long epoch, long first)
{
    tr_task *k = t->td;
    nomul_shuffle_batches(k->train.nb, (uint64_t)t->c->seed, epoch, k->perm);
    k->at = first;
    k->epoch = epoch;
}

/* Pads batch b of s into src (n, S), tin and tout (n, T); returns n. */
static int collate(tr_task *k, const tset *s, long b, int *S, int *T)
{
    const long from = s->starts[b], to = s->starts[b + 1];
    const int n = (int)(to - from);
    long ms = 1, mt = 1;
    for (long q = from; q < to; q++) {
        long i = s->order[q];
        ms = s->sl[i] > ms ? s->sl[i] : ms;
        mt = s->tl[i] > mt ? s->tl[i] : mt;
    }
    for (int r = 0; r < n; r++) {
        long i = s->order[from + r];
        for (long j = 0; j < ms; j++)
            k->src[r * ms + j] = j < s->sl[i] ? s->src[i][j] : NOMUL_PAD;
        for (long j = 0; j < mt; j++) {
            /* the decoder sees <s> then the target shifted right */
            k->tin[r * mt + j] = j == 0 ? NOMUL_BOS : j < s->tl[i] ? s->tgt[i][j - 1] : NOMUL_PAD;
            k->tout[r * mt + j] = j < s->tl[i] ? s->tgt[i][j] : NOMUL_PAD;
        }
    }
    *S = (int)ms;
    *T = (int)mt;
    return n;
}

static nomul_tensor *tr_loss(trainer *t, const run_state *st, long *items)
{
    tr_task *k = t->td;
    const nomul_train_config *c = t->c;
    const long b = k->perm[k->at++ % k->train.nb];
    int S, T, n = collate(k, &k->train, b, &S, &T);
    /* this rank's sentences [lo, hi) of the batch, padded as the whole */
    long lo, hi;
    train_shard(t, n, &lo, &hi);
    const int *src = k->src + lo * S, *tin = k->tin + lo * T, *tout = k->tout + lo * T;
    long tokens = 0;
    for (long q = 0; q < (hi - lo) * T; q++)
        tokens += tout[q] != NOMUL_PAD;
    *items = tokens;
    const nomul_op_cfg *lc = &c->ops.family[NOMUL_CFG_LOSS_FUNCTIONAL];
    if (hi == lo) /* a batch of fewer sentences than ranks: none here */
        return train_cross_entropy_no_rows(t, t->g, lc);
    nomul_forward_opts fo = {1, 0.0f,
                             nomul_mix64((uint64_t)c->seed ^ (0x9e3779b97f4a7c15ull * (uint64_t)(st->step + 1))),
                             (int)lo, t->nranks > 1 ? n : 0};
    nomul_tensor *logits = nomul_seq2seq_forward(k->model, t->g, &c->ops, src, (int)(hi - lo), S,
                                                 tin, T, &fo);
    return train_cross_entropy(t, t->g, lc, logits, tout, NOMUL_PAD, c->label_smoothing);
}

/* Mean cross-entropy per target token (no smoothing), from the logits in double. */
static int tr_valid_loss(trainer *t, double *loss)
{
    tr_task *k = t->td;
    nomul_graph_set_grad(t->g, 0);
    double total = 0.0;
    long count = 0, b0, b1; /* this rank's batches */
    train_shard(t, k->valid.nb, &b0, &b1);
    for (long b = b0; b < b1; b++) {
        int S, T, n = collate(k, &k->valid, b, &S, &T);
        nomul_graph_reset(t->g);
        nomul_tensor *z = nomul_seq2seq_forward(k->model, t->g, &t->c->ops, k->src, n, S, k->tin,
                                                T, NULL);
        if (!z) {
            nomul_graph_set_grad(t->g, 1);
            return -1;
        }
        const int v = z->shape[1];
        for (long r = 0; r < (long)n * T; r++) {
            if (k->tout[r] == NOMUL_PAD)
                continue;
            total += train_row_nll(z->data + r * v, v, k->tout[r], NULL);
            count++;
        }
    }
    nomul_graph_set_grad(t->g, 1);
    nomul_graph_reset(t->g);
    double sums[2] = {total, (double)count}; /* over the ranks, in rank order */
    if (dist_allreduce_sum_f64(sums, 2))
        return -1;
    *loss = sums[1] > 0 ? sums[0] / sums[1] : NAN;
    return 0;
}

/* Several ranks: each holds the hypotheses of its batches (the others
 * NULL); afterwards every rank holds all n. */
static int gather_hypotheses(long n, char **hyps)
{
    /* this rank's as (index, length, bytes) records, the ranks' concatenated */
    size_t bytes = 0;
    for (long i = 0; i < n; i++)
        bytes += hyps[i] ? 2 * sizeof(int64_t) + strlen(hyps[i]) : 0;
    char *mine = malloc(bytes + 1), *o = mine, *all = NULL;
    long total = 0;
    if (!mine) {
        nomul_report(NOMUL_ENOMEM, "out of memory");
        return -1;
    }
    for (long i = 0; i < n; i++)
        if (hyps[i]) {
            int64_t head[2] = {i, (int64_t)strlen(hyps[i])};
            memcpy(o, head, sizeof head);
            memcpy(o + sizeof head, hyps[i], (size_t)head[1]);
            o += sizeof head + (size_t)head[1];
        }
    int rc = dist_allgather_bytes(mine, bytes, &all, &total);
    free(mine);
    for (const char *p = all; !rc && p < all + total;) {
        int64_t head[2];
        memcpy(head, p, sizeof head);
        p += sizeof head;
        if (head[0] >= 0 && head[0] < n && !hyps[head[0]] &&
            !(hyps[head[0]] = strndup(p, (size_t)head[1]))) {
            nomul_report(NOMUL_ENOMEM, "out of memory");
            rc = -1;
        }
        p += head[1];
    }
    free(all);
    return rc;
}

/* Test BLEU: beam search over the test set, BPE removed. */
static int tr_bleu(trainer *t, double *bleu)
{
    tr_task *k = t->td;
    const nomul_train_config *c = t->c;
    char **hyps = calloc((size_t)k->test.n + 1, sizeof *hyps);
    int rc = -1;
    if (!hyps) {
        nomul_report(NOMUL_ENOMEM, "out of memory");
        return -1;
    }
    nomul_search_opts so = {c->beam, c->lenpen, c->max_len_a, c->max_len_b};
    long b0, b1; /* this rank's batches; the hypotheses are gathered after */
    train_shard(t, k->test.nb, &b0, &b1);
    for (long b = b0; b < b1; b++) {
        int S, T, n = collate(k, &k->test, b, &S, &T);
        int **out = calloc((size_t)n, sizeof *out), *len = calloc((size_t)n, sizeof *len);
        if (!out || !len || nomul_seq2seq_translate(k->model, t->g, &c->ops, k->src, n, S, &so, out,
                                                    len)) {
            free(out);
            free(len);
            goto done;
        }
        for (int r = 0; r < n; r++) {
            size_t cap = 16;
            for (int j = 0; j < len[r]; j++)
                cap += strlen(nomul_vocab_token(k->tv, out[r][j])) + 1;
            char *s = malloc(cap), *o = s;
            for (int j = 0; s && j < len[r]; j++)
                o += sprintf(o, "%s%s", j ? " " : "", nomul_vocab_token(k->tv, out[r][j]));
            if (s) {
                *o = 0;
                nomul_bpe_remove(s);
            }
            hyps[k->test.order[k->test.starts[b] + r]] = s = detokenized(c, s);
            free(out[r]);
        }
        free(out);
        free(len);
    }
    if (t->nranks > 1 && gather_hypotheses(k->test.n, hyps))
        goto done;
    for (long i = 0; i < k->test.n; i++)
        if (!hyps[i] && !(hyps[i] = strdup(""))) {
            nomul_report(NOMUL_ENOMEM, "out of memory");
            goto done;
        }
    /* the hypotheses, in the test set's order, as fairseq-generate's H lines
     * without the scores: test.hyp beside the metrics */
    size_t cap = 1;
    for (long i = 0; i < k->test.n; i++)
        cap += strlen(hyps[i]) + 1;
    char *text = malloc(cap), *o = text;
    if (!text) {
        nomul_report(NOMUL_ENOMEM, "out of memory");
        goto done;
    }
    for (long i = 0; i < k->test.n; i++)
        o += sprintf(o, "%s\n", hyps[i]);
    char path[NOMUL_PATH_MAX + 16];
    snprintf(path, sizeof path, "%s/test.hyp", c->out_dir);
    int bad = t->rank == 0 && train_write_text(path, text);
    free(text);
    if (bad)
        goto done;
    const char *const *refs[1] = {(const char *const *)k->test_refs};
    nomul_bleu_result r;
    if (nomul_bleu((const char *const *)hyps, refs, 1, k->test.n, &r) == 0) {
        *bleu = r.score / 100.0;
        rc = 0;
    }
done:
    for (long i = 0; i < k->test.n; i++)
        free(hyps[i]);
    free(hyps);
    return rc;
}

static int tr_evaluate(trainer *t, int final, double *loss, double *metric)
{
    if (tr_valid_loss(t, loss))
        return -1;
    *metric = NAN;
    return final ? tr_bleu(t, metric) : 0;
}

/* ---- what validation and decoding need, before the first step ---------------- */

/* evalmem.c's dry run: the forward of b sentences of s source and t target
 * tokens (every one </s>: the values do not change the shapes) */
typedef struct {
    nomul_seq2seq *m;
    const nomul_op_cfgs *ops;
} s2s_dry;

static int s2s_dry_forward(void *ctx, nomul_graph *g, int b, int s, int t)
{
    const s2s_dry *d = ctx;
    const int eos = nomul_seq2seq_get_config(d->m)->eos;
    int src[64], tin[64];
    if (b * s > 64 || b * t > 64) {
        nomul_report(NOMUL_EINVAL, "s2s_dry_forward: a dry run of at most 64 tokens");
        return -1;
    }
    for (int i = 0; i < 64; i++)
        src[i] = tin[i] = eos;
    return nomul_seq2seq_forward(d->m, g, d->ops, src, b, s, tin, t, NULL) ? 0 : -1;
}

/* The target tokens beam search allows a source of slen tokens: the steps
 * of nomul_seq2seq_translate, whose last forward is over that many. */
static int search_max_len(const nomul_search_opts *so, int slen, int max_positions)
{
    int maxlen = (int)(so->max_len_a * slen + so->max_len_b);
    if (maxlen < 1)
        maxlen = 1;
    return maxlen + 1 > max_positions ? max_positions - 1 : maxlen;
}

/* Whether g's arena holds beam search over sources of up to smax tokens:
 * refused naming the keys and figures otherwise. *need: the bound of the
 * bytes it needs; valid_need: the validation's (0: none), for the advice. */
static int decoding_fits(const evalmem_fit *fit, const nomul_train_config *c,
                         const nomul_seq2seq *m, nomul_graph *g, long smax, double valid_need,
                         const char *what, double *need)
{
    const nomul_search_opts so = {c->beam, c->lenpen, c->max_len_a, c->max_len_b};
    const int tmax = search_max_len(&so, (int)smax, nomul_seq2seq_get_config(m)->max_positions);
    const double have = (double)nomul_graph_arena_use(g).size, mb = 1024.0 * 1024.0;
    *need = evalmem_bytes(fit, c->beam, smax, tmax);
    if (*need <= have)
        return 0;
    char also[128] = "";
    if (valid_need > have)
        snprintf(also, sizeof also, "; validation needs %.1f MB too (arena_mb %.0f, or lower "
                 "max_tokens)", valid_need / mb,
                 ceil((*need > valid_need ? *need : valid_need) / mb));
    nomul_report(NOMUL_EINVAL, "%s needs %.1f MB of the graph's arena (beam %d hypotheses of up "
                 "to %d target tokens, max_len_a·%ld + max_len_b, over the longest source, of "
                 "%ld tokens), and arena_mb is %ld: raise arena_mb to %.0f or lower beam or "
                 "max_len_a/max_len_b%s", what, *need / mb, c->beam, tmax, smax, smax, c->arena_mb,
                 ceil(*need / mb), also);
    return -1;
}

/* The first sentence of a set longer than the model's positions, named by
 * its line: -1 after a report, else 0. */
static int lengths_fit(const tset *s, int target, const char *key, const char *path, int maxpos)
{
    for (long i = 0; i < s->n; i++)
        if ((target ? s->tl[i] : s->sl[i]) > maxpos) {
            nomul_report(NOMUL_EINVAL, "%s ('%s') line %ld: %ld tokens with </s>, more than "
                         "the model's %d positions", key, path, i + 1,
                         target ? s->tl[i] : s->sl[i], maxpos);
            return -1;
        }
    return 0;
}

/* Before the first step: every sentence fits the model's positions, and the
 * arena holds the validation's largest batch and the test set's decoding. */
static int tr_check(trainer *t)
{
    tr_task *k = t->td;
    const nomul_train_config *c = t->c;
    const int maxpos = nomul_seq2seq_get_config(k->model)->max_positions;
    if (lengths_fit(&k->train, 0, "data.train_src", c->train_src, maxpos) ||
        lengths_fit(&k->train, 1, "data.train_tgt", c->train_tgt, maxpos) ||
        lengths_fit(&k->valid, 0, "data.valid_src", c->valid_src, maxpos) ||
        lengths_fit(&k->valid, 1, "data.valid_tgt", c->valid_tgt, maxpos) ||
        lengths_fit(&k->test, 0, "data.test_src", c->test_src, maxpos))
        return -1;
    s2s_dry d = {k->model, &c->ops};
    evalmem_fit fit;
    if (evalmem_fit_new(t->g, 1, s2s_dry_forward, &d, &fit)) {
        char err[512];
        snprintf(err, sizeof err, "%s", nomul_last_error_message());
        nomul_report(NOMUL_EINVAL, "cannot measure what validation and decoding need of the "
                     "graph's arena (arena_mb %ld): %s", c->arena_mb, err);
        return -1;
    }
    /* validation: its largest batch as collate pads it */
    double valid = 0.0;
    long vn = 0, vs = 0, vt = 0, smax = 1;
    for (long b = 0; b < k->valid.nb; b++) {
        long ms = 1, mt = 1;
        for (long q = k->valid.starts[b]; q < k->valid.starts[b + 1]; q++) {
            const long i = k->valid.order[q];
            ms = k->valid.sl[i] > ms ? k->valid.sl[i] : ms;
            mt = k->valid.tl[i] > mt ? k->valid.tl[i] : mt;
        }
        const long n = k->valid.starts[b + 1] - k->valid.starts[b];
        const double need = evalmem_bytes(&fit, n, ms, mt);
        if (need > valid) {
            valid = need;
            vn = n;
            vs = ms;
            vt = mt;
        }
    }
    /* decoding: the longest test source (a batch pads to its longest, whose
     * search is the batch's longest) */
    for (long i = 0; i < k->test.n; i++)
        smax = k->test.sl[i] > smax ? k->test.sl[i] : smax;
    double decode;
    const int bad_decode = decoding_fits(&fit, c, k->model, t->g, smax, valid, "test decoding",
                                         &decode);
    const double have = (double)nomul_graph_arena_use(t->g).size, mb = 1024.0 * 1024.0;
    if (!bad_decode && valid > have)
        nomul_report(NOMUL_EINVAL, "validation needs %.1f MB of the graph's arena (its largest "
                     "batch: %ld sentences padded to %ld source and %ld target tokens), and "
                     "arena_mb is %ld: raise arena_mb to %.0f or lower max_tokens", valid / mb, vn,
                     vs, vt, c->arena_mb, ceil((valid > decode ? valid : decode) / mb));
    t->eval_need = valid > decode ? valid : decode;
    return bad_decode || valid > have ? -1 : 0;
}

const train_task translation_task = {"tokens", "valid_loss", "test_bleu", "test BLEU", 100.0,
                                     100.0, 2, tr_setup, tr_start, tr_loss, tr_evaluate, tr_free,
                                     tr_check};

/* ---- translating with a checkpoint -------------------------------------------- */

int nomul_translate_checkpoint(const char *path, const nomul_train_config *c,
                               const char *const *lines, long n, char **out)
{
    for (long i = 0; i < n; i++)
        out[i] = NULL;
    nomul_vocab *sv = nomul_vocab_load(c->src_dict), *tv = sv ? nomul_vocab_load(c->tgt_dict) : NULL;
    nomul_bpe *bpe = tv && c->bpe_codes[0] ? nomul_bpe_load(c->bpe_codes) : NULL;
    nomul_safetensors *f = tv && (bpe || !c->bpe_codes[0]) ? nomul_safetensors_read(path) : NULL;
    nomul_seq2seq_config mc;
    int named = f && nomul_seq2seq_config_named(c->model, nomul_vocab_size(sv),
                                                nomul_vocab_size(tv), &mc);
    mc.activation = c->activation_fn;
    nomul_seq2seq *m = named ? nomul_seq2seq_new(&mc, 0) : NULL;
    nomul_graph *g = m ? nomul_graph_new((size_t)c->arena_mb << 20) : NULL;
    int rc = -1;
    nomul_param *p = NULL;
    const int np = m ? nomul_seq2seq_params(m, &p) : 0;
    enum { CHUNK = 16, MAXT = 1000 };
    int **ids = calloc((size_t)n + 1, sizeof *ids), *lens = calloc((size_t)n + 1, sizeof *lens);
    int *src = malloc(sizeof(int) * CHUNK * MAXT);
    if (!ids || !lens || !src) {
        nomul_report(NOMUL_ENOMEM, "out of memory");
        goto done;
    }
    if (!g || train_load_params(f, path, p, np))
        goto done;
    /* every line encoded first: the longest decides what decoding needs of
     * the arena, refused before any line is translated */
    long smax = 1;
    for (long i = 0; i < n; i++) {
        char *tok = c->tokenizer == NOMUL_TOKENIZER_MOSES
                        ? nomul_moses_tokenize(lines[i], c->src_lang)
                        : strdup(lines[i]);
        char *seg = !tok ? NULL : bpe ? nomul_bpe_apply(bpe, tok) : strdup(tok);
        free(tok);
        int k = seg ? nomul_vocab_encode(sv, seg, src, MAXT) : -1;
        free(seg);
        if (k < 0) { /* name the input line in the encoder's message */
            char why[512];
            snprintf(why, sizeof why, "%s", nomul_last_error_message());
            nomul_report(nomul_last_error() ? nomul_last_error() : NOMUL_EINVAL,
                         "input line %ld: %s", i + 1, why);
            goto done;
        }
        if (!(ids[i] = malloc(sizeof(int) * (size_t)k))) {
            nomul_report(NOMUL_ENOMEM, "out of memory");
            goto done;
        }
        memcpy(ids[i], src, sizeof(int) * (size_t)k);
        lens[i] = k;
        smax = k > smax ? k : smax;
    }
    s2s_dry d = {m, &c->ops};
    evalmem_fit fit;
    double need;
    if (n > 0 && (evalmem_fit_new(g, 1, s2s_dry_forward, &d, &fit) ||
                  decoding_fits(&fit, c, m, g, smax, 0.0, "translating these lines", &need)))
        goto done;
    nomul_search_opts so = {c->beam, c->lenpen, c->max_len_a, c->max_len_b};
    for (long at = 0; at < n; at += CHUNK) {
        int b = n - at < CHUNK ? (int)(n - at) : CHUNK, S = 1, len[CHUNK], *hyp[CHUNK];
        for (int r = 0; r < b; r++)
            S = lens[at + r] > S ? lens[at + r] : S;
        for (int r = 0; r < b; r++)
            for (int j = 0; j < S; j++)
                src[r * S + j] = j < lens[at + r] ? ids[at + r][j] : NOMUL_PAD;
        if (nomul_seq2seq_translate(m, g, &c->ops, src, b, S, &so, hyp, len))
            goto fail;
        for (int r = 0; r < b; r++) {
            size_t cap = 16;
            for (int j = 0; j < len[r]; j++)
                cap += strlen(nomul_vocab_token(tv, hyp[r][j])) + 1;
            char *s = malloc(cap), *o = s;
            for (int j = 0; s && j < len[r]; j++)
                o += sprintf(o, "%s%s", j ? " " : "", nomul_vocab_token(tv, hyp[r][j]));
            if (s) {
                *o = 0;
                nomul_bpe_remove(s);
            }
            if (!(out[at + r] = s = detokenized(c, s)))
                goto fail;
            free(hyp[r]);
        }
    }
    rc = 0;
fail:
    if (rc)
        for (long i = 0; i < n; i++) {
            free(out[i]);
            out[i] = NULL;
        }
done:
    for (long i = 0; ids && i < n; i++)
        free(ids[i]);
    free(ids);
    free(lens);
    free(src);
    nomul_graph_free(g);
    nomul_seq2seq_free(m);
    nomul_safetensors_free(f);
    nomul_bpe_free(bpe);
    nomul_vocab_free(sv);
    nomul_vocab_free(tv);
    return rc;
}
