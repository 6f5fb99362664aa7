/* fmt.c: text formatting into a caller's buffer, flushed with write(2). The library prints from
 * inside malloc, at exit after stdio may be gone, and in forked children, so nothing here
 * allocates or uses stdio. Exports the fmt_* builders and tally_message. */
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <stdatomic.h>
#include <string.h>
#include <unistd.h>

void fmt_init(fmt_t *f, char *buf, size_t cap, int fd) {
    f->buf = buf;
    f->cap = cap;
    f->len = 0;
    f->fd = fd;
    f->failed = false;
    f->sink = NULL;
    f->sink_ctx = NULL;
}

void fmt_flush(fmt_t *f) {
    if (f->sink) {
        if (f->len > 0 && !f->sink(f->sink_ctx, f->buf, f->len))
            f->failed = true;
    } else if (f->fd >= 0 && f->len > 0 && !os_write_all(f->fd, f->buf, f->len)) {
        f->failed = true;
    }
    f->len = 0;
}

void fmt_strn_full(fmt_t *f, const char *s, size_t n) {
    while (n > 0) {
        if (f->len == f->cap) {
            if (f->fd < 0)
                return; /* truncating buffer: drop the rest */
            fmt_flush(f);
        }
        size_t k = f->cap - f->len < n ? f->cap - f->len : n;
        memcpy(f->buf + f->len, s, k);
        f->len += k;
        s += k;
        n -= k;
    }
}

/* v's digits, written backwards to end at end: where they start */
static char *u64_back(uint64_t v, char *end) {
    do {
        *--end = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    return end;
}

static int u64_digits(uint64_t v, char out[24]) {
    char tmp[24], *p = u64_back(v, tmp + sizeof tmp);
    int n = (int)(tmp + sizeof tmp - p);
    memcpy(out, p, (size_t)n);
    return n;
}

void fmt_u64(fmt_t *f, uint64_t v) {
    char tmp[24], *p = u64_back(v, tmp + sizeof tmp);
    fmt_strn(f, p, (size_t)(tmp + sizeof tmp - p));
}

void fmt_u64_grouped(fmt_t *f, uint64_t v) {
    char d[24];
    int n = u64_digits(v, d);
    for (int i = 0; i < n; i++) {
        fmt_char(f, d[i]);
        if ((n - 1 - i) % 3 == 0 && i != n - 1)
            fmt_char(f, ',');
    }
}

void fmt_u64w(fmt_t *f, uint64_t v, int width) {
    char d[24];
    int n = u64_digits(v, d);
    for (int i = n; i < width; i++)
        fmt_char(f, ' ');
    fmt_strn(f, d, (size_t)n);
}

void fmt_strw(fmt_t *f, const char *s, int width) {
    int n = (int)strlen(s);
    fmt_str(f, s);
    for (int i = n; i < width; i++)
        fmt_char(f, ' ');
}

void fmt_fixed(fmt_t *f, double v, int decimals) {
    if (v != v) { /* NaN: cannot happen in our figures, but never print garbage */
        fmt_str(f, "0");
        return;
    }
    if (v < 0) {
        fmt_char(f, '-');
        v = -v;
    }
    uint64_t scale = 1;
    for (int i = 0; i < decimals; i++)
        scale *= 10;
    uint64_t x = (uint64_t)(v * (double)scale + 0.5);
    fmt_u64(f, x / scale);
    if (decimals > 0) {
        char d[24];
        uint64_t frac = x % scale;
        fmt_char(f, '.');
        int n = u64_digits(frac, d);
        for (int i = n; i < decimals; i++)
            fmt_char(f, '0');
        fmt_strn(f, d, (size_t)n);
    }
}

void fmt_bytes(fmt_t *f, uint64_t v) {
    static const char *const unit[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double x = (double)v;
    int u = 0;
    while (x >= 1024.0 && u < 4) {
        x /= 1024.0;
        u++;
    }
    if (u == 0)
        fmt_u64(f, v);
    else
        fmt_fixed(f, x, 1);
    fmt_char(f, ' ');
    fmt_str(f, unit[u]);
}

void fmt_json_str(fmt_t *f, const char *s) {
    static const char hex[] = "0123456789abcdef";
    fmt_char(f, '"');
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            fmt_char(f, '\\');
            fmt_char(f, (char)c);
        } else if (c < 0x20) {
            char e[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
            fmt_strn(f, e, 6);
        } else {
            fmt_char(f, (char)c);
        }
    }
    fmt_char(f, '"');
}

/* ---- where messages go --------------------------------------------------------------------------
 * The standard error the program started with, kept as a duplicate when a message at exit is
 * asked for (valgrind keeps its own the same way): a program that closes its stderr before it
 * exits (coreutils do, in an atexit handler) still gets the leak summary and the heap errors.
 * The duplicate is close-on-exec, numbered high, and checked before each use: a program that
 * closed it (closefrom) and reused the number for another file is never written to; then, and
 * when none was kept, fd 2. */
static int kept_fd = -1;
static dev_t kept_dev;
static ino_t kept_ino;

void fmt_keep_stderr(void) {
    struct stat st;
    if (kept_fd >= 0 || fstat(2, &st) != 0)
        return;
    static const int floor[] = {1000, 100, 10};
    for (unsigned i = 0; i < 3 && kept_fd < 0; i++)
        kept_fd = fcntl(2, F_DUPFD_CLOEXEC, floor[i]);
    kept_dev = st.st_dev;
    kept_ino = st.st_ino;
}

int message_fd(void) {
    struct stat st;
    if (kept_fd >= 0 && fstat(kept_fd, &st) == 0 && st.st_dev == kept_dev &&
        st.st_ino == kept_ino)
        return kept_fd;
    return 2;
}

/* At most this many messages per process: a program that, say, frees garbage in a loop must not
 * turn stderr into a firehose. */
#define MESSAGE_LIMIT 32

void tally_message(const char *a, const char *b, const char *c) {
    static _Atomic unsigned count;
    if (atomic_fetch_add_explicit(&count, 1, memory_order_relaxed) >= MESSAGE_LIMIT)
        return;
    int saved = errno;
    char buf[512];
    fmt_t f;
    fmt_init(&f, buf, sizeof buf, -1);
    fmt_str(&f, "tally: ");
    if (a)
        fmt_str(&f, a);
    if (b)
        fmt_str(&f, b);
    if (c)
        fmt_str(&f, c);
    if (f.len == f.cap)
        f.len--;
    fmt_char(&f, '\n');
    os_write_all(message_fd(), f.buf, f.len);
    errno = saved;
}

/* "%p" -> pid, "%e" -> program name, "%%" -> "%". */
bool fmt_expand_path(char *out, size_t cap, const char *pattern) {
    fmt_t f;
    fmt_init(&f, out, cap - 1, -1);
    for (const char *s = pattern; *s; s++) {
        if (s[0] == '%' && s[1] == 'p') {
            fmt_u64(&f, (uint64_t)getpid());
            s++;
        } else if (s[0] == '%' && s[1] == 'e') {
            fmt_str(&f, program_invocation_short_name);
            s++;
        } else if (s[0] == '%' && s[1] == '%') {
            fmt_char(&f, '%');
            s++;
        } else {
            fmt_char(&f, *s);
        }
    }
    if (f.len >= cap - 1)
        return false;
    out[f.len] = '\0';
    return true;
}

void fmt_hex(fmt_t *f, uint64_t v) {
    char tmp[19];
    int i = (int)sizeof tmp;
    do {
        tmp[--i] = "0123456789abcdef"[v & 15];
        v >>= 4;
    } while (v);
    tmp[--i] = 'x';
    tmp[--i] = '0';
    fmt_strn(f, tmp + i, sizeof tmp - (size_t)i);
}
