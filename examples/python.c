/* python.c — embedding CPython under a hostmem budget (hostmem/python.h): a 32 MiB tenant whose
 * scripts fail with MemoryError instead of taking the process down, and that collects when told Low.
 *   example_python        runs a script that asks too much, then one that fits, and prints the report */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <stdio.h>

#include <hostmem/python.h>

int main(void)
{
    hm_python_config cfg = {.name = "example", .options = "limit=32M,reserve.process=2M,notify.high=75",
                            .level = HM_LEVEL_TASK, .emergency_level = HM_LEVEL_PROCESS};
    if (HM_FAILED(hm_python_install(&cfg))) { /* before Py_Initialize: the hooks are process-wide */
        fprintf(stderr, "example: %s\n", hm_last_detail());
        return 1;
    }
    Py_Initialize();
    PyRun_SimpleString("try:\n"
                       "    hog = [str(i) * 10 for i in range(10**7)]\n"
                       "except MemoryError:\n"
                       "    print('too much: MemoryError, and the interpreter goes on')\n");
    PyRun_SimpleString("print('fits:', sum(len(str(i)) for i in range(10**5)))");
    hm_python_finalize(); /* instead of Py_FinalizeEx */
    char buf[1024];
    hm_tenant_report(hm_python_tenant(), HM_REPORT_TEXT, buf, sizeof buf);
    fputs(buf, stdout);
    hm_python_report(buf, sizeof buf);
    fputs(buf, stdout);
    return HM_FAILED(hm_python_uninstall());
}
