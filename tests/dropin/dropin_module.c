/* dropin_module.c — the library dropin_dlopen loads and unloads (a MODULE, unsanitized): its
 * constructor allocates, its exported functions allocate and free, its destructor frees what the
 * constructor allocated. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define EXPORT __attribute__((visibility("default")))

EXPORT const char *dropin_module_ctor_block(void);
EXPORT int dropin_module_work(int n);
EXPORT void *dropin_module_alloc(size_t size);
EXPORT int dropin_module_ctor_ran(void);

static char *ctor_block;
static void *ctor_large;
static int ctor_ok;

static __attribute__((constructor)) void module_ctor(void)
{
    ctor_block = malloc(1000);
    ctor_large = malloc(300 << 10);
    if (ctor_block && ctor_large) {
        memset(ctor_block, 0, 1000);
        strcpy(ctor_block, "allocated by dropin_module's constructor");
        memset(ctor_large, 0x6b, 300 << 10);
        ctor_ok = 1;
    }
}

static __attribute__((destructor)) void module_dtor(void)
{
    free(ctor_large);
    free(ctor_block);
    ctor_block = NULL;
    ctor_large = NULL;
}

const char *dropin_module_ctor_block(void) { return ctor_block; }

int dropin_module_ctor_ran(void) { return ctor_ok; }

/* n blocks of assorted sizes, filled, checked and freed: 0 when all went well. */
int dropin_module_work(int n)
{
    void **v = calloc((size_t)n, sizeof *v);
    if (!v) return -1;
    int bad = 0;
    for (int i = 0; i < n; i++) {
        size_t size = (size_t)(i * 131 % 5000) + 1 + (i % 10 == 0 ? 100000 : 0);
        v[i] = malloc(size);
        if (!v[i]) {
            bad = -2;
            break;
        }
        memset(v[i], i & 0xff, size);
    }
    for (int i = 0; i < n && v[i]; i++) {
        size_t size = (size_t)(i * 131 % 5000) + 1 + (i % 10 == 0 ? 100000 : 0);
        if (((unsigned char *)v[i])[size - 1] != (unsigned char)(i & 0xff)) bad = -3;
        free(v[i]);
    }
    free(v);
    return bad;
}

/* A block for the caller to free (after dlclose, with the program's free). */
void *dropin_module_alloc(size_t size)
{
    void *p = malloc(size);
    if (p) memset(p, 0x3d, size);
    return p;
}
