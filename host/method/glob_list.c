// Comma-separated glob lists over quant site names, as penalty.sites and noise.sites take them:
// each item is an fnmatch pattern (`*` spans dots, as in quant.rules).
#include "glob_list.h"

#include <fnmatch.h>
#include <stdio.h>
#include <string.h>

// Copies item `index` of the list (trimmed) into out; returns 0 past the last item.
static int list_item(const char *list, int index, char *out, size_t out_size) {
    const char *p = list;
    for (int i = 0; i < index; i++) {
        p = strchr(p, ',');
        if (!p) return 0;
        p++;
    }
    const char *end = strchr(p, ',');
    if (!end) end = p + strlen(p);
    while (p < end && *p == ' ') p++;
    while (end > p && end[-1] == ' ') end--;
    size_t len = (size_t)(end - p) < out_size - 1 ? (size_t)(end - p) : out_size - 1;
    memcpy(out, p, len);
    out[len] = '\0';
    return 1;
}

int qft_glob_list_match(const char *list, const char *name) {
    char pattern[512];
    for (int i = 0; list_item(list, i, pattern, sizeof pattern); i++)
        if (pattern[0] && fnmatch(pattern, name, 0) == 0) return 1;
    return 0;
}

int qft_glob_list_unmatched(const char *list, const qft_quant_state *st, qft_site_role role_a, qft_site_role role_b,
                            char *out, size_t out_size) {
    char pattern[512];
    for (int i = 0; list_item(list, i, pattern, sizeof pattern); i++) {
        if (!pattern[0]) continue;
        int hit = 0;
        for (int s = 0; s < st->count && !hit; s++)
            hit = (st->sites[s].role == role_a || st->sites[s].role == role_b) &&
                  fnmatch(pattern, st->sites[s].name, 0) == 0;
        if (!hit) {
            snprintf(out, out_size, "%s", pattern);
            return 1;
        }
    }
    return 0;
}
