/* A C program asking for handover on its own connection, as an iOS app
 * would with nw_parameters_set_multipath_service():
 *
 *   cc -I crates/multipath-c/include handover.c -lmultipath_c -o handover
 *   ./handover SERVER_ADDRESS PORT      (an `mptcp serve` and `mptcp pmd`)
 *
 * It downloads 1 MB, prints its status and subflows, says "ready", and
 * keeps the connection open until its standard input closes. */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>

#include <multipath.h>

static void print_addr(const struct sockaddr_storage *a, char *out, size_t len) {
    char ip[INET6_ADDRSTRLEN] = "?";
    unsigned port = 0;
    if (a->ss_family == AF_INET) {
        const struct sockaddr_in *v4 = (const struct sockaddr_in *)a;
        inet_ntop(AF_INET, &v4->sin_addr, ip, sizeof ip);
        port = ntohs(v4->sin_port);
    } else if (a->ss_family == AF_INET6) {
        const struct sockaddr_in6 *v6 = (const struct sockaddr_in6 *)a;
        inet_ntop(AF_INET6, &v6->sin6_addr, ip, sizeof ip);
        port = ntohs(v6->sin6_port);
    }
    snprintf(out, len, "%s port %u", ip, port);
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: %s SERVER_ADDRESS PORT\n", argv[0]);
        return 2;
    }
    if (multipath_abi_version() != MULTIPATH_ABI_VERSION) {
        fprintf(stderr, "libmultipath_c ABI %u, built for %u\n", multipath_abi_version(), MULTIPATH_ABI_VERSION);
        return 1;
    }
    struct addrinfo hints = {.ai_flags = AI_NUMERICHOST, .ai_socktype = SOCK_STREAM}, *ai;
    int rc = getaddrinfo(argv[1], argv[2], &hints, &ai);
    if (rc != 0) {
        fprintf(stderr, "%s: %s\n", argv[1], gai_strerror(rc));
        return 2;
    }
    int fd = multipath_socket(ai->ai_family, MULTIPATH_SERVICE_HANDOVER);
    if (fd < 0) {
        fprintf(stderr, "multipath_socket: %s\n", multipath_last_error());
        return 1;
    }
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
        perror("connect");
        return 1;
    }
    freeaddrinfo(ai);
    if (multipath_set_service(fd, MULTIPATH_SERVICE_HANDOVER) != 0) {
        fprintf(stderr, "multipath_set_service: %s (errno %d)\n", multipath_last_error(), errno);
        return 1;
    }
    const char request[] = "GET /files/1M HTTP/1.1\r\nHost: example\r\n\r\n";
    if (write(fd, request, sizeof request - 1) != (ssize_t)(sizeof request - 1)) {
        perror("write");
        return 1;
    }
    char buf[65536];
    size_t got = 0;
    while (got < 1000000) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0) {
            perror("read");
            return 1;
        }
        got += (size_t)n;
    }
    /* Handover keeps a backup subflow ready: wait for it (up to 5 s). */
    struct multipath_status st = {.size = sizeof st};
    for (int i = 0; i < 100; i++) {
        if (multipath_get_status(fd, &st) != 0) {
            fprintf(stderr, "multipath_get_status: %s\n", multipath_last_error());
            return 1;
        }
        if (st.subflows >= 2)
            break;
        usleep(50000);
    }
    printf("status multipath=%d token=%u subflows=%u\n", st.multipath, st.token, st.subflows);
    struct multipath_subflow subflows[8];
    int count = multipath_get_subflows(fd, subflows, 8);
    if (count < 0) {
        fprintf(stderr, "multipath_get_subflows: %s\n", multipath_last_error());
        return 1;
    }
    for (int i = 0; i < count && i < 8; i++) {
        char local[80], remote[80];
        print_addr(&subflows[i].local, local, sizeof local);
        print_addr(&subflows[i].remote, remote, sizeof remote);
        printf("subflow %s from %s to %s rtt_us=%u state=%u\n", subflows[i].interface, local, remote,
               subflows[i].rtt_us, subflows[i].state);
    }
    printf("ready\n");
    fflush(stdout);
    while (getchar() != EOF) {
    }
    close(fd);
    return 0;
}
