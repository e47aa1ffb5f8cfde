// ApiClient: one request, one reply line, over a lazily opened connection that is kept for the
// next call. Every wait is bounded by the call's deadline.
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>

#include "fwd/control/api.hpp"

namespace fwd::control {

namespace {

using nlohmann::json;

constexpr size_t kReadChunk = 64 * 1024;

long long now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

// poll() timeout left until deadline_ms; -1 (forever) when there is no deadline.
int remaining_ms(long long deadline_ms) {
    if (deadline_ms < 0) {
        return -1;
    }
    const long long left = deadline_ms - now_ms();
    return left > 0 ? static_cast<int>(left) : 0;
}

bool peer_gone(int err) {
    return err == EPIPE || err == ECONNRESET || err == ENOTCONN;
}

// Reads a string member of an error reply without throwing on a missing or ill-typed one.
std::string string_field(const json &obj, const char *key, const char *fallback) {
    if (obj.is_object()) {
        if (auto it = obj.find(key); it != obj.end() && it->is_string()) {
            return it->get<std::string>();
        }
    }
    return fallback;
}

}  // namespace

ApiClient::ApiClient(std::string socket_path, int timeout_ms)
    : path_(std::move(socket_path)), timeout_ms_(timeout_ms) {}

ApiClient::~ApiClient() {
    disconnect();
}

void ApiClient::disconnect() {
    if (fd_ >= 0) {
        close(fd_);
        fd_ = -1;
    }
    in_.clear();
}

void ApiClient::connect_socket() {
    const auto fail = [this](int err) {
        return ApiConnectionError("cannot connect to " + path_ + ": " + std::strerror(err));
    };
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path_.empty() || path_.size() >= sizeof(addr.sun_path)) {
        throw fail(ENAMETOOLONG);
    }
    std::memcpy(addr.sun_path, path_.c_str(), path_.size() + 1);

    const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        throw fail(errno);
    }
    // A unix connect() only blocks while the server's backlog is full; SO_SNDTIMEO bounds that
    // wait. The socket turns non-blocking afterwards, where poll() enforces the deadline.
    if (timeout_ms_ > 0) {
        timeval tv{};
        tv.tv_sec = timeout_ms_ / 1000;
        tv.tv_usec = (timeout_ms_ % 1000) * 1000;
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
    }
    int rc;
    do {
        rc = connect(fd, reinterpret_cast<const sockaddr *>(&addr), sizeof(addr));
    } while (rc != 0 && errno == EINTR);
    if (rc != 0) {
        const int err = errno == EAGAIN ? ETIMEDOUT : errno;
        close(fd);
        throw fail(err);
    }
    // The listener's credentials: only a daemon run by root or by our own user is trusted with
    // our requests (a CNI ADD carries the pod's namespace), whoever owns the path.
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
        const int err = errno;
        close(fd);
        throw fail(err);
    }
    if (cred.uid != 0 && cred.uid != geteuid()) {
        close(fd);
        throw ApiConnectionError("refusing " + path_ + ": its server runs as uid " +
                                 std::to_string(cred.uid) + ", not root" +
                                 (geteuid() != 0 ? " nor uid " + std::to_string(geteuid()) : ""));
    }
    const int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
        const int err = errno;
        close(fd);
        throw fail(err);
    }
    fd_ = fd;
    in_.clear();
}

ApiClient::SendResult ApiClient::send_all(const std::string &data, long long deadline_ms) {
    size_t sent = 0;
    while (sent < data.size()) {
        const ssize_t n = send(fd_, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
        if (n >= 0) {
            sent += static_cast<size_t>(n);
            continue;
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            pollfd p{fd_, POLLOUT, 0};
            const int rc = poll(&p, 1, remaining_ms(deadline_ms));
            if (rc == 0) {
                disconnect();
                throw ApiConnectionError("timed out sending a request to " + path_);
            }
            continue;
        }
        if (peer_gone(errno)) {
            return sent == 0 ? SendResult::kNothingSent : SendResult::kCutShort;
        }
        const int err = errno;
        disconnect();
        throw ApiConnectionError("cannot send to " + path_ + ": " + std::strerror(err));
    }
    return SendResult::kSent;
}

std::string ApiClient::read_line(long long deadline_ms) {
    char buf[kReadChunk];
    for (;;) {
        if (const size_t nl = in_.find('\n'); nl != std::string::npos) {
            std::string line = in_.substr(0, nl);
            in_.erase(0, nl + 1);
            return line;
        }
        const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
        if (n > 0) {
            in_.append(buf, static_cast<size_t>(n));
            continue;
        }
        if (n == 0) {
            disconnect();
            throw ApiConnectionError("connection to " + path_ + " closed before a reply");
        }
        if (errno == EINTR) {
            continue;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            const int err = errno;
            disconnect();
            throw ApiConnectionError("cannot read from " + path_ + ": " + std::strerror(err));
        }
        pollfd p{fd_, POLLIN, 0};
        if (poll(&p, 1, remaining_ms(deadline_ms)) == 0) {
            // A late reply would be taken for the next call's, so the connection goes.
            disconnect();
            throw ApiConnectionError("no reply from " + path_ + " within " +
                                     std::to_string(timeout_ms_) + " ms");
        }
    }
}

json ApiClient::call(const std::string &op, const json &args) {
    const uint64_t id = next_id_++;
    const std::string request = json{{"id", id}, {"op", op}, {"args", args}}.dump(
                                    -1, ' ', false, json::error_handler_t::replace) +
                                '\n';
    const long long deadline = timeout_ms_ > 0 ? now_ms() + timeout_ms_ : -1;

    const bool reused = fd_ >= 0;
    if (!reused) {
        connect_socket();
    }
    SendResult sent = send_all(request, deadline);
    if (sent == SendResult::kNothingSent && reused) {
        // The daemon closed the idle connection (it restarted, or ended the connection after a
        // bad request). It saw nothing of this request, so sending it again cannot run it twice.
        disconnect();
        connect_socket();
        sent = send_all(request, deadline);
    }
    if (sent == SendResult::kNothingSent) {
        disconnect();
        throw ApiConnectionError("connection to " + path_ + " closed by the daemon");
    }
    // On kCutShort the daemon stopped reading mid-request (e.g. the line was too long); its
    // reply explaining why is still waiting to be read.

    const std::string line = read_line(deadline);
    json reply;
    try {
        reply = json::parse(line);
    } catch (const json::exception &e) {
        disconnect();
        throw ApiError("internal", "malformed reply from " + path_ + ": " + e.what());
    }
    const auto ok = reply.is_object() ? reply.find("ok") : reply.end();
    if (!reply.is_object() || ok == reply.end() || !ok->is_boolean()) {
        disconnect();
        throw ApiError("internal", "malformed reply from " + path_ + ": no boolean \"ok\"");
    }
    // The server answers with a null id when it could not read ours.
    const json &reply_id = reply.contains("id") ? reply["id"] : json();
    if (!reply_id.is_null() && reply_id != json(id)) {
        disconnect();
        throw ApiError("internal", "reply from " + path_ + " is for request " + reply_id.dump() +
                                       ", expected " + std::to_string(id));
    }
    if (ok->get<bool>()) {
        const auto result = reply.find("result");
        return result == reply.end() ? json::object() : std::move(*result);
    }
    if (reply_id.is_null()) {
        // The daemon could not read the request (e.g. the line was too long) and may be closing
        // the connection; a request sent on it now could be lost.
        disconnect();
    }
    const json &error = reply.contains("error") ? reply["error"] : json();
    throw ApiError(string_field(error, "code", "internal"),
                   string_field(error, "message", "error reply without a message"));
}

}  // namespace fwd::control
