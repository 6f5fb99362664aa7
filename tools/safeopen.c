/* safeopen.c: tally never waits on a file it opens for reading.
 *
 * A dump names files tally did not choose: the modules it symbolizes, and through them the
 * debug files that elfutils looks for (build-id paths, .gnu_debuglink names, dwz files). Opening
 * a FIFO for reading waits for a writer, forever; reading a terminal waits for a key. tally's
 * own opens ask for O_NONBLOCK and a regular file (dumpfile.c, symbols.c), but libdw and libelf
 * open files themselves. So the executable defines open and its variants, which the loader
 * binds libdw's and libelf's calls to (an executable's definitions come first): a read-only
 * open is made non-blocking and refused with ENXIO unless it is a regular file or a directory
 * (or unless the caller asked for O_NONBLOCK itself: then it looks at what it opened).
 * Opens for writing (tally's outputs, chosen by the user) are passed through unchanged. */
#undef _FORTIFY_SOURCE /* these definitions are the functions the fortified wrappers call */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

static int guarded_open(int dirfd, const char *path, int flags, mode_t mode) {
    /* A caller that asks for O_NONBLOCK itself checks what it opened (dumpfile.c) */
    bool guard = (flags & O_ACCMODE) == O_RDONLY && !(flags & (O_PATH | O_DIRECTORY | O_NONBLOCK));
    bool added = guard;
    int fd = (int)syscall(SYS_openat, dirfd, path, flags | (added ? O_NONBLOCK | O_NOCTTY : 0),
                          mode);
    if (fd < 0 || !guard)
        return fd;
    struct stat st;
    if (fstat(fd, &st) != 0 || !(S_ISREG(st.st_mode) || S_ISDIR(st.st_mode))) {
        close(fd);
        errno = ENXIO;
        return -1;
    }
    if (added)
        fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
    return fd;
}

static mode_t mode_arg(int flags, va_list ap) {
    return (flags & O_CREAT) || (flags & O_TMPFILE) == O_TMPFILE ? (mode_t)va_arg(ap, int) : 0;
}

int open(const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    return guarded_open(AT_FDCWD, path, flags, mode);
}

int open64(const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    return guarded_open(AT_FDCWD, path, flags, mode);
}

int openat(int dirfd, const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    return guarded_open(dirfd, path, flags, mode);
}

int openat64(int dirfd, const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    mode_t mode = mode_arg(flags, ap);
    va_end(ap);
    return guarded_open(dirfd, path, flags, mode);
}

/* what _FORTIFY_SOURCE builds call when the mode cannot be missing */
int __open_2(const char *path, int flags) {
    return guarded_open(AT_FDCWD, path, flags, 0);
}

int __open64_2(const char *path, int flags) {
    return guarded_open(AT_FDCWD, path, flags, 0);
}
