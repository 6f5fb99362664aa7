/* daemon.c: a program that closes every descriptor it did not open, as daemons and
 * os.closerange do, then talks to itself through a pipe (tests/prof/dump_safety.sh). With
 * TALLY_INTERVAL or TALLY_SIGNAL set, the library's dump thread must not read the program's
 * data (it once kept a pipe whose numbers the program reused) nor spin. Prints how many of its
 * messages came back in order, and raises SIGUSR2 once on the way. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(void) {
    for (int fd = 3; fd < 1024; fd++)
        close(fd);
    int p[2];
    if (pipe(p) != 0)
        return 2;
    int got = 0;
    for (int i = 0; i < 60; i++) {
        char msg[16], back[16];
        snprintf(msg, sizeof msg, "msg %04d", i);
        if (write(p[1], msg, sizeof msg) != sizeof msg)
            return 3;
        void *volatile block = malloc(100000 + i); /* something to profile */
        free(block);
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
        if (i == 30)
            raise(SIGUSR2);
        if (read(p[0], back, sizeof back) != sizeof back)
            break;
        got += memcmp(msg, back, sizeof msg) == 0;
    }
    printf("%d of 60\n", got);
    return 0;
}
