// The daemon's API transport as any local client reaches it: the input's bytes are sent on a
// connection to a real ApiServer (on a socket in a private directory) whose handler echoes the
// op and its arguments, then the client stops sending and reads every reply. Each reply must be
// one JSON object with "ok", and the server must keep serving (the next input gets through).
//
// libFuzzer's -timeout arms a SIGALRM every timeout/2+1 s; it lands in any thread, and a poll()
// it interrupts returns EINTR at once. This harness once took that for "no reply within 5 s"
// (tests/fuzz/findings/fuzz_api-no-reply-in-5s, ~12 s into a run): waits are now measured on
// the clock and an interrupted poll is resumed.
//
// A long run reported it again (2026-12-07, 5 minutes into its 23) while two dpdk-fwd daemons
// busy-polled both cores beside the niced fuzzer: the input ran in 9 ms alone. The process had
// had no CPU for 5 s. A wait that runs out now looks at the process's run delay (the time its
// threads waited for a CPU, /proc/self/task/*/schedstat): while that grew by half of the next
// 5 s or more, the process was starved, not the server stuck, and the wait goes on (60 s at
// most).
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>

#include "fwd/control/api.hpp"

namespace {

using nlohmann::json;

// The server's private directory; removed at exit, after the server (it was registered
// first), so that runs leave nothing in /tmp. Plain storage: static strings may be gone then.
char g_dir[] = "/tmp/fwd-fuzz-api.XXXXXX";

void remove_dir() {
    std::error_code ec;
    std::filesystem::remove_all(g_dir, ec);
}

fwd::control::ApiServer &server() {
    static std::unique_ptr<fwd::control::ApiServer> s = [] {
        if (mkdtemp(g_dir) == nullptr) {
            std::perror("mkdtemp");
            std::abort();
        }
        std::atexit(remove_dir);
        auto srv = std::make_unique<fwd::control::ApiServer>(
            std::string(g_dir) + "/api.sock", std::vector<std::string>{"echo", "fail"},
            [](const std::string &op, const json &args) -> json {
                if (op == "fail") {
                    throw fwd::control::ApiError("invalid_argument", "fuzz: refused");
                }
                return json{{"op", op}, {"args", args}};
            });
        srv->start();
        return srv;
    }();
    return *s;
}

// Nanoseconds this process's threads have waited on a run queue, all told.
uint64_t run_delay_ns() {
    uint64_t sum = 0;
    std::error_code ec;
    for (const auto &t : std::filesystem::directory_iterator("/proc/self/task", ec)) {
        if (FILE *f = std::fopen((t.path() / "schedstat").c_str(), "r")) {
            unsigned long long run = 0, wait = 0;
            if (std::fscanf(f, "%llu %llu", &run, &wait) == 2) {
                sum += wait;
            }
            std::fclose(f);
        }
    }
    return sum;
}

void fail(const char *why) {
    std::fprintf(stderr, "fuzz_api: %s\n", why);
    std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const std::string &path = server().socket_path();
    const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    if (fd < 0 || connect(fd, reinterpret_cast<const sockaddr *>(&addr), sizeof(addr)) != 0) {
        fail("the server stopped accepting");
    }
    // Send and read side by side: a long input is answered while it is still being sent.
    // Each wait for the server may last 5 s, signals or not.
    using clock = std::chrono::steady_clock;
    size_t sent = 0;
    std::string in;
    bool shut = false;
    for (;;) {
        if (sent == size && !shut) {
            shutdown(fd, SHUT_WR);  // all sent: the server answers and closes
            shut = true;
        }
        pollfd p{fd, static_cast<short>(POLLIN | (sent < size ? POLLOUT : 0)), 0};
        const auto start = clock::now();
        auto give_up = start + std::chrono::seconds(5);
        uint64_t delay_mark = 0;  // run_delay_ns() when the last 5 s ran out (0: not yet)
        int ready = 0;
        while (ready <= 0) {
            const auto left =
                std::chrono::duration_cast<std::chrono::milliseconds>(give_up - clock::now());
            if (left.count() <= 0) {
                const uint64_t delay = run_delay_ns();
                const bool starved = delay_mark != 0 && delay - delay_mark >= 2'500'000'000ull;
                if ((delay_mark != 0 && !starved) ||
                    clock::now() - start >= std::chrono::seconds(60)) {
                    fail("no reply within 5 s");
                }
                delay_mark = delay;  // 5 s more, to tell a stuck server from a starved process
                give_up = clock::now() + std::chrono::seconds(5);
                continue;
            }
            ready = poll(&p, 1, static_cast<int>(left.count()));
            if (ready < 0 && errno != EINTR) {
                fail("poll failed");
            }
        }
        if ((p.revents & POLLOUT) != 0 && sent < size) {
            const ssize_t n = send(fd, data + sent, size - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (n > 0) {
                sent += static_cast<size_t>(n);
            } else {
                sent = size;  // the server ended the connection (an overlong line)
            }
        }
        if ((p.revents & (POLLIN | POLLHUP)) != 0) {
            char buf[65536];
            const ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
            if (n == 0 || (n < 0 && errno != EAGAIN)) {
                break;
            }
            if (n > 0) {
                in.append(buf, static_cast<size_t>(n));
            }
        }
    }
    close(fd);
    for (size_t at = 0; at < in.size();) {
        const size_t nl = in.find('\n', at);
        if (nl == std::string::npos) {
            fail("a reply without its newline");
        }
        const json r = json::parse(in.substr(at, nl - at), nullptr, false);
        if (!r.is_object() || !r.contains("ok") || !r["ok"].is_boolean()) {
            fail("a reply that is not a JSON object with \"ok\"");
        }
        at = nl + 1;
    }
    return 0;
}
