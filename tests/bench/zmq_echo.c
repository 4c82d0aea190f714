/* zmq_echo: the ZeroMQ floor for tests/bench/compare.sh.  A bare libzmq
 * ROUTER that sends every message straight back, doing no other work, with
 * the same socket options and the same drain-per-wake-up loop as kvnode.
 * kvbench can drive it because a request echoed back is a valid reply
 * with status 0.  Usage: zmq_echo ENDPOINT READY-FILE */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>

static volatile int s_stop;
static void s_on_signal(int sig)
{
    (void) sig;
    s_stop = 1;
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: zmq_echo ENDPOINT READY-FILE\n");
        return 2;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = s_on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    void *ctx = zmq_ctx_new();
    void *sock = zmq_socket(ctx, ZMQ_ROUTER);
    int hwm = 100000, linger = 0;
    zmq_setsockopt(sock, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(sock, ZMQ_RCVHWM, &hwm, sizeof hwm);
    zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_bind(sock, argv[1]) != 0) {
        fprintf(stderr, "zmq_echo: cannot bind %s: %s\n", argv[1], zmq_strerror(errno));
        return 1;
    }
    char ep[256];
    size_t len = sizeof ep;
    zmq_getsockopt(sock, ZMQ_LAST_ENDPOINT, ep, &len);
    FILE *f = fopen(argv[2], "w");
    if (!f)
        return 1;
    fprintf(f, "%s\n", ep);
    fclose(f);
    while (!s_stop) {
        zmq_pollitem_t it = {sock, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, 100) <= 0)
            continue;
        for (int k = 0; k < 4096; k++) {
            zmq_msg_t m;
            zmq_msg_init(&m);
            if (zmq_msg_recv(&m, sock, ZMQ_DONTWAIT) < 0) {
                zmq_msg_close(&m);
                break;
            }
            for (;;) {
                int more = zmq_msg_more(&m);
                zmq_msg_send(&m, sock, more ? ZMQ_SNDMORE : 0);
                if (!more)
                    break;
                zmq_msg_init(&m);
                zmq_msg_recv(&m, sock, 0);
            }
        }
    }
    zmq_close(sock);
    zmq_ctx_term(ctx);
    return 0;
}
