/* flood: sends Ethernet frames as fast as the kernel takes them, for the flood tests
 * (test_floods.py). A Python loop reaches a tenth of this rate; tcpreplay and scapy's
 * sendpfast are not on every CI machine, a C compiler is.
 *
 *   flood IFNAME SECONDS FRAMES_FILE
 *
 * FRAMES_FILE holds records of a 16-bit little-endian length and that many bytes; they
 * are sent round-robin on an AF_PACKET socket bound to IFNAME, 64 per sendmmsg, until
 * SECONDS have passed. A full queue (ENOBUFS, EAGAIN) is counted and the loop goes on: a
 * flood does not wait. Prints "sent N refused M seconds S" on stdout; exits 2 on bad
 * arguments or a file it cannot read, 1 when the socket cannot be opened. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

enum { kMaxFrames = 65536, kMaxLen = 9216, kBatch = 64 };

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: flood IFNAME SECONDS FRAMES_FILE\n");
        return 2;
    }
    const double seconds = atof(argv[2]);
    FILE *f = fopen(argv[3], "rb");
    if (f == NULL || seconds <= 0) {
        fprintf(stderr, "flood: cannot read %s or bad SECONDS %s\n", argv[3], argv[2]);
        return 2;
    }
    static struct iovec iov[kMaxFrames];
    size_t n = 0;
    unsigned char hdr[2];
    while (n < kMaxFrames && fread(hdr, 1, 2, f) == 2) {
        size_t len = (size_t)hdr[0] | ((size_t)hdr[1] << 8);
        if (len == 0 || len > kMaxLen) {
            fprintf(stderr, "flood: frame %zu has length %zu (1..%d)\n", n, len, kMaxLen);
            return 2;
        }
        void *buf = malloc(len);
        if (buf == NULL || fread(buf, 1, len, f) != len) {
            fprintf(stderr, "flood: frame %zu cut short\n", n);
            return 2;
        }
        iov[n].iov_base = buf;
        iov[n].iov_len = len;
        n++;
    }
    fclose(f);
    if (n == 0) {
        fprintf(stderr, "flood: no frame in %s\n", argv[3]);
        return 2;
    }

    int fd = socket(AF_PACKET, SOCK_RAW, htons(ETH_P_ALL));
    unsigned idx = if_nametoindex(argv[1]);
    if (fd < 0 || idx == 0) {
        fprintf(stderr, "flood: socket on %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    struct sockaddr_ll sll = {.sll_family = AF_PACKET, .sll_ifindex = (int)idx,
                              .sll_protocol = htons(ETH_P_ALL)};
    if (bind(fd, (struct sockaddr *)&sll, sizeof sll) != 0) {
        fprintf(stderr, "flood: bind %s: %s\n", argv[1], strerror(errno));
        return 1;
    }

    static struct mmsghdr msgs[kBatch];
    unsigned long long sent = 0, refused = 0;
    size_t next = 0;
    const double t0 = now_s();
    double t = t0;
    while (t - t0 < seconds) {
        for (int i = 0; i < kBatch; i++) {
            memset(&msgs[i].msg_hdr, 0, sizeof msgs[i].msg_hdr);
            msgs[i].msg_hdr.msg_iov = &iov[next];
            msgs[i].msg_hdr.msg_iovlen = 1;
            next = next + 1 == n ? 0 : next + 1;
        }
        int r = sendmmsg(fd, msgs, kBatch, MSG_DONTWAIT);
        if (r < 0) {
            if (errno != ENOBUFS && errno != EAGAIN && errno != EINTR && errno != ENXIO &&
                errno != ENETDOWN && errno != EMSGSIZE) {
                fprintf(stderr, "flood: sendmmsg: %s\n", strerror(errno));
                return 1;
            }
            refused += kBatch;
        } else {
            sent += (unsigned long long)r;
            refused += (unsigned long long)(kBatch - r);
        }
        t = now_s();
    }
    printf("sent %llu refused %llu seconds %.3f\n", sent, refused, t - t0);
    return 0;
}
