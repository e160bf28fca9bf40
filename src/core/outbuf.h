/* outbuf.h — text built into a caller's buffer with snprintf's contract (the reports: hm_report,
 * hm_tenant_report): what does not fit is counted, never written, so the length returned is what the
 * whole text needs. */
#ifndef HM_OUTBUF_H
#define HM_OUTBUF_H

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

typedef struct hm_outbuf {
    char *buf;
    size_t cap, len; /* len: what the whole text needs so far */
} hm_outbuf;

static inline void hm_put(hm_outbuf *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline void hm_put(hm_outbuf *o, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *at = o->len < o->cap ? o->buf + o->len : NULL;
    size_t room = o->len < o->cap ? o->cap - o->len : 0;
    int n = vsnprintf(at, room, fmt, ap);
    va_end(ap);
    if (n > 0) o->len += (size_t)n;
}

/* A JSON string's body: quotes, backslashes and control characters escaped. */
static inline void hm_put_json_str(hm_outbuf *o, const char *s)
{
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') hm_put(o, "\\%c", c);
        else if (c < 0x20) hm_put(o, "\\u%04x", c);
        else hm_put(o, "%c", c);
    }
}

#endif
