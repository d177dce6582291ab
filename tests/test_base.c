/* tests/test_base.c: the shared helpers of http/base.h: %q quoting (escapes,
 * the cut of a long value, tiny buffers), the bounded error setter, the
 * string hash and the monotonic clock. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "http/base.h"

static void test_quote_escapes(void **state)
{
    char q[64];

    (void)state;
    assert_string_equal(base_quote(q, sizeof q, "web-1"), "\"web-1\"");
    assert_string_equal(base_quote(q, sizeof q, ""), "\"\"");
    assert_string_equal(base_quote(q, sizeof q, NULL), "\"\"");
    assert_string_equal(base_quote(q, sizeof q, "a\"b\\c"), "\"a\\\"b\\\\c\"");
    /* Newline, tab and carriage return get their short escapes; every
     * other control byte and DEL is spelled as \xNN. */
    assert_string_equal(base_quote(q, sizeof q, "a\nb\tc\rd"), "\"a\\nb\\tc\\rd\"");
    assert_string_equal(base_quote(q, sizeof q, "\x01\x1b\x7f"), "\"\\x01\\x1b\\x7f\"");
    /* Bytes from 0x80 up (UTF-8) pass through unchanged. */
    assert_string_equal(base_quote(q, sizeof q, "caf\xc3\xa9"), "\"caf\xc3\xa9\"");
}

static void test_quote_cut(void **state)
{
    char long_in[200], q[16];

    (void)state;
    memset(long_in, 'x', sizeof long_in - 1);
    long_in[sizeof long_in - 1] = '\0';
    /* A value that does not fit ends in `..."` and stays NUL-terminated
     * inside the buffer. */
    assert_string_equal(base_quote(q, sizeof q, long_in), "\"xxxxxxxxxx...\"");
    assert_int_equal(strlen(q), sizeof q - 1);
    /* An escape is never split across the cut. */
    assert_string_equal(base_quote(q, sizeof q, "xxxxxxxxx\n\n"), "\"xxxxxxxxx...\"");
    /* Exactly fitting needs no marker. */
    assert_string_equal(base_quote(q, sizeof q, "xxxxxxxxxx"), "\"xxxxxxxxxx\"");
    /* Buffers too small for a marker hold the empty string. */
    assert_string_equal(base_quote(q, 7, "x"), "");
    q[0] = 'z';
    base_quote(q, 0, "x");
    assert_int_equal(q[0], 'z');
}

static void test_errf(void **state)
{
    char buf[8];

    (void)state;
    assert_int_equal(base_errf(buf, sizeof buf, -EINVAL, "%s=%d", "abc", 42), -EINVAL);
    assert_string_equal(buf, "abc=42");
    /* Longer text is cut, never overflowed. */
    assert_int_equal(base_errf(buf, sizeof buf, -EIO, "%s", "0123456789"), -EIO);
    assert_string_equal(buf, "0123456");
    /* No buffer: only the code comes back. */
    assert_int_equal(base_errf(NULL, 0, -ENOENT, "ignored"), -ENOENT);
}

static void test_hash(void **state)
{
    (void)state;
    /* Equal bytes hash equal; keys that differ only near the end of a long
     * shared prefix, the shape of a fleet's socket paths, do not collide. */
    assert_true(base_hash("/run/vm-1/api.sock", 18) == base_hash("/run/vm-1/api.sock", 18));
    assert_true(base_hash("/run/vms/vm-0001/api.sock", 25) !=
                base_hash("/run/vms/vm-0002/api.sock", 25));
    assert_true(base_hash("abc", 3) != base_hash("abc", 2));
    assert_true(base_hash("", 0) != base_hash("\0", 1));
}

static void test_mono(void **state)
{
    uint64_t a, b;

    (void)state;
    a = base_mono_ns();
    b = base_mono_ns();
    assert_true(a > 0);
    assert_true(b >= a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quote_escapes),
        cmocka_unit_test(test_quote_cut),
        cmocka_unit_test(test_errf),
        cmocka_unit_test(test_hash),
        cmocka_unit_test(test_mono),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}
