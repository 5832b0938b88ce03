// SPDX-License-Identifier: GPL-2.0-or-later
// One HTTP(S) GET through libcurl, for remote lists: the body is handed over
// piece by piece as it arrives, so the caller can refuse it the moment it
// passes its size limit; a connect timeout, a stall timeout and a total
// deadline bound the time; and the caller can cancel it at any moment.
#ifndef DNSGATE_HTTP_FETCH_H
#define DNSGATE_HTTP_FETCH_H

#include <stddef.h>
#include <stdint.h>

typedef struct dg_http_request {
    const char *url;
    const char *user_agent;
    const char *if_none_match;      // NULL: not sent
    const char *if_modified_since;  // NULL: not sent
    int64_t maximum_bytes;          // a declared Content-Length above this fails at once
    long connect_timeout_ms;
    long stall_seconds;             // fails after this long with less than a byte a second
    long total_timeout_ms;          // the whole transfer, redirects included
} dg_http_request;

/// Takes the next piece of the body (at most libcurl's 16 KiB write size, also
/// after decompression); returns 0 to go on, anything else aborts the transfer.
typedef int (*dg_http_body_fn)(void *context, const uint8_t *bytes, size_t count);
/// Takes one header line as received (status lines included, one per response
/// when redirects are followed).
typedef void (*dg_http_header_fn)(void *context, const char *line, size_t count);
/// Polled during the transfer, at least once a second even when nothing
/// arrives; anything but 0 aborts it.
typedef int (*dg_http_cancelled_fn)(void *context);

typedef struct dg_http_outcome {
    long status;          // HTTP status of the last response; 0 when none came
    int curl_code;        // 0 on success
    int aborted;          // a callback aborted the transfer
    char message[256];    // why it failed, when curl_code != 0
} dg_http_outcome;

/// libcurl's code for a declared body larger than `maximum_bytes`.
#define DG_HTTP_TOO_LARGE 63

/// Runs the transfer to its end on the calling thread.
void dg_http_get(const dg_http_request *request, dg_http_body_fn body, dg_http_header_fn header,
                 dg_http_cancelled_fn cancelled, void *context, dg_http_outcome *outcome);

#endif
