/* churn.c — the C workload of bench_dropin.sh: allocation churn through whatever malloc the process
 * has (glibc's, or the one LD_PRELOAD put first). Plain malloc/free, no hostmem API: the drop-in is
 * measured the way a program meets it. One phase per run:
 *
 *   churn small   [SCALE]  20 000 live blocks of 16..512 B (uniform); each step frees a random one
 *                          and allocates a new one in its place
 *   churn mixed   [SCALE]  the same with mixed sizes: 70 % 16..256 B, 25 % 256 B..4 KiB,
 *                          4 % 4..32 KiB, 1 % 32..256 KiB
 *   churn threads [SCALE]  4 threads, two producer -> consumer pairs: the producer allocates batches of
 *                          64 blocks of 16..512 B (and the batch record), the consumer frees them, so
 *                          every block is freed by another thread than the one that allocated it
 *
 * Every block carries a tag in its first and last 8 bytes (and one byte per 4 KiB page between),
 * checked before it is freed: a mismatch stops the run with status 3. SCALE (default 1) multiplies
 * the number of steps. The one line on stdout ("phase steps checksum") depends only on the phase and
 * SCALE, never on the allocator: bench_dropin.sh compares it across contenders. */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct rng {
    uint64_t s;
} rng;

static inline uint64_t rnext(rng *r) /* splitmix64 */
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static inline size_t rrange(rng *r, size_t lo, size_t hi) /* [lo, hi] */
{
    return lo + (size_t)(rnext(r) % (hi - lo + 1));
}

__attribute__((noreturn)) static void fail(const char *what, const void *p, size_t n)
{
    fprintf(stderr, "churn: %s (block %p, %zu bytes)\n", what, p, n);
    exit(3);
}

/* Writes the tag into a fresh block of n >= 16 bytes: both ends, and one byte per 4 KiB between. */
static inline void tag_block(unsigned char *p, size_t n, uint64_t tag)
{
    memcpy(p, &tag, 8);
    memcpy(p + n - 8, &tag, 8);
    for (size_t off = 4096; off + 8 < n; off += 4096) p[off] = (unsigned char)tag;
}

/* Checks the tag of a block before it is freed; returns the tag for the checksum. */
static inline uint64_t check_block(const unsigned char *p, size_t n, uint64_t tag)
{
    uint64_t a, b;
    memcpy(&a, p, 8);
    memcpy(&b, p + n - 8, 8);
    if (a != tag || b != tag) fail("tag overwritten", p, n);
    for (size_t off = 4096; off + 8 < n; off += 4096)
        if (p[off] != (unsigned char)tag) fail("page tag overwritten", p, n);
    return a;
}

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p) fail("malloc returned NULL", NULL, n);
    if ((uintptr_t)p & 15) fail("malloc returned a block not 16-byte aligned", p, n);
    return p;
}

/* ---- small and mixed: a live set replaced at random --------------------------------------------- */

#define SLOTS 20000

typedef struct slot {
    unsigned char *p;
    size_t n;
    uint64_t tag;
} slot;

static size_t size_small(rng *r) { return rrange(r, 16, 512); }

static size_t size_mixed(rng *r)
{
    unsigned k = (unsigned)(rnext(r) % 100);
    if (k < 70) return rrange(r, 16, 256);
    if (k < 95) return rrange(r, 257, 4096);
    if (k < 99) return rrange(r, 4097, 32768);
    return rrange(r, 32769, 262144);
}

static uint64_t live_set(long steps, size_t (*size)(rng *))
{
    slot *s = calloc(SLOTS, sizeof *s);
    if (!s) fail("calloc of the slot table failed", NULL, SLOTS * sizeof *s);
    rng r = {42};
    uint64_t sum = 0;
    for (int i = 0; i < SLOTS; i++) {
        s[i].n = size(&r);
        s[i].tag = rnext(&r);
        s[i].p = xmalloc(s[i].n);
        tag_block(s[i].p, s[i].n, s[i].tag);
    }
    for (long k = 0; k < steps; k++) {
        slot *e = &s[rnext(&r) % SLOTS];
        sum += check_block(e->p, e->n, e->tag);
        free(e->p);
        e->n = size(&r);
        e->tag = rnext(&r);
        e->p = xmalloc(e->n);
        tag_block(e->p, e->n, e->tag);
    }
    for (int i = 0; i < SLOTS; i++) {
        sum += check_block(s[i].p, s[i].n, s[i].tag);
        free(s[i].p);
    }
    free(s);
    return sum;
}

/* ---- threads: producer -> consumer pairs --------------------------------------------------------- */

#define BATCH 64
#define QCAP 32
#define PAIRS 2

typedef struct batch {
    unsigned char *p[BATCH];
    size_t n[BATCH];
    uint64_t tag[BATCH];
} batch;

typedef struct queue {
    pthread_mutex_t mu;
    pthread_cond_t nonempty, nonfull;
    batch *q[QCAP];
    unsigned head, count;
    long batches;   /* how many the producer makes */
    uint64_t seed;
    uint64_t sum;   /* the consumer's checksum */
} queue;

static void *producer(void *arg)
{
    queue *q = arg;
    rng r = {q->seed};
    for (long k = 0; k < q->batches; k++) {
        batch *b = xmalloc(sizeof *b);
        for (int i = 0; i < BATCH; i++) {
            b->n[i] = rrange(&r, 16, 512);
            b->tag[i] = rnext(&r);
            b->p[i] = xmalloc(b->n[i]);
            tag_block(b->p[i], b->n[i], b->tag[i]);
        }
        pthread_mutex_lock(&q->mu);
        while (q->count == QCAP) pthread_cond_wait(&q->nonfull, &q->mu);
        q->q[(q->head + q->count) % QCAP] = b;
        if (q->count++ == 0) pthread_cond_signal(&q->nonempty);
        pthread_mutex_unlock(&q->mu);
    }
    return NULL;
}

static void *consumer(void *arg)
{
    queue *q = arg;
    uint64_t sum = 0;
    for (long k = 0; k < q->batches; k++) {
        pthread_mutex_lock(&q->mu);
        while (q->count == 0) pthread_cond_wait(&q->nonempty, &q->mu);
        batch *b = q->q[q->head];
        q->head = (q->head + 1) % QCAP;
        if (q->count-- == QCAP) pthread_cond_signal(&q->nonfull);
        pthread_mutex_unlock(&q->mu);
        for (int i = 0; i < BATCH; i++) {
            sum += check_block(b->p[i], b->n[i], b->tag[i]);
            free(b->p[i]);
        }
        free(b);
    }
    q->sum = sum;
    return NULL;
}

static uint64_t threads(long batches)
{
    static queue qs[PAIRS];
    pthread_t t[2 * PAIRS];
    for (int i = 0; i < PAIRS; i++) {
        queue *q = &qs[i];
        pthread_mutex_init(&q->mu, NULL);
        pthread_cond_init(&q->nonempty, NULL);
        pthread_cond_init(&q->nonfull, NULL);
        q->batches = batches;
        q->seed = 1000 + (uint64_t)i;
        if (pthread_create(&t[2 * i], NULL, consumer, q) || pthread_create(&t[2 * i + 1], NULL, producer, q))
            fail("pthread_create failed", NULL, 0);
    }
    uint64_t sum = 0;
    for (int i = 0; i < 2 * PAIRS; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < PAIRS; i++) sum += qs[i].sum;
    return sum;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s small|mixed|threads [SCALE]\n", argv[0]);
        return 2;
    }
    double scale = argc == 3 ? strtod(argv[2], NULL) : 1.0;
    if (!(scale > 0)) {
        fprintf(stderr, "churn: SCALE must be positive\n");
        return 2;
    }
    const char *phase = argv[1];
    long steps;
    uint64_t sum;
    /* the step counts make each phase about 1 s on glibc on the machine this was written on */
    if (!strcmp(phase, "small")) {
        steps = (long)(11e6 * scale);
        sum = live_set(steps, size_small);
    } else if (!strcmp(phase, "mixed")) {
        steps = (long)(4e6 * scale);
        sum = live_set(steps, size_mixed);
    } else if (!strcmp(phase, "threads")) {
        steps = (long)(100e3 * scale); /* batches per producer */
        sum = threads(steps);
    } else {
        fprintf(stderr, "churn: unknown phase '%s' (small, mixed, threads)\n", phase);
        return 2;
    }
    printf("%s %ld %016llx\n", phase, steps, (unsigned long long)sum);
    return 0;
}
