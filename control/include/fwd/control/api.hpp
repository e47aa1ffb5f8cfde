// The daemon's control API: newline-delimited JSON over a SOCK_STREAM unix socket.
//
// One request per line, one reply line per request, in order; a connection may carry any
// number of requests.
//   request:  {"id": <any JSON, echoed>, "op": "endpoint.add", "args": {...}}
//   success:  {"id": ..., "ok": true, "result": {...}}
//   failure:  {"id": ..., "ok": false, "error": {"code": "<code>", "message": "<text>"}}
// Error codes: bad_request, unknown_op, invalid_argument, not_found, already_exists,
// unavailable, internal. A line longer than kMaxApiLine bytes is answered with bad_request and
// the connection is closed.
//
// Nothing here touches DPDK: the daemon plugs its handler into ApiServer, fwdctl and the tests
// use ApiClient.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace fwd::control {

inline constexpr const char *kDefaultApiSocket = "/run/dpdk-fwd/api.sock";
inline constexpr size_t kMaxApiLine = size_t{1} << 20;  // bytes, without the newline

// An error with one of the protocol's codes. Handlers throw it to choose the code of the
// reply; ApiClient::call throws it when the reply says ok=false.
class ApiError : public std::runtime_error {
  public:
    ApiError(std::string code, std::string message)
        : std::runtime_error(std::move(message)), code_(std::move(code)) {}
    const std::string &code() const { return code_; }  // what() is the message

  private:
    std::string code_;
};

// Thrown by ApiClient when the daemon cannot be reached or stops answering (code
// "unavailable"), so callers can tell "daemon down" from a daemon that said "unavailable".
class ApiConnectionError : public ApiError {
  public:
    explicit ApiConnectionError(std::string message)
        : ApiError("unavailable", std::move(message)) {}
};

// Runs one well-formed request (op is one of the server's known ops, args is an object) and
// returns its result. Throws ApiError to pick the error code; any other std::exception becomes
// "internal" with its what().
using ApiHandler = std::function<nlohmann::json(const std::string &op, const nlohmann::json &args)>;

// How much of the server one connection may hold, and for how long. A client that sends part
// of a request and stalls, or does not read its replies, is closed after stall_ms without
// progress (a partial request is answered with bad_request first); one that sends nothing is
// closed after idle_ms (ApiClient reconnects by itself). Past max_clients connections the one
// idle the longest is closed for the newcomer, so idle or stalled connections, however many,
// never lock the CNI plugin or fwdctl out.
struct ApiServerLimits {
    int stall_ms = 10'000;
    int idle_ms = 60'000;
    size_t max_clients = 128;
};

// Serves the API on a unix socket from its own thread. The handler is called from that thread,
// one request at a time; it may block (the daemon's handler waits for the control thread), which
// delays other clients but never loses their requests.
//
// Who may talk to it: root, the daemon's own user and, when a group is given, that group's
// members (the socket is then mode 0660 and owned by the group). Each connection's peer is
// checked by its credentials (SO_PEERCRED), not only by the socket file's mode: another
// process's user answers every request with "permission_denied", and the connection ends.
class ApiServer {
  public:
    ApiServer(std::string socket_path, std::vector<std::string> known_ops, ApiHandler handler,
              std::optional<gid_t> group = std::nullopt);
    ~ApiServer();  // stop()
    ApiServer(const ApiServer &) = delete;
    ApiServer &operator=(const ApiServer &) = delete;

    // Creates the parent directory (mode 0755) if missing, replaces a stale socket file, binds,
    // sets the socket's mode and starts serving. Throws std::system_error naming the path; if a
    // live server answers on the path: "another daemon is listening on <path>".
    void start();
    // Before start(): tests shorten the timeouts.
    void set_limits(const ApiServerLimits &limits) { limits_ = limits; }
    // Stops the thread, closes every connection and removes the socket file if this server
    // created it. Idempotent; safe after a failed start().
    void stop();

    const std::string &socket_path() const { return path_; }

  private:
    struct Client;

    void run();
    bool accept_clients(long long now_ms);  // false: out of resources, pause accepting
    long long deadline(const Client &c) const;
    void expire(Client &c);  // past its deadline: closed
    bool read_client(Client &c);
    bool write_client(Client &c);
    void handle_lines(Client &c);
    nlohmann::json handle_request(const std::string &line);
    void close_fds();

    std::string path_;
    std::vector<std::string> known_ops_;
    ApiHandler handler_;
    std::optional<gid_t> group_;
    ApiServerLimits limits_;

    // Owned by start()/stop() on the caller's thread; the server thread only reads them.
    int listen_fd_ = -1;
    int stop_fd_ = -1;  // eventfd, written by stop()
    bool bound_ = false;
    dev_t sock_dev_ = 0;
    ino_t sock_ino_ = 0;
    std::thread thread_;

    // Touched only by the server thread.
    std::vector<std::unique_ptr<Client>> clients_;
};

// A connection to an ApiServer. Connects on the first call and reuses the connection; not
// thread-safe. Every call must complete within timeout_ms. It talks only to a server run by
// root or by its own user (the listener's credentials, SO_PEERCRED): a socket someone else
// bound in the daemon's place is refused ("unavailable", naming the user).
class ApiClient {
  public:
    explicit ApiClient(std::string socket_path, int timeout_ms = 30000);
    ~ApiClient();
    ApiClient(const ApiClient &) = delete;
    ApiClient &operator=(const ApiClient &) = delete;

    // Sends one request and returns its result. Throws ApiError(code, message) for an error
    // reply, ApiConnectionError ("cannot connect to <path>: <strerror>", a timeout or a closed
    // connection) when the daemon cannot be reached, ApiError("internal") for a malformed reply.
    nlohmann::json call(const std::string &op, const nlohmann::json &args);

    const std::string &socket_path() const { return path_; }

  private:
    void connect_socket();
    void disconnect();
    enum class SendResult {
        kSent,
        kNothingSent,  // the peer was gone before the first byte: it did not see the request
        kCutShort,     // the peer stopped reading part way; its reply may still be readable
    };
    SendResult send_all(const std::string &data, long long deadline_ms);
    std::string read_line(long long deadline_ms);

    std::string path_;
    int timeout_ms_;
    int fd_ = -1;
    std::string in_;  // bytes received after the last complete reply
    uint64_t next_id_ = 1;
};

}  // namespace fwd::control
