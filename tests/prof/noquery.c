/* noquery.c - runs a program under a seccomp filter that refuses the PROCMAP_QUERY ioctl on
 * /proc/PID/maps, as a sandbox might: with ENOTTY (what kernels before Linux 6.11 answer), or
 * with --kill by killing the process, as a strict sandbox does with a call it does not expect.
 * The profiler's walker must then find each thread's stack from the maps file's text
 * (src/unwind.c: mapping_holding), and under a filter never make that call at all.
 *
 *   noquery [--kill] PROGRAM [ARG...]
 *
 * The filter (no privilege needed with PR_SET_NO_NEW_PRIVS) takes ioctl calls whose request is
 * PROCMAP_QUERY and lets everything else through; then PROGRAM is run with it in place. Exit
 * status 127 if it cannot be set up or run. */
#define _GNU_SOURCE
#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#define PROCMAP_QUERY_REQUEST 0xC0686611u /* _IOWR('f', 17, struct procmap_query): 104 bytes */

int main(int argc, char **argv) {
    int kill = argc > 1 && strcmp(argv[1], "--kill") == 0;
    argv += kill;
    argc -= kill;
    if (argc < 2) {
        fprintf(stderr, "usage: noquery [--kill] PROGRAM [ARG...]\n");
        return 127;
    }
    unsigned refuse = kill ? SECCOMP_RET_KILL_PROCESS : SECCOMP_RET_ERRNO | (ENOTTY & SECCOMP_RET_DATA);
    struct sock_filter code[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW), /* another ABI: not ours to change */
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_ioctl, 0, 3),
        /* the request's low 32 bits (the kernel takes it as an unsigned int) */
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[1])),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, PROCMAP_QUERY_REQUEST, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, refuse),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof code / sizeof code[0], .filter = code};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) != 0) {
        fprintf(stderr, "noquery: cannot install the filter: %s\n", strerror(errno));
        return 127;
    }
    execvp(argv[1], argv + 1);
    fprintf(stderr, "noquery: cannot run %s: %s\n", argv[1], strerror(errno));
    return 127;
}
