// SPDX-License-Identifier: GPL-2.0-or-later
#include "CHTTPFetch.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

// The part of libcurl's interface used here, declared rather than taken from
// <curl/curl.h>, so that building needs no libcurl -dev package: only the
// libcurl.so.4 that the Swift runtime's FoundationNetworking already needs.
// These numbers are libcurl's ABI (soname 4): options are never renumbered.
typedef void CURL;
typedef int CURLcode;
typedef long long curl_off_t;
struct curl_slist;
extern CURLcode curl_global_init(long flags);
extern CURL *curl_easy_init(void);
extern CURLcode curl_easy_setopt(CURL *handle, int option, ...);
extern CURLcode curl_easy_perform(CURL *handle);
extern CURLcode curl_easy_getinfo(CURL *handle, int info, ...);
extern void curl_easy_cleanup(CURL *handle);
extern const char *curl_easy_strerror(CURLcode code);
extern struct curl_slist *curl_slist_append(struct curl_slist *list, const char *string);
extern void curl_slist_free_all(struct curl_slist *list);

enum {
    CURL_GLOBAL_DEFAULT = 3,
    CURLE_OK = 0,
    CURLE_OUT_OF_MEMORY = 27,
    CURLE_ABORTED_BY_CALLBACK = 42,
    CURLE_WRITE_ERROR = 23,
    CURLOPT_WRITEDATA = 10001,
    CURLOPT_URL = 10002,
    CURLOPT_ERRORBUFFER = 10010,
    CURLOPT_WRITEFUNCTION = 20011,
    CURLOPT_USERAGENT = 10018,
    CURLOPT_LOW_SPEED_LIMIT = 19,
    CURLOPT_LOW_SPEED_TIME = 20,
    CURLOPT_HTTPHEADER = 10023,
    CURLOPT_HEADERDATA = 10029,
    CURLOPT_NOPROGRESS = 43,
    CURLOPT_FAILONERROR = 45,
    CURLOPT_FOLLOWLOCATION = 52,
    CURLOPT_XFERINFODATA = 10057,
    CURLOPT_MAXREDIRS = 68,
    CURLOPT_HEADERFUNCTION = 20079,
    CURLOPT_NOSIGNAL = 99,
    CURLOPT_ACCEPT_ENCODING = 10102,
    CURLOPT_MAXFILESIZE_LARGE = 30117,
    CURLOPT_TIMEOUT_MS = 155,
    CURLOPT_CONNECTTIMEOUT_MS = 156,
    CURLOPT_PROTOCOLS = 181,
    CURLOPT_REDIR_PROTOCOLS = 182,
    CURLOPT_XFERINFOFUNCTION = 20219,
    CURLOPT_PROTOCOLS_STR = 10318,
    CURLOPT_REDIR_PROTOCOLS_STR = 10319,
    CURLPROTO_HTTP_OR_HTTPS = 1 | 2,
    CURLINFO_RESPONSE_CODE = 0x200000 + 2,
};

/// The caller's callbacks, and whether one of them stopped the transfer.
typedef struct transfer {
    dg_http_body_fn body;
    dg_http_header_fn header;
    dg_http_cancelled_fn cancelled;
    void *context;
    int aborted;
} transfer;

static size_t on_body(char *bytes, size_t size, size_t count, void *user) {
    transfer *t = user;
    size_t length = size * count;
    if (t->body(t->context, (const uint8_t *)bytes, length) != 0) {
        t->aborted = 1;
        return length == 0 ? 1 : 0;  // any other count than `length` aborts
    }
    return length;
}

static size_t on_header(char *line, size_t size, size_t count, void *user) {
    transfer *t = user;
    t->header(t->context, line, size * count);
    return size * count;
}

static int on_progress(void *user, curl_off_t download_total, curl_off_t downloaded, curl_off_t upload_total,
                       curl_off_t uploaded) {
    (void)download_total, (void)downloaded, (void)upload_total, (void)uploaded;
    transfer *t = user;
    if (t->cancelled(t->context) != 0) {
        t->aborted = 1;
        return 1;
    }
    return 0;
}

static pthread_once_t global_init_once = PTHREAD_ONCE_INIT;
static CURLcode global_init_code = CURLE_OK;

// curl_global_init is not thread-safe in older libcurl: once, whoever comes first.
static void global_init(void) { global_init_code = curl_global_init(CURL_GLOBAL_DEFAULT); }

/// http and https only, also after a redirect (the *_STR options are
/// libcurl 7.85+; older ones take the bit mask).
static void http_only(CURL *curl) {
    if (curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https") != CURLE_OK) {
        curl_easy_setopt(curl, CURLOPT_PROTOCOLS, (long)CURLPROTO_HTTP_OR_HTTPS);
    }
    if (curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS_STR, "http,https") != CURLE_OK) {
        curl_easy_setopt(curl, CURLOPT_REDIR_PROTOCOLS, (long)CURLPROTO_HTTP_OR_HTTPS);
    }
}

void dg_http_get(const dg_http_request *request, dg_http_body_fn body, dg_http_header_fn header,
                 dg_http_cancelled_fn cancelled, void *context, dg_http_outcome *outcome) {
    memset(outcome, 0, sizeof *outcome);
    pthread_once(&global_init_once, global_init);
    CURL *curl = global_init_code == CURLE_OK ? curl_easy_init() : NULL;
    if (curl == NULL) {
        outcome->curl_code = global_init_code != CURLE_OK ? global_init_code : CURLE_OUT_OF_MEMORY;
        strncpy(outcome->message, "libcurl could not be initialised", sizeof outcome->message - 1);
        return;
    }
    transfer t = {.body = body, .header = header, .cancelled = cancelled, .context = context};
    struct curl_slist *headers = NULL;
    char line[1024];
    if (request->if_none_match != NULL) {
        snprintf(line, sizeof line, "If-None-Match: %s", request->if_none_match);
        headers = curl_slist_append(headers, line);
    }
    if (request->if_modified_since != NULL) {
        snprintf(line, sizeof line, "If-Modified-Since: %s", request->if_modified_since);
        headers = curl_slist_append(headers, line);
    }
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, outcome->message);
    curl_easy_setopt(curl, CURLOPT_URL, request->url);
    curl_easy_setopt(curl, CURLOPT_USERAGENT, request->user_agent);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    http_only(curl);
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(curl, CURLOPT_MAXREDIRS, 5L);
    curl_easy_setopt(curl, CURLOPT_ACCEPT_ENCODING, "");  // whatever libcurl can decompress
    curl_easy_setopt(curl, CURLOPT_FAILONERROR, 1L);      // an error page is not a list: no body
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);         // timeouts without SIGALRM, from any thread
    curl_easy_setopt(curl, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)request->maximum_bytes);
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, request->connect_timeout_ms);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, request->total_timeout_ms);
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, request->stall_seconds);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &t);
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, &t);
    curl_easy_setopt(curl, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(curl, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(curl, CURLOPT_XFERINFODATA, &t);

    CURLcode code = curl_easy_perform(curl);
    long status = 0;
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    outcome->status = status;
    outcome->curl_code = code;
    outcome->aborted = t.aborted;
    if (code != CURLE_OK && outcome->message[0] == '\0') {
        strncpy(outcome->message, curl_easy_strerror(code), sizeof outcome->message - 1);
    }
    curl_easy_cleanup(curl);
    curl_slist_free_all(headers);
}
