/* A program that exits while its threads still allocate and free, with statistics on: the exit
 * handlers (ours walks every pool and heap) run while the threads go on. Nothing may crash or
 * hang, and the statistics must be written. Re-executes itself with TALLY_STATS set, since the
 * library reads its options once, at start. */
#define _GNU_SOURCE
#include "../test.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static void *churn(void *arg) {
    uint32_t s = (uint32_t)(uintptr_t)arg;
    void *slot[1024] = {0};
    for (;;) {
        s ^= s << 13, s ^= s >> 17, s ^= s << 5;
        unsigned i = s % 1024;
        free(slot[i]);
        slot[i] = malloc(1 + s % 800);
        if (slot[i])
            memset(slot[i], 1, 1);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc > 1) { /* the child: busy threads, then exit() from main */
        pthread_t t[3];
        for (int i = 0; i < 3; i++)
            pthread_create(&t[i], NULL, churn, (void *)(uintptr_t)(i * 7919 + 1));
        usleep(100000);
        exit(0);
    }
    char path[] = "/tmp/tally-exit-busy-XXXXXX";
    assert_true(mkdtemp(path) != NULL);
    char file[256], env[300];
    snprintf(file, sizeof file, "%s/stats.json", path);
    snprintf(env, sizeof env, "TALLY_STATS_FILE=%s", file);
    for (int run = 0; run < 10; run++) {
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            char *args[] = {argv[0], "child", NULL};
            char *envp[] = {"TALLY_STATS=json", env, NULL};
            execve("/proc/self/exe", args, envp);
            _exit(127);
        }
        int st = 0, waited = 0;
        while (waitpid(pid, &st, WNOHANG) == 0) {
            if (++waited > 1000) { /* 10 s: a hang at exit */
                kill(pid, SIGKILL);
                waitpid(pid, &st, 0);
                test_fail_("run %d hung at exit", run);
                break;
            }
            usleep(10000);
        }
        if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
            test_fail_("run %d: status %d", run, st);
        struct stat sb;
        expect_true(stat(file, &sb) == 0 && sb.st_size > 100);
        unlink(file);
    }
    rmdir(path);
    return test_result();
}
