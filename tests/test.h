/* test.h: a small check harness for Automake's test driver. expect_* records a failure and
 * goes on; assert_* stops the test. Exit codes: 0 pass, 1 fail, 99 hard error. */
#ifndef TALLY_TEST_H
#define TALLY_TEST_H

#include <stdio.h>
#include <stdlib.h>

static int test_failures;

#define test_fail_(fmt, ...)                                                                  \
    (fprintf(stderr, "%s:%d: " fmt "\n", __FILE__, __LINE__, __VA_ARGS__), test_failures++)

#define expect_true(c) ((c) ? (void)0 : (void)test_fail_("expected %s", #c))
#define expect_eq(a, b)                                                                       \
    do {                                                                                      \
        unsigned long long a_ = (unsigned long long)(a), b_ = (unsigned long long)(b);        \
        if (a_ != b_)                                                                         \
            test_fail_("%s == %s: %llu != %llu", #a, #b, a_, b_);                             \
    } while (0)
#define assert_true(c)                                                                        \
    do {                                                                                      \
        if (!(c)) {                                                                           \
            test_fail_("assertion %s failed", #c);                                            \
            exit(1);                                                                          \
        }                                                                                     \
    } while (0)

static inline int test_result(void) {
    if (test_failures)
        fprintf(stderr, "%d check(s) failed\n", test_failures);
    return test_failures ? 1 : 0;
}

#endif
