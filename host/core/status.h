// Status codes and error messages shared by every module.
// A failing function fills a caller-owned qft_error and returns a non-OK status; nothing is global.
#ifndef QFT_CORE_STATUS_H
#define QFT_CORE_STATUS_H

typedef enum {
    QFT_OK = 0,
    QFT_ERR_IO,       // file missing, unreadable, short read, write failed
    QFT_ERR_PARSE,    // malformed file contents (YAML, JSON header, IDX magic, ...)
    QFT_ERR_INVALID,  // well-formed but wrong: unknown key, bad type, value out of range
    QFT_ERR_SHAPE,    // tensor shape or dtype does not match what the model expects
    QFT_ERR_OOM,      // allocation failed
    QFT_ERR_INTERNAL  // a bug: an invariant did not hold
} qft_status;

// One line, always naming the file / key / tensor at fault and what was expected.
typedef struct {
    char message[1024];
} qft_error;

// Formats the message into err (if non-NULL) and returns code, so callers can write
// `return qft_fail(err, QFT_ERR_IO, "%s: cannot open", path);`
qft_status qft_fail(qft_error *err, qft_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

const char *qft_status_name(qft_status status);

#endif
