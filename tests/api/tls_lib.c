/* A plugin with dynamic TLS (general-dynamic model, as every dlopen'd library has): the first
 * touch of these variables in a thread makes glibc's __tls_get_addr allocate the thread's block
 * for this module with malloc, that is, with ours, on a thread that may not have a heap yet. */
#include <stdlib.h>
#include <string.h>

static __thread char tls_big[8192] __attribute__((tls_model("global-dynamic")));
static __thread unsigned tls_seed __attribute__((tls_model("global-dynamic"))) = 12345;
static __thread void *tls_keep[64] __attribute__((tls_model("global-dynamic")));

/* Checks this thread's TLS starts as the image says, fills it with id, allocates into it, and
 * returns 0 if everything read back as written. */
int plugin_tls_work(unsigned id) {
    for (size_t i = 0; i < sizeof tls_big; i++)
        if (tls_big[i] != 0)
            return 1;
    if (tls_seed != 12345)
        return 2;
    memset(tls_big, (int)(id & 0xff), sizeof tls_big);
    tls_seed = id;
    for (int i = 0; i < 64; i++) {
        tls_keep[i] = malloc((size_t)(i * 8 + 1));
        if (!tls_keep[i])
            return 3;
        memset(tls_keep[i], (int)(id & 0xff), (size_t)(i * 8 + 1));
    }
    for (int i = 0; i < 64; i++) {
        unsigned char *p = tls_keep[i];
        for (int j = 0; j < i * 8 + 1; j++)
            if (p[j] != (unsigned char)(id & 0xff))
                return 4;
        free(p);
    }
    for (size_t i = 0; i < sizeof tls_big; i++)
        if (tls_big[i] != (char)(id & 0xff))
            return 5;
    return tls_seed == id ? 0 : 6;
}
