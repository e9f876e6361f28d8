/* testlib.h — the few macros the C unit tests share.
 *
 * CHECK records a failure (with file:line and the expression) and goes on;
 * TEST_MAIN runs the listed test functions and prints "N passed, N failed",
 * exiting non-zero if anything failed. */
#ifndef MG_TESTLIB_H
#define MG_TESTLIB_H

#include <stdio.h>
#include <string.h>

static int tl_checks, tl_failures;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        tl_checks++;                                                                               \
        if (!(cond)) {                                                                             \
            tl_failures++;                                                                         \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
        }                                                                                          \
    } while (0)

#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *tl_a = (a), *tl_b = (b);                                                       \
        tl_checks++;                                                                               \
        if (!tl_a || !tl_b || strcmp(tl_a, tl_b) != 0) {                                           \
            tl_failures++;                                                                         \
            fprintf(stderr, "%s:%d: CHECK_STR failed: \"%s\" != \"%s\"\n", __FILE__, __LINE__,     \
                    tl_a ? tl_a : "(null)", tl_b ? tl_b : "(null)");                               \
        }                                                                                          \
    } while (0)

typedef struct {
    void (*fn)(void);
    const char *name;
} tl_case;

/* T(fn) names one test case for TEST_MAIN. */
#define T(fn)                                                                                      \
    {                                                                                              \
        fn, #fn                                                                                    \
    }

static inline int tl_run(const char *suite, const tl_case *cases, int n)
{
    int passed = 0, failed = 0;
    for (int i = 0; i < n; i++) {
        int before = tl_failures;
        cases[i].fn();
        if (tl_failures == before) {
            passed++;
        } else {
            failed++;
            fprintf(stderr, "FAIL %s.%s\n", suite, cases[i].name);
        }
    }
    printf("%s: %d passed, %d failed\n", suite, passed, failed);
    return failed ? 1 : 0;
}

/* TEST_MAIN("suite", T(test_a), T(test_b), ...) */
#define TEST_MAIN(suite, ...)                                                                      \
    int main(void)                                                                                 \
    {                                                                                              \
        const tl_case cases[] = {__VA_ARGS__};                                                     \
        return tl_run(suite, cases, (int)(sizeof(cases) / sizeof(cases[0])));                      \
    }

#endif
