// ApiServer: one thread multiplexes the listen socket, a stop eventfd and every client with
// poll(). All sockets are non-blocking; bytes are assembled into lines per client and each
// complete line is answered in order. A misbehaving client only ever loses its own connection.
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string_view>
#include <system_error>

#include "fwd/control/api.hpp"

namespace fwd::control {

namespace {

using nlohmann::json;

constexpr size_t kReadChunk = 64 * 1024;
constexpr int kListenBacklog = 64;
// After accept() fails for lack of resources, the listen socket is left alone this long
// instead of spinning on it.
constexpr int kAcceptBackoffMs = 100;
// The JSON parser is iterative but dumping and copying values recurse; a bound on nesting
// keeps a hostile request from exhausting the server thread's stack.
constexpr int kMaxJsonDepth = 64;

// Why the peer on fd may not use the API; empty when it may: root, our own user, or a member
// of group (its primary group, or a supplementary one as /proc/<pid>/status lists them).
std::string refuse_peer(int fd, const std::optional<gid_t> &group) {
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
        return std::string("the peer's credentials cannot be read: ") + std::strerror(errno);
    }
    if (cred.uid == 0 || cred.uid == geteuid()) {
        return {};
    }
    if (group) {
        if (cred.gid == *group) {
            return {};
        }
        std::ifstream status("/proc/" + std::to_string(cred.pid) + "/status");
        std::string line;
        while (std::getline(status, line)) {
            if (line.rfind("Groups:", 0) == 0) {
                std::istringstream groups(line.substr(7));
                for (gid_t g; groups >> g;) {
                    if (g == *group) {
                        return {};
                    }
                }
            }
        }
    }
    return "uid " + std::to_string(cred.uid) + " may not use the dpdk-fwd API (root" +
           (geteuid() != 0 ? ", uid " + std::to_string(geteuid()) : std::string()) +
           (group ? " and group " + std::to_string(*group) : std::string()) + " only)";
}

// The request's id when the line is a JSON object with one, for a reply it can be matched to.
json request_id(const std::string &line) {
    const json req = json::parse(line, nullptr, false);
    if (req.is_object()) {
        if (auto it = req.find("id"); it != req.end() && !it->is_structured()) {
            return *it;
        }
    }
    return nullptr;
}

long long now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

std::system_error sys_error(int err, const std::string &what) {
    return std::system_error(err, std::generic_category(), what);
}

sockaddr_un make_addr(const std::string &path) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof(addr.sun_path)) {
        throw sys_error(ENAMETOOLONG, "API socket path '" + path + "' must be 1 to " +
                                          std::to_string(sizeof(addr.sun_path) - 1) + " bytes");
    }
    std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
    return addr;
}

// mkdir -p of the socket's directory; directories it creates get mode 0755 whatever the umask,
// so that clients can reach a socket whose own mode allows them.
void make_parent_dirs(const std::string &socket_path) {
    const size_t slash = socket_path.rfind('/');
    if (slash == std::string::npos || slash == 0) {
        return;
    }
    const std::string dir = socket_path.substr(0, slash);
    for (size_t end = 1; end <= dir.size(); end++) {
        if (end != dir.size() && dir[end] != '/') {
            continue;
        }
        const std::string prefix = dir.substr(0, end);
        if (mkdir(prefix.c_str(), 0755) == 0) {
            if (chmod(prefix.c_str(), 0755) != 0) {
                throw sys_error(errno, "cannot set the mode of " + prefix);
            }
        } else if (errno != EEXIST) {
            throw sys_error(errno, "cannot create directory " + prefix + " for " + socket_path);
        }
    }
}

// True if a server accepts connections on the socket; false if the file is a leftover of a
// server that died. Anything else (e.g. no permission to connect) is an error: refusing to start
// is safer than deleting another daemon's socket.
bool socket_is_live(const std::string &path, const sockaddr_un &addr) {
    const int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        throw sys_error(errno, "socket");
    }
    const int rc = connect(fd, reinterpret_cast<const sockaddr *>(&addr), sizeof(addr));
    const int err = errno;
    close(fd);
    if (rc == 0 || err == EAGAIN) {  // EAGAIN: alive, its backlog is full
        return true;
    }
    if (err == ECONNREFUSED || err == ENOENT) {
        return false;
    }
    throw sys_error(err, "cannot tell whether a daemon is listening on " + path);
}

// The parser's own message without its "[json.exception.parse_error.101] " prefix.
std::string parse_error_text(const std::exception &e) {
    std::string_view text = e.what();
    if (const size_t pos = text.find("] "); !text.empty() && text[0] == '[' && pos != text.npos) {
        text.remove_prefix(pos + 2);
    }
    return std::string(text);
}

bool is_blank(std::string_view line) {
    return line.find_first_not_of(" \t\r") == std::string_view::npos;
}

json error_reply(json id, const std::string &code, const std::string &message) {
    return json{{"id", std::move(id)},
                {"ok", false},
                {"error", json{{"code", code}, {"message", message}}}};
}

std::string serialize(const json &reply) {
    // replace: a handler may hand back bytes that are not UTF-8 (e.g. from an interface name);
    // that must not turn into an exception on the server thread.
    return reply.dump(-1, ' ', false, json::error_handler_t::replace) + '\n';
}

}  // namespace

struct ApiServer::Client {
    Client(int fd, long long now) : fd(fd), last_active(now) {}
    ~Client() { close(fd); }
    Client(const Client &) = delete;
    Client &operator=(const Client &) = delete;

    int fd;
    std::string in;        // bytes of lines not yet answered
    size_t scanned = 0;    // in[0, scanned) holds no newline
    std::string out;       // replies not yet sent
    size_t out_sent = 0;   // out[0, out_sent) is sent
    bool closing = false;  // read no more; close once out is sent
    bool dead = false;
    std::string denied;     // not empty: the peer may not use the API, and why
    long long last_active;  // ms (steady clock) of the last byte read or sent
};

ApiServer::ApiServer(std::string socket_path, std::vector<std::string> known_ops,
                     ApiHandler handler, std::optional<gid_t> group)
    : path_(std::move(socket_path)),
      known_ops_(std::move(known_ops)),
      handler_(std::move(handler)),
      group_(group) {}

ApiServer::~ApiServer() {
    stop();
}

void ApiServer::start() {
    if (thread_.joinable()) {
        throw std::logic_error("ApiServer on " + path_ + " is already started");
    }
    const sockaddr_un addr = make_addr(path_);
    try {
        make_parent_dirs(path_);

        struct stat st {};
        if (lstat(path_.c_str(), &st) == 0) {
            if (!S_ISSOCK(st.st_mode)) {
                throw sys_error(EEXIST, path_ + " exists and is not a socket");
            }
            if (socket_is_live(path_, addr)) {
                throw sys_error(EADDRINUSE, "another daemon is listening on " + path_);
            }
            if (unlink(path_.c_str()) != 0 && errno != ENOENT) {
                throw sys_error(errno, "cannot remove the stale socket " + path_);
            }
        }

        listen_fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (listen_fd_ < 0) {
            throw sys_error(errno, "socket for " + path_);
        }
        if (bind(listen_fd_, reinterpret_cast<const sockaddr *>(&addr), sizeof(addr)) != 0) {
            // EADDRINUSE here: another daemon bound the path since the check above.
            throw sys_error(errno, "cannot bind " + path_);
        }
        bound_ = true;
        if (stat(path_.c_str(), &st) != 0) {
            throw sys_error(errno, "cannot stat " + path_);
        }
        sock_dev_ = st.st_dev;
        sock_ino_ = st.st_ino;
        // The mode is set before listen(): until then connects are refused, so no client ever
        // reaches the socket under the umask's mode.
        if (group_ && chown(path_.c_str(), static_cast<uid_t>(-1), *group_) != 0) {
            throw sys_error(errno, "cannot give " + path_ + " to group " + std::to_string(*group_));
        }
        if (chmod(path_.c_str(), group_ ? 0660 : 0600) != 0) {
            throw sys_error(errno, "cannot set the mode of " + path_);
        }
        if (listen(listen_fd_, kListenBacklog) != 0) {
            throw sys_error(errno, "cannot listen on " + path_);
        }
        stop_fd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
        if (stop_fd_ < 0) {
            throw sys_error(errno, "eventfd for " + path_);
        }
        thread_ = std::thread([this] { run(); });
    } catch (...) {
        close_fds();
        throw;
    }
}

void ApiServer::stop() {
    if (thread_.joinable()) {
        const uint64_t one = 1;
        const ssize_t n = write(stop_fd_, &one, sizeof(one));
        (void)n;  // an eventfd write only fails on overflow, which still wakes the thread
        thread_.join();
    }
    close_fds();
}

void ApiServer::close_fds() {
    if (bound_) {
        // Remove the file only if it is still ours: after a failed start it may belong to a
        // daemon that won the race for the path.
        struct stat st {};
        if (stat(path_.c_str(), &st) == 0 && st.st_dev == sock_dev_ && st.st_ino == sock_ino_) {
            unlink(path_.c_str());
        }
        bound_ = false;
    }
    if (listen_fd_ >= 0) {
        close(listen_fd_);
        listen_fd_ = -1;
    }
    if (stop_fd_ >= 0) {
        close(stop_fd_);
        stop_fd_ = -1;
    }
}

void ApiServer::run() {
    std::vector<pollfd> fds;
    long long accept_paused_until = 0;  // 0: accepting
    for (;;) {
        long long now = now_ms();
        if (accept_paused_until != 0 && now >= accept_paused_until) {
            accept_paused_until = 0;
        }
        long long wake = accept_paused_until != 0 ? accept_paused_until : -1;
        fds.clear();
        fds.push_back(pollfd{stop_fd_, POLLIN, 0});
        fds.push_back(pollfd{accept_paused_until != 0 ? -1 : listen_fd_, POLLIN, 0});
        for (const auto &c : clients_) {
            // A client with replies pending is not read: it has to take its answers first.
            const short events = c->out_sent < c->out.size() ? POLLOUT : c->closing ? 0 : POLLIN;
            fds.push_back(pollfd{c->fd, events, 0});
            wake = wake < 0 ? deadline(*c) : std::min(wake, deadline(*c));
        }
        const int timeout = wake < 0 ? -1 : static_cast<int>(std::max(0LL, wake - now));
        const int n = poll(fds.data(), fds.size(), timeout);
        if (n < 0 && errno != EINTR) {
            break;  // only EFAULT/EINVAL/ENOMEM: nothing sensible left to do
        }
        if (n > 0 && fds[0].revents != 0) {
            break;
        }
        // Deadlines are judged on what this poll saw, not on the clock after the handler ran:
        // a handler that blocked for long must not expire clients whose bytes wait unread.
        now = now_ms();
        for (size_t i = 0; i < clients_.size(); i++) {
            Client &c = *clients_[i];
            const short revents = n > 0 ? fds[i + 2].revents : 0;
            if (revents == 0) {
                if (now >= deadline(c)) {
                    expire(c);
                }
                continue;
            }
            try {
                bool keep = true;
                if (revents & POLLOUT) {
                    keep = write_client(c);
                } else if (revents & (POLLIN | POLLHUP | POLLERR)) {
                    keep = read_client(c);
                } else if (revents & POLLNVAL) {
                    keep = false;
                }
                c.dead = !keep;
            } catch (const std::exception &) {
                c.dead = true;  // e.g. bad_alloc: give up on this client, keep serving others
            }
        }
        std::erase_if(clients_, [](const std::unique_ptr<Client> &c) { return c->dead; });

        if (n > 0 && (fds[1].revents & POLLIN) && !accept_clients(now_ms())) {
            accept_paused_until = now_ms() + kAcceptBackoffMs;
        }
    }
    clients_.clear();
}

long long ApiServer::deadline(const Client &c) const {
    const bool busy = !c.in.empty() || c.out_sent < c.out.size();
    return c.last_active + (busy ? limits_.stall_ms : limits_.idle_ms);
}

void ApiServer::expire(Client &c) {
    if (!c.in.empty() && c.out_sent == c.out.size()) {
        // Part of a request and nothing else pending: say why, as far as the socket takes it.
        const std::string why = serialize(error_reply(nullptr, "bad_request",
                                                      "request not completed within " +
                                                          std::to_string(limits_.stall_ms) +
                                                          " ms; closing the connection"));
        const ssize_t sent = send(c.fd, why.data(), why.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)sent;  // best effort: the connection ends either way
    }
    c.dead = true;
}

bool ApiServer::accept_clients(long long now) {
    for (;;) {
        const int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED) {
                continue;
            }
            // Out of descriptors or memory: back off rather than spin on a readable socket.
            return !(errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM);
        }
        if (clients_.size() >= limits_.max_clients) {
            // The connection quiet the longest goes: a flood of idle or stalled connections
            // cannot keep a real client out (refusing the newcomer instead would).
            const auto oldest = std::min_element(
                clients_.begin(), clients_.end(),
                [](const auto &a, const auto &b) { return a->last_active < b->last_active; });
            clients_.erase(oldest);
        }
        auto c = std::make_unique<Client>(fd, now);
        c->denied = refuse_peer(fd, group_);
        clients_.push_back(std::move(c));
    }
}

bool ApiServer::read_client(Client &c) {
    char buf[kReadChunk];
    const ssize_t n = recv(c.fd, buf, sizeof(buf), 0);
    if (n < 0) {
        return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
    }
    if (n == 0) {
        // The client is done sending; a partial last line is dropped (every request ends with
        // a newline) but replies already queued are still delivered.
        c.closing = true;
        return write_client(c);
    }
    c.last_active = now_ms();
    c.in.append(buf, static_cast<size_t>(n));
    handle_lines(c);
    return write_client(c);
}

bool ApiServer::write_client(Client &c) {
    while (c.out_sent < c.out.size()) {
        const ssize_t n =
            send(c.fd, c.out.data() + c.out_sent, c.out.size() - c.out_sent, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return errno == EAGAIN || errno == EWOULDBLOCK;  // EPIPE etc.: the client is gone
        }
        c.out_sent += static_cast<size_t>(n);
        c.last_active = now_ms();
    }
    c.out.clear();
    c.out_sent = 0;
    return !c.closing;
}

void ApiServer::handle_lines(Client &c) {
    size_t begin = 0;
    bool too_long = false;
    for (;;) {
        const size_t nl = c.in.find('\n', std::max(begin, c.scanned));
        if (nl == std::string::npos) {
            break;
        }
        if (nl - begin > kMaxApiLine) {
            too_long = true;
            break;
        }
        const std::string line = c.in.substr(begin, nl - begin);
        begin = nl + 1;
        if (is_blank(line)) {
            continue;
        }
        if (!c.denied.empty()) {
            c.out += serialize(error_reply(request_id(line), "permission_denied", c.denied));
            c.in.clear();
            c.scanned = 0;
            c.closing = true;
            return;
        }
        c.out += serialize(handle_request(line));
    }
    c.in.erase(0, begin);
    c.scanned = c.in.size();
    if (too_long || c.in.size() > kMaxApiLine) {
        // Such a client is broken or hostile; ending the connection bounds what it can make us
        // hold.
        c.out += serialize(error_reply(nullptr, "bad_request",
                                       "request line longer than " + std::to_string(kMaxApiLine) +
                                           " bytes; closing the connection"));
        c.in.clear();
        c.scanned = 0;
        c.closing = true;
    }
}

json ApiServer::handle_request(const std::string &line) {
    json req;
    try {
        req = json::parse(line, [](int depth, json::parse_event_t, json &) {
            if (depth > kMaxJsonDepth) {
                throw ApiError("bad_request", "request nests deeper than " +
                                                  std::to_string(kMaxJsonDepth) + " levels");
            }
            return true;
        });
    } catch (const ApiError &e) {
        return error_reply(nullptr, e.code(), e.what());
    } catch (const json::exception &e) {
        return error_reply(nullptr, "bad_request",
                           "request is not valid JSON: " + parse_error_text(e));
    }
    if (!req.is_object()) {
        return error_reply(nullptr, "bad_request",
                           std::string("request must be a JSON object, not ") + req.type_name());
    }

    json id = nullptr;
    if (auto it = req.find("id"); it != req.end()) {
        id = std::move(*it);
    }
    const auto op = req.find("op");
    if (op == req.end()) {
        return error_reply(std::move(id), "bad_request", "request has no \"op\"");
    }
    if (!op->is_string()) {
        return error_reply(std::move(id), "bad_request",
                           std::string("\"op\" must be a string, not ") + op->type_name());
    }
    const auto args = req.find("args");
    if (args == req.end()) {
        return error_reply(std::move(id), "bad_request",
                           "request has no \"args\" (send {} when the op takes none)");
    }
    if (!args->is_object()) {
        return error_reply(std::move(id), "bad_request",
                           std::string("\"args\" must be an object, not ") + args->type_name());
    }
    const std::string &name = op->get_ref<const std::string &>();
    if (std::find(known_ops_.begin(), known_ops_.end(), name) == known_ops_.end()) {
        std::string known;
        for (const auto &k : known_ops_) {
            known += (known.empty() ? "" : ", ") + k;
        }
        return error_reply(std::move(id), "unknown_op",
                           "unknown op '" + name + "'; known ops: " + known);
    }

    try {
        json result = handler_(name, *args);
        return json{{"id", std::move(id)}, {"ok", true}, {"result", std::move(result)}};
    } catch (const ApiError &e) {
        return error_reply(std::move(id), e.code(), e.what());
    } catch (const std::exception &e) {
        return error_reply(std::move(id), "internal", e.what());
    } catch (...) {
        return error_reply(std::move(id), "internal", "unknown error in the handler");
    }
}

}  // namespace fwd::control
