// Error formatting helpers: the single place messages are written into qft_error.
// Kept tiny so every module can depend on it without pulling anything else in.
#include "status.h"

#include <stdarg.h>
#include <stdio.h>

qft_status qft_fail(qft_error *err, qft_status code, const char *fmt, ...) {
    if (err) {
        va_list args;
        va_start(args, fmt);
        vsnprintf(err->message, sizeof err->message, fmt, args);
        va_end(args);
    }
    return code;
}

const char *qft_status_name(qft_status status) {
    switch (status) {
    case QFT_OK: return "ok";
    case QFT_ERR_IO: return "io error";
    case QFT_ERR_PARSE: return "parse error";
    case QFT_ERR_INVALID: return "invalid value";
    case QFT_ERR_SHAPE: return "shape mismatch";
    case QFT_ERR_OOM: return "out of memory";
    case QFT_ERR_INTERNAL: return "internal error";
    }
    return "unknown error";
}
