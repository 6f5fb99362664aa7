/* getattr.c: threads that ask for their own stack bounds, as Rust's runtime does on its main
 * thread and Ruby on every thread (tests/preload/getattr.sh). glibc's pthread_getattr_np holds
 * the thread's lock while it allocates; a profiler that records that allocation must not ask
 * the same thing of glibc (it once waited for that lock forever). Prints the threads' stack
 * sizes' sum, the same with and without the library. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static size_t stack_size(void) {
    pthread_attr_t a;
    void *addr;
    size_t size = 0;
    if (pthread_getattr_np(pthread_self(), &a) != 0)
        return 0;
    pthread_attr_getstack(&a, &addr, &size);
    pthread_attr_destroy(&a);
    return size;
}

static void *worker(void *arg) {
    size_t *out = arg;
    *out = stack_size();
    void *volatile p = malloc(64);
    free(p);
    return NULL;
}

int main(void) {
    size_t main_size = stack_size() > 0; /* the main thread's depends on the environment */
    enum { N = 200 };
    static size_t sizes[N];
    for (int round = 0; round < N / 20; round++) {
        pthread_t t[20];
        for (int i = 0; i < 20; i++)
            if (pthread_create(&t[i], NULL, worker, &sizes[round * 20 + i]) != 0)
                return 1;
        for (int i = 0; i < 20; i++)
            pthread_join(t[i], NULL);
    }
    size_t sum = 0;
    for (int i = 0; i < N; i++)
        sum += sizes[i];
    printf("main %zu, %d threads: %zu bytes of stack\n", main_size, N, sum);
    return 0;
}
