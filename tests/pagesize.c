/* pagesize.c — a kernel page size other than 4 KiB (16 KiB here, as on some arm64 kernels) is refused clearly: hm_init and every call fail with ERROR_NOT_SUPPORTED and say why. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "os/os.h"
#include <hostmem/win32.h>

static hm_status init_status, init_again;
static char init_detail[256];
static char err_text[4096]; /* what hostmem wrote on stderr during hm_init */

static void test_init_refuses(void **state)
{
    (void)state;
    /* SPEC 2.7.6 refuse rather than fake 4 KiB pages */
    assert_int_equal(init_status, HM_E_NOT_SUPPORTED);
    assert_int_equal(init_again, HM_E_NOT_SUPPORTED);
    assert_int_equal(hm_status_win32_error(init_status), HM_ERROR_NOT_SUPPORTED);
}

static void test_stderr_message(void **state)
{
    (void)state;
    /* SPEC 2.7.6 refuse clearly: the message names both page sizes */
    print_message("stderr: %s", err_text);
    assert_true(err_text[0] != 0);
    assert_true(strstr(err_text, "4 KiB") || strstr(err_text, "4096"));
    assert_non_null(strstr(err_text, "16384"));
}

static void test_detail(void **state)
{
    (void)state;
    /* hostmem.h hm_last_detail: the detail of the refusal names the page size */
    print_message("detail: %s\n", init_detail);
    assert_non_null(strstr(init_detail, "16384"));
}

static void test_calls_refuse(void **state)
{
    (void)state;
    /* SPEC 2.7.6: no call hands out memory or answers as if pages were 4 KiB */
    void *b = (void *)1;
    assert_int_equal(hm_virtual_alloc(NULL, NULL, 65536, HM_MEM_RESERVE | HM_MEM_COMMIT, HM_PAGE_READWRITE, &b),
                     HM_E_NOT_SUPPORTED);
    assert_null(b);
    assert_non_null(strstr(hm_last_detail(), "16384"));
    b = (void *)1;
    assert_int_equal(hm_reserve(NULL, 65536, &b), HM_E_NOT_SUPPORTED);
    assert_null(b);
    hm_region r;
    assert_int_equal(hm_virtual_query(NULL, (void *)0x10000000, &r), HM_E_NOT_SUPPORTED);
    assert_int_equal(hm_virtual_free(NULL, (void *)0x10000000, 0, HM_MEM_RELEASE), HM_E_NOT_SUPPORTED);
    uint32_t old;
    assert_int_equal(hm_virtual_protect(NULL, (void *)0x10000000, 4096, HM_PAGE_READONLY, &old), HM_E_NOT_SUPPORTED);
    hm_vm_stats s;
    hm_vm_get_stats(&s);
    assert_int_equal(s.allocations, 0);
}

static void test_win32_refuses(void **state)
{
    (void)state;
    /* SPEC 2.2: VirtualAlloc returns NULL with the last error set; here ERROR_NOT_SUPPORTED */
    SetLastError(0);
    assert_null(VirtualAlloc(NULL, 65536, HM_MEM_RESERVE, HM_PAGE_READWRITE));
    assert_int_equal(GetLastError(), HM_ERROR_NOT_SUPPORTED);
    MEMORY_BASIC_INFORMATION mbi;
    SetLastError(0);
    assert_int_equal(VirtualQuery((void *)0x10000000, &mbi, sizeof mbi), 0);
    assert_int_equal(GetLastError(), HM_ERROR_NOT_SUPPORTED);
}

int main(void)
{
    /* Before any other hostmem call: hm_os_init must see a 16 KiB page size. */
    hm_os_set_page_size_for_test(16384);

    /* Catch what hm_init prints on stderr in a temporary file. */
    FILE *tmp = tmpfile();
    if (!tmp) return 2;
    fflush(stderr);
    int saved = dup(2);
    if (saved < 0 || dup2(fileno(tmp), 2) < 0) return 2;
    init_status = hm_init();
    init_again = hm_init(); /* later calls give the same answer */
    snprintf(init_detail, sizeof init_detail, "%s", hm_last_detail());
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    rewind(tmp);
    size_t n = fread(err_text, 1, sizeof err_text - 1, tmp);
    err_text[n] = 0;
    fclose(tmp);

    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_refuses),  cmocka_unit_test(test_stderr_message),
        cmocka_unit_test(test_detail),        cmocka_unit_test(test_calls_refuse),
        cmocka_unit_test(test_win32_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
