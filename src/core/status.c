/* status.c — the one place where an hm_status becomes a Win32 last error, a COM HRESULT, a name and
 * a sentence. Lower layers return statuses; only the surfaces convert them, through these tables. */
#include <hostmem/hostmem.h>

typedef struct status_row {
    hm_status status;
    uint32_t win32;      /* GetLastError value */
    const char *name;
    const char *message;
} status_row;

static const status_row rows[] = {
    {HM_OK, 0, "S_OK", "the operation succeeded"},
    {HM_E_NOT_ENOUGH_MEMORY, HM_ERROR_NOT_ENOUGH_MEMORY, "ERROR_NOT_ENOUGH_MEMORY",
     "not enough memory or address space: the system refused the request"},
    {HM_E_BAD_LENGTH, HM_ERROR_BAD_LENGTH, "ERROR_BAD_LENGTH", "the buffer is too small for the result"},
    {HM_E_NOT_SUPPORTED, HM_ERROR_NOT_SUPPORTED, "ERROR_NOT_SUPPORTED",
     "not supported on this system (hostmem needs 4 KiB pages)"},
    {HM_E_INVALID_PARAMETER, HM_ERROR_INVALID_PARAMETER, "ERROR_INVALID_PARAMETER",
     "an argument is invalid (flags, protection, size or address)"},
    {HM_E_INVALID_ADDRESS, HM_ERROR_INVALID_ADDRESS, "ERROR_INVALID_ADDRESS",
     "the address or range is not in a suitable state (not reserved, already taken, or not the allocation's base)"},
    {HM_E_NOACCESS, HM_ERROR_NOACCESS, "ERROR_NOACCESS", "a required output pointer is NULL"},
    {HM_E_COMMITMENT_LIMIT, HM_ERROR_COMMITMENT_LIMIT, "ERROR_COMMITMENT_LIMIT",
     "the memory budget refused the request"},
    {HM_E_NOTIMPL, 50, "E_NOTIMPL", "not implemented"},
    {HM_E_NOINTERFACE, 1168, "E_NOINTERFACE", "the interface is not offered"},
    {HM_E_POINTER, HM_ERROR_NOACCESS, "E_POINTER", "a required pointer is NULL"},
    {HM_E_FAIL, 1359, "E_FAIL",
     "catastrophic failure: the map no longer matches the address space and could not be repaired"},
    {HM_E_OUTOFMEMORY, 14, "E_OUTOFMEMORY", "out of memory"},
    {HM_E_HOST_INVALIDOPERATION, 4317, "HOST_E_INVALIDOPERATION", "the memory was not allocated through the host"},
    {HM_E_HOST_CLRNOTAVAILABLE, 4317, "HOST_E_CLRNOTAVAILABLE", "the manager is shut down or failed"},
    {HM_E_HOST_TIMEOUT, 1460, "HOST_E_TIMEOUT", "the wait for memory timed out"},
    {HM_E_HOST_NOT_OWNER, 288, "HOST_E_NOT_OWNER", "the memory belongs to another manager or heap"},
    {HM_E_HOST_ABANDONED, 735, "HOST_E_ABANDONED", "the wait for memory was abandoned by shutdown"},
};

static const status_row *find(hm_status s)
{
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
        if (rows[i].status == s) return &rows[i];
    return NULL;
}

uint32_t hm_status_win32_error(hm_status s)
{
    if (s >= 0) return 0;
    const status_row *r = find(s);
    if (r) return r->win32;
    if (((uint32_t)s & 0xFFFF0000u) == 0x80070000u) return (uint32_t)s & 0xFFFFu;
    return 1359; /* ERROR_INTERNAL_ERROR */
}

int32_t hm_status_hresult(hm_status s)
{
    if (s == HM_E_NOT_ENOUGH_MEMORY || s == HM_E_COMMITMENT_LIMIT) return HM_E_OUTOFMEMORY;
    return s;
}

const char *hm_status_message(hm_status s)
{
    const status_row *r = find(s);
    if (r) return r->message;
    return s >= 0 ? "success" : "unknown error";
}

const char *hm_status_name(hm_status s)
{
    const status_row *r = find(s);
    if (r) return r->name;
    return s >= 0 ? "S_OK" : "unknown";
}
