/* error.c: the version, the status codes and the thread-local "last error" message.
 * Functions that fail call glow_fail(status, fmt, ...) and return what it returns, so the
 * message is always set where the failure is detected. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include "glow.h"

static _Thread_local char last_error[512];

const char *glow_version(void) { return GLOW_VERSION; }

const char *glow_last_error(void) { return last_error; }

int glow_fail(int status, const char *fmt, ...) {
    /* Format into a copy first: a message may quote the previous one (glow_last_error()). */
    char msg[sizeof last_error];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    memcpy(last_error, msg, sizeof msg);
    return status;
}
