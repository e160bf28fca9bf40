/* host_python.c — hostmem-host-python, the helper behind `hostmem host python`: runs a Python script
 * on CPython hosted by the tenant host_main.c made (hostmem/python.h), with sys.argv the script and
 * its arguments and sys.path[0] the script's directory, as `python3 SCRIPT ARGS...` would. An uncaught
 * exception (a MemoryError among them) prints its traceback and makes the status 1; SystemExit's code
 * is kept as 0 or 1 (any other code is 1). */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <libgen.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hostmem/python.h>

#include "host_main.h"

typedef struct state {
    bool no_collect;
} state;

static int option(int argc, char **argv, int i, void *arg)
{
    (void)argc;
    state *s = arg;
    if (!strcmp(argv[i], "--no-collect")) {
        s->no_collect = true;
        return 1;
    }
    return 0;
}

/* The status of a script that raised: SystemExit's code, else the traceback printed and 1. */
static int raised(void)
{
    if (!PyErr_ExceptionMatches(PyExc_SystemExit)) {
        PyErr_Print();
        return 1;
    }
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    PyObject *code = value ? PyObject_GetAttrString(value, "code") : NULL;
    int rc = 1;
    if (!code || code == Py_None) {
        rc = code ? 0 : 1;
    } else if (PyLong_Check(code)) {
        rc = PyLong_AsLong(code) == 0 ? 0 : 1;
    } else { /* sys.exit("message"): the message on stderr */
        PyObject *s = PyObject_Str(code);
        const char *m = s ? PyUnicode_AsUTF8(s) : NULL;
        if (m) fprintf(stderr, "%s\n", m);
        Py_XDECREF(s);
    }
    PyErr_Clear();
    Py_XDECREF(code);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    return rc;
}

/* sys.path[0] = the script's directory; __main__.__file__ = the script. */
static int prepare(const char *script)
{
    char *copy = strdup(script), real[PATH_MAX];
    if (!copy) return -1;
    const char *dir = realpath(dirname(copy), real) ? real : ".";
    PyObject *path = PySys_GetObject("path"), *d = PyUnicode_DecodeFSDefault(dir);
    int rc = path && d ? PyList_Insert(path, 0, d) : -1;
    Py_XDECREF(d);
    free(copy);
    if (rc) return -1;
    PyObject *main = PyImport_AddModule("__main__"), *file = PyUnicode_DecodeFSDefault(script);
    rc = main && file ? PyDict_SetItemString(PyModule_GetDict(main), "__file__", file) : -1;
    Py_XDECREF(file);
    return rc;
}

/* CPython's start-up treats a refused allocation before MemoryError exists as fatal (Py_FatalError,
 * then abort()). In this helper, and only while CPython starts, that abort comes back here instead of
 * killing the process: the command then says the budget is too small, prints the tenant's report and
 * ends with status 1, never touching the half-made interpreter again. (An embedding program that
 * calls hm_python_install itself keeps CPython's behaviour: python.h says so.) */
static sigjmp_buf start_jump;
static void start_aborted(int sig)
{
    (void)sig;
    siglongjmp(start_jump, 1);
}

static PyStatus start(PyConfig *config, bool *aborted)
{
    struct sigaction sa = {.sa_handler = start_aborted}, old;
    sigemptyset(&sa.sa_mask);
    *aborted = false;
    if (sigsetjmp(start_jump, 1)) {
        sigaction(SIGABRT, &old, NULL);
        *aborted = true;
        return PyStatus_Error("CPython aborted while starting");
    }
    sigaction(SIGABRT, &sa, &old);
    PyStatus ps = Py_InitializeFromConfig(config);
    sigaction(SIGABRT, &old, NULL);
    return ps;
}

static int run(hm_tenant *t, const char *script, int argc, char **argv, void *arg)
{
    state *s = arg;
    FILE *f = fopen(script, "rb");
    if (!f) {
        fprintf(stderr, "hostmem host python: cannot open %s: %s\n", script, strerror(errno));
        return 2;
    }
    hm_python_config c = {.tenant = t, .no_collect = s->no_collect};
    hm_status st = hm_python_install(&c);
    if (HM_FAILED(st)) {
        fprintf(stderr, "hostmem host python: %s\n", *hm_last_detail() ? hm_last_detail() : hm_status_message(st));
        fclose(f);
        return 2;
    }
    PyConfig config;
    PyConfig_InitPythonConfig(&config);
    config.parse_argv = 0; /* the arguments are the script's, as given */
    PyStatus ps = PyConfig_SetBytesArgv(&config, argc, argv);
    bool aborted = false;
    if (!PyStatus_Exception(ps)) ps = start(&config, &aborted);
    if (aborted) { /* nothing of CPython's may run again: the report, and out */
        hm_tenant_stats ts;
        hm_tenant_get_stats(t, &ts);
        fprintf(stderr, "hostmem host python: CPython could not start within the budget (limit %.1f MiB; its start-up "
                        "needs about 5 MiB)\n", (double)ts.limit / (1024.0 * 1024.0));
        fclose(f);
        return 1;
    }
    PyConfig_Clear(&config);
    int rc = 1;
    if (PyStatus_Exception(ps)) { /* (a budget too small for CPython to start, say) */
        fprintf(stderr, "hostmem host python: CPython did not start: %s%s%s\n", ps.func ? ps.func : "", ps.func ? ": " : "",
                ps.err_msg ? ps.err_msg : "?");
        fclose(f);
    } else if (prepare(script)) {
        PyErr_Print();
        fclose(f);
    } else {
        PyObject *d = PyModule_GetDict(PyImport_AddModule("__main__"));
        PyObject *r = PyRun_FileExFlags(f, script, Py_file_input, d, d, 1, NULL); /* (closes f) */
        rc = r ? 0 : raised();
        Py_XDECREF(r);
    }
    if (hm_python_finalize() < 0 && rc == 0) rc = 1; /* (sys.stdout could not be flushed) */
    char buf[512];
    if (hm_python_report(buf, sizeof buf)) fputs(buf, stderr);
    hm_python_uninstall(); /* (the tenant is host_main's: it reports it, and keeps it for CPython's last threads) */
    return rc;
}

int main(int argc, char **argv)
{
    static const hm_host_runtime rt = {
        .name = "python",
        .usage = "[--no-collect] SCRIPT.py [ARGS...]\n"
                 "  SCRIPT.py runs as `python3 SCRIPT.py ARGS...` would; a Low memory state makes CPython collect\n"
                 "  (--no-collect: it does not); an uncaught exception, MemoryError included, is status 1",
        .option = option,
        .run = run,
        .keep_tenant = true,
    };
    state s = {0};
    return hm_host_main(&rt, &s, argc, argv);
}
