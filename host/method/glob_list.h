// Comma-separated glob lists over quant site names (penalty.sites, noise.sites): matching, and the
// first pattern that matches no site of the given roles (for a one-line config error).
#ifndef QFT_METHOD_GLOB_LIST_H
#define QFT_METHOD_GLOB_LIST_H

#include <stddef.h>

#include "../quant/site.h"

// 1 when `name` matches one of the comma-separated fnmatch patterns of `list` (spaces around items ignored).
int qft_glob_list_match(const char *list, const char *name);

// 1 and the pattern in `out` when a pattern of `list` matches no site whose role is role_a or role_b.
int qft_glob_list_unmatched(const char *list, const qft_quant_state *st, qft_site_role role_a, qft_site_role role_b,
                            char *out, size_t out_size);

#endif
