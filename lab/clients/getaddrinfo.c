// SPDX-License-Identifier: GPL-2.0-or-later
// Looks names up with the C library's getaddrinfo(), one after another, and
// prints per name the addresses or the EAI_* error and how long it took, as JSON
// lines. Built with musl-gcc by the client matrix test, so that musl's own stub
// resolver (which reads /etc/resolv.conf) is what talks to the gateway.
//
//     getaddrinfo A:NAME|AAAA:NAME ...
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

static double now(void) {
    struct timespec clock;
    clock_gettime(CLOCK_MONOTONIC, &clock);
    return clock.tv_sec + clock.tv_nsec / 1e9;
}

static const char *error_name(int code) {
    switch (code) {
    case EAI_NONAME: return "EAI_NONAME";
    case EAI_AGAIN: return "EAI_AGAIN";
    case EAI_FAIL: return "EAI_FAIL";
    case EAI_FAMILY: return "EAI_FAMILY";
    case EAI_MEMORY: return "EAI_MEMORY";
    case EAI_SYSTEM: return "EAI_SYSTEM";
#ifdef EAI_NODATA
    case EAI_NODATA: return "EAI_NODATA";
#endif
    default: return "EAI_OTHER";
    }
}

int main(int argc, char **argv) {
    for (int index = 1; index < argc; index++) {
        const char *query = argv[index];
        // "A:name" asks for IPv4 addresses only, "AAAA:name" for IPv6 only.
        int family = strncmp(query, "AAAA:", 5) == 0 ? AF_INET6 : AF_INET;
        const char *name = strchr(query, ':') + 1;
        struct addrinfo hints = {.ai_family = family, .ai_socktype = SOCK_STREAM};
        struct addrinfo *result = NULL;
        double started = now();
        int code = getaddrinfo(name, NULL, &hints, &result);
        double seconds = now() - started;
        printf("{\"name\": \"%s\", \"type\": \"%s\", \"seconds\": %.3f, ", name,
               family == AF_INET6 ? "AAAA" : "A", seconds);
        if (code != 0) {
            printf("\"addresses\": [], \"error\": \"%s\"}\n", error_name(code));
        } else {
            printf("\"addresses\": [");
            const char *separator = "";
            for (struct addrinfo *entry = result; entry != NULL; entry = entry->ai_next) {
                char text[INET6_ADDRSTRLEN] = "";
                const void *address = entry->ai_family == AF_INET6
                    ? (const void *)&((struct sockaddr_in6 *)entry->ai_addr)->sin6_addr
                    : (const void *)&((struct sockaddr_in *)entry->ai_addr)->sin_addr;
                inet_ntop(entry->ai_family, address, text, sizeof text);
                printf("%s\"%s\"", separator, text);
                separator = ", ";
            }
            printf("]}\n");
            freeaddrinfo(result);
        }
        fflush(stdout);
    }
    return 0;
}
