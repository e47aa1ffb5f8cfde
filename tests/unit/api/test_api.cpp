// The control API transport (ApiServer, ApiClient) over a real unix socket in a private
// directory, and the fwdctl binary run against a server with a fake handler.
#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "fwd/control/api.hpp"

namespace fwd::control {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

const std::vector<std::string> kOps = {"echo",          "fail",         "boom",         "slow",
                                       "endpoint.list", "endpoint.get", "endpoint.add", "stats",
                                       "route.add",     "route.del",    "route.list",   "node.get",
                                       "neighbor.list", "tables",       "stats.stages"};

sockaddr_un unix_addr(const std::string &path) {
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
    return addr;
}

// A hand-driven connection for sending what ApiClient never would.
class RawConn {
  public:
    explicit RawConn(const std::string &path) {
        fd_ = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        const sockaddr_un addr = unix_addr(path);
        if (connect(fd_, reinterpret_cast<const sockaddr *>(&addr), sizeof(addr)) != 0) {
            throw std::system_error(errno, std::generic_category(), "connect " + path);
        }
    }
    ~RawConn() { close(fd_); }
    RawConn(const RawConn &) = delete;
    RawConn &operator=(const RawConn &) = delete;

    // Sends everything it can; false once the server has closed the connection.
    bool send_text(const std::string &data) {
        size_t sent = 0;
        while (sent < data.size()) {
            const ssize_t n = send(fd_, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
            if (n < 0) {
                return false;
            }
            sent += static_cast<size_t>(n);
        }
        return true;
    }

    // The next reply line; "" on EOF or after 5 s.
    std::string read_line() {
        for (;;) {
            if (const size_t nl = in_.find('\n'); nl != std::string::npos) {
                std::string line = in_.substr(0, nl);
                in_.erase(0, nl + 1);
                return line;
            }
            pollfd p{fd_, POLLIN, 0};
            if (poll(&p, 1, 5000) <= 0) {
                return "";
            }
            char buf[4096];
            const ssize_t n = recv(fd_, buf, sizeof(buf), 0);
            if (n <= 0) {
                return "";
            }
            in_.append(buf, static_cast<size_t>(n));
        }
    }

    json read_reply() {
        const std::string line = read_line();
        return line.empty() ? json() : json::parse(line);
    }

    // Reads and drops whatever comes until the server closes the connection: true, or false
    // if it is still open after 5 s of silence.
    bool drained_until_closed() {
        for (;;) {
            pollfd p{fd_, POLLIN, 0};
            if (poll(&p, 1, 5000) <= 0) {
                return false;
            }
            char buf[65536];
            if (recv(fd_, buf, sizeof(buf), 0) <= 0) {
                return true;
            }
        }
    }

    void shut_write() { shutdown(fd_, SHUT_WR); }

    // True if the server closed the connection (EOF within 5 s with nothing more to read).
    bool closed_by_server() {
        pollfd p{fd_, POLLIN, 0};
        if (poll(&p, 1, 5000) <= 0) {
            return false;
        }
        char c;
        return recv(fd_, &c, 1, 0) <= 0;
    }

  private:
    int fd_ = -1;
    std::string in_;
};

class ApiTest : public ::testing::Test {
  protected:
    void SetUp() override {
        char tmpl[] = "/tmp/fwd-api-test-XXXXXX";
        ASSERT_NE(mkdtemp(tmpl), nullptr);
        dir_ = tmpl;
        path_ = dir_ + "/api.sock";
        unsetenv("FWD_API_SOCKET");
    }

    void TearDown() override {
        server_.reset();
        std::filesystem::remove_all(dir_);
    }

    json handle(const std::string &op, const json &args) {
        const int now = ++in_handler_;
        int seen = max_in_handler_.load();
        while (now > seen && !max_in_handler_.compare_exchange_weak(seen, now)) {
        }
        struct Leave {
            std::atomic<int> &n;
            ~Leave() { --n; }
        } leave{in_handler_};
        {
            std::lock_guard lock(mu_);
            last_op_ = op;
            last_args_ = args;
        }
        if (op == "fail") {
            throw ApiError(args.at("code").get<std::string>(),
                           args.at("message").get<std::string>());
        }
        if (op == "boom") {
            throw std::runtime_error("kaboom");
        }
        if (op == "slow") {
            std::this_thread::sleep_for(std::chrono::milliseconds(args.value("ms", 300)));
            return json{{"slept", true}};
        }
        if (op == "endpoint.list") {
            return endpoint_list_;
        }
        if (op == "endpoint.add") {
            // As the daemon refuses a kind it does not know.
            const std::string kind = args.value("kind", "tap");
            if (kind != "tap" && kind != "vhost-user") {
                throw ApiError("invalid_argument",
                               "unknown port kind '" + kind + "' (known: tap, vhost-user)");
            }
        }
        if (op == "endpoint.get") {
            throw ApiError("not_found", "no endpoint '" + args.value("id", "") + "'");
        }
        if (op == "stats") {
            return stats_;
        }
        if (op == "stats.stages") {
            return json{{"stage_stats", args.at("enabled")}};
        }
        return json{{"op", op}, {"args", args}};
    }

    void start_server(std::optional<gid_t> group = std::nullopt,
                      const ApiServerLimits &limits = {}) {
        server_ = std::make_unique<ApiServer>(
            path_, kOps,
            [this](const std::string &op, const json &args) { return handle(op, args); }, group);
        server_->set_limits(limits);
        server_->start();
    }

    std::string dir_;
    std::string path_;
    std::unique_ptr<ApiServer> server_;
    std::atomic<int> in_handler_{0};
    std::atomic<int> max_in_handler_{0};
    std::mutex mu_;
    std::string last_op_;
    json last_args_;
    json endpoint_list_ = json{{"endpoints", json::array()}};
    json stats_ = json::object();
};

// Runs a call and returns the ApiError it throws (code "none" if it does not throw).
template <typename F>
ApiError api_error(F &&f) {
    try {
        f();
    } catch (const ApiError &e) {
        return e;
    }
    return ApiError("none", "");
}

// ---------------------------------------------------------------------------------------------
// Requests and replies

TEST_F(ApiTest, RoundTripsARequest) {
    start_server();
    ApiClient client(path_);
    const json result = client.call("echo", json{{"a", 1}, {"b", {"x", "y"}}});
    EXPECT_EQ(result, (json{{"op", "echo"}, {"args", {{"a", 1}, {"b", {"x", "y"}}}}}));
}

TEST_F(ApiTest, EchoesTheRequestId) {
    start_server();
    RawConn conn(path_);
    conn.send_text(R"({"id": {"x": [1, "two"]}, "op": "echo", "args": {}})"
                   "\n");
    json reply = conn.read_reply();
    EXPECT_EQ(reply["id"], (json{{"x", {1, "two"}}}));
    EXPECT_EQ(reply["ok"], true);
    EXPECT_EQ(reply["result"]["op"], "echo");

    conn.send_text(R"({"id": "abc", "op": "nope", "args": {}})"
                   "\n");
    reply = conn.read_reply();
    EXPECT_EQ(reply["id"], "abc");
    EXPECT_EQ(reply["ok"], false);

    conn.send_text(R"({"op": "echo", "args": {}})"
                   "\n");
    reply = conn.read_reply();
    EXPECT_TRUE(reply.contains("id"));
    EXPECT_TRUE(reply["id"].is_null());
}

TEST_F(ApiTest, HandlerApiErrorKeepsCodeAndMessage) {
    start_server();
    ApiClient client(path_);
    const ApiError e = api_error([&] {
        client.call("fail", json{{"code", "not_found"}, {"message", "no endpoint 'pod-a'"}});
    });
    EXPECT_EQ(e.code(), "not_found");
    EXPECT_STREQ(e.what(), "no endpoint 'pod-a'");

    RawConn conn(path_);
    conn.send_text(
        R"({"id": 7, "op": "fail", "args": {"code": "already_exists", "message": "dup"}})"
        "\n");
    EXPECT_EQ(conn.read_reply(),
              (json{{"id", 7},
                    {"ok", false},
                    {"error", {{"code", "already_exists"}, {"message", "dup"}}}}));
}

TEST_F(ApiTest, OtherExceptionsAreInternal) {
    start_server();
    ApiClient client(path_);
    const ApiError e = api_error([&] { client.call("boom", json::object()); });
    EXPECT_EQ(e.code(), "internal");
    EXPECT_STREQ(e.what(), "kaboom");
    EXPECT_EQ(client.call("echo", json::object())["op"], "echo");  // still serving
}

TEST_F(ApiTest, UnknownOpListsTheKnownOps) {
    start_server();
    ApiClient client(path_);
    const ApiError e = api_error([&] { client.call("ipam.allocate", json::object()); });
    EXPECT_EQ(e.code(), "unknown_op");
    const std::string msg = e.what();
    EXPECT_NE(msg.find("'ipam.allocate'"), std::string::npos) << msg;
    EXPECT_NE(msg.find("echo, fail, boom, slow, endpoint.list"), std::string::npos) << msg;
    EXPECT_EQ(last_op_, "");  // the handler never saw it
}

TEST_F(ApiTest, GarbageIsABadRequestAndOthersAreStillServed) {
    start_server();
    RawConn bad(path_);
    ApiClient good(path_);
    EXPECT_EQ(good.call("echo", json::object())["op"], "echo");

    bad.send_text("this is not json\n");
    json reply = bad.read_reply();
    EXPECT_EQ(reply["ok"], false);
    EXPECT_EQ(reply["error"]["code"], "bad_request");
    EXPECT_NE(reply["error"]["message"].get<std::string>().find("not valid JSON"),
              std::string::npos);

    bad.send_text("[1, 2]\n");
    reply = bad.read_reply();
    EXPECT_EQ(reply["error"]["code"], "bad_request");
    EXPECT_NE(reply["error"]["message"].get<std::string>().find("object"), std::string::npos);

    bad.send_text(std::string("\xff\xfe\x00{\n", 5));
    EXPECT_EQ(bad.read_reply()["error"]["code"], "bad_request");

    // Deep nesting must not exhaust the server's stack.
    bad.send_text(R"({"op": "echo", "args": {}, "id": )" + std::string(100000, '[') + "\n");
    EXPECT_EQ(bad.read_reply()["error"]["code"], "bad_request");

    // The same connection and another one both keep working.
    bad.send_text(R"({"id": 1, "op": "echo", "args": {}})"
                  "\n");
    EXPECT_EQ(bad.read_reply()["ok"], true);
    EXPECT_EQ(good.call("echo", json::object())["op"], "echo");
}

TEST_F(ApiTest, EnvelopeShapeIsChecked) {
    start_server();
    RawConn conn(path_);
    const auto expect_bad = [&](const std::string &line, const std::string &mentions) {
        conn.send_text(line + "\n");
        const json reply = conn.read_reply();
        EXPECT_EQ(reply["error"]["code"], "bad_request") << line;
        EXPECT_NE(reply["error"]["message"].get<std::string>().find(mentions), std::string::npos)
            << line << " -> " << reply.dump();
    };
    expect_bad(R"({"id": 1, "op": "echo"})", "\"args\"");
    expect_bad(R"({"id": 1, "op": "echo", "args": [1]})", "\"args\" must be an object");
    expect_bad(R"({"id": 1, "op": "echo", "args": "x"})", "\"args\" must be an object");
    expect_bad(R"({"id": 1, "op": "echo", "args": null})", "\"args\" must be an object");
    expect_bad(R"({"id": 1, "args": {}})", "\"op\"");
    expect_bad(R"({"id": 1, "op": 5, "args": {}})", "\"op\" must be a string");
    EXPECT_EQ(last_op_, "");
}

TEST_F(ApiTest, SeveralRequestsOnOneConnection) {
    start_server();
    RawConn conn(path_);
    // Three requests in one write, then one split across writes.
    conn.send_text(R"({"id": 1, "op": "echo", "args": {"n": 1}})"
                   "\n"
                   R"({"id": 2, "op": "nope", "args": {}})"
                   "\n"
                   "\n"
                   R"({"id": 3, "op": "echo", "args": {"n": 3}})"
                   "\n");
    EXPECT_EQ(conn.read_reply()["id"], 1);
    EXPECT_EQ(conn.read_reply()["id"], 2);
    const json third = conn.read_reply();
    EXPECT_EQ(third["id"], 3);
    EXPECT_EQ(third["result"]["args"]["n"], 3);

    conn.send_text(R"({"id": 4, "op": "ec)");
    std::this_thread::sleep_for(50ms);
    conn.send_text(R"(ho", "args": {"n": 4}})"
                   "\n");
    EXPECT_EQ(conn.read_reply()["result"]["args"]["n"], 4);

    ApiClient client(path_);
    for (int i = 0; i < 20; i++) {
        EXPECT_EQ(client.call("echo", json{{"i", i}})["args"]["i"], i);
    }
}

TEST_F(ApiTest, ConcurrentClientsAreServedOneRequestAtATime) {
    start_server();
    // A client stuck in the middle of a line must not hold up the others.
    RawConn half(path_);
    half.send_text(R"({"id": 1, "op": "ec)");

    std::atomic<int> failures{0};
    const auto worker = [&](int who) {
        ApiClient client(path_);
        for (int i = 0; i < 200; i++) {
            const json r = client.call("echo", json{{"who", who}, {"i", i}});
            if (r["args"] != json{{"who", who}, {"i", i}}) {
                failures++;
            }
        }
    };
    std::thread a(worker, 1);
    std::thread b(worker, 2);
    a.join();
    b.join();
    EXPECT_EQ(failures, 0);
    EXPECT_EQ(max_in_handler_, 1);

    half.send_text(R"(ho", "args": {}})"
                   "\n");
    EXPECT_EQ(half.read_reply()["ok"], true);
}

TEST_F(ApiTest, OverlongLineIsRefusedAndTheConnectionClosed) {
    start_server();
    {
        RawConn conn(path_);
        conn.send_text(std::string(kMaxApiLine + 100, 'a'));  // no newline in sight
        const json reply = conn.read_reply();
        EXPECT_EQ(reply["error"]["code"], "bad_request");
        EXPECT_NE(reply["error"]["message"].get<std::string>().find("longer than"),
                  std::string::npos);
        EXPECT_TRUE(conn.closed_by_server());
    }
    {
        // A line just at the limit is still fine.
        RawConn conn(path_);
        const std::string head = R"({"id": 9, "op": "echo", "args": {"pad": ")";
        const std::string tail = R"("}})";
        conn.send_text(head + std::string(kMaxApiLine - head.size() - tail.size(), 'x') + tail +
                       "\n");
        EXPECT_EQ(conn.read_reply()["id"], 9);
    }

    // Through ApiClient: the error is reported, and the next call reconnects.
    ApiClient client(path_);
    EXPECT_EQ(client.call("echo", json::object())["op"], "echo");
    const ApiError e = api_error([&] {
        client.call("echo", json{{"blob", std::string(kMaxApiLine + 1, 'b')}});
    });
    EXPECT_EQ(e.code(), "bad_request");
    EXPECT_EQ(client.call("echo", json{{"after", true}})["args"]["after"], true);
}

TEST_F(ApiTest, ClientsThatVanishDoNotHurtTheServer) {
    start_server();
    {
        RawConn conn(path_);
        conn.send_text(R"({"id": 1, "op": "echo", "ar)");  // gone mid-line
    }
    {
        // Gone with replies still to send: the server's writes hit EPIPE.
        RawConn conn(path_);
        std::string many;
        for (int i = 0; i < 2000; i++) {
            many += R"({"id": 1, "op": "echo", "args": {"pad": "................"}})"
                    "\n";
        }
        conn.send_text(many);
    }
    std::this_thread::sleep_for(100ms);
    ApiClient client(path_);
    EXPECT_EQ(client.call("echo", json::object())["op"], "echo");
}

TEST_F(ApiTest, ClientTimesOutAndRecovers) {
    start_server();
    ApiClient client(path_, 100);
    EXPECT_THROW(client.call("slow", json{{"ms", 400}}), ApiConnectionError);
    std::this_thread::sleep_for(400ms);
    // The late reply to the timed-out call must not be taken for this one's.
    EXPECT_EQ(client.call("echo", json{{"n", 2}})["args"]["n"], 2);
}

// A client that sends part of a request and stalls, or never reads its replies, is served no
// longer than the stall limit; others are answered meanwhile, without waiting for it.
TEST_F(ApiTest, StalledClientsAreClosedAndDoNotDelayOthers) {
    ApiServerLimits limits;
    limits.stall_ms = 1000;
    start_server(std::nullopt, limits);
    RawConn partial(path_);
    partial.send_text(R"({"id": 1, "op": "echo", "ar)");  // and then nothing
    RawConn deaf(path_);
    std::thread sender([&] {
        // Replies far beyond what the socket buffers hold, none of them read: the server stops
        // reading this client, and its send blocks until the server gives up on it.
        const std::string line =
            R"({"id": 1, "op": "echo", "args": {"pad": ")" + std::string(1000, 'x') + "\"}}\n";
        for (int i = 0; i < 2000 && deaf.send_text(line); i++) {
        }
    });
    const auto start = std::chrono::steady_clock::now();
    ApiClient client(path_);
    for (int i = 0; i < 20; i++) {
        EXPECT_EQ(client.call("echo", json{{"n", i}})["args"]["n"], i);
    }
    EXPECT_LT(std::chrono::steady_clock::now() - start, 900ms) << "others waited on the stalled";

    const json reply = partial.read_reply();
    EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
    EXPECT_EQ(reply["error"]["code"], "bad_request") << reply.dump();
    EXPECT_NE(reply["error"]["message"].get<std::string>().find(
                  "request not completed within 1000 ms; closing the connection"),
              std::string::npos)
        << reply.dump();
    EXPECT_TRUE(partial.closed_by_server());
    sender.join();  // the server closed the deaf client: its send failed
    EXPECT_TRUE(deaf.drained_until_closed());
    EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

// More idle or half-sent connections than the server keeps (128) must not lock a real client
// out: the one quiet the longest makes room. Before, every connection past 128 was closed at
// once, so 128 silent connections from any local process kept fwdctl and the CNI plugin out.
TEST_F(ApiTest, IdleConnectionsCannotLockClientsOut) {
    start_server();
    std::vector<std::unique_ptr<RawConn>> hogs;
    for (int i = 0; i < 300; i++) {
        hogs.push_back(std::make_unique<RawConn>(path_));
        if (i % 2 == 1) {
            hogs.back()->send_text(R"({"id": 1, "op")");
        }
    }
    ApiClient client(path_, 5000);
    EXPECT_EQ(client.call("echo", json{{"n", 1}})["args"]["n"], 1);
    EXPECT_EQ(client.call("echo", json{{"n", 2}})["args"]["n"], 2);
    EXPECT_TRUE(hogs.front()->closed_by_server());  // the oldest made room
}

// A connection that sends nothing is closed after the idle limit; ApiClient, whose kept
// connection that was, reconnects on its next call without an error.
TEST_F(ApiTest, IdleConnectionsAreClosedAndClientsReconnect) {
    ApiServerLimits limits;
    limits.idle_ms = 200;
    start_server(std::nullopt, limits);
    ApiClient client(path_);
    EXPECT_EQ(client.call("echo", json{{"n", 1}})["args"]["n"], 1);
    RawConn idle(path_);
    const auto start = std::chrono::steady_clock::now();
    EXPECT_TRUE(idle.closed_by_server());
    EXPECT_GE(std::chrono::steady_clock::now() - start, 150ms);
    std::this_thread::sleep_for(100ms);  // the client's kept connection is closed by now too
    EXPECT_EQ(client.call("echo", json{{"n", 2}})["args"]["n"], 2);
}

// What the fuzzer does (tests/fuzz/fuzz_api): thousands of connections, one after the other,
// each with garbage, half a request or a request cut by the client. None leaves a descriptor
// behind, and a normal call is answered at once after them.
TEST_F(ApiTest, ThousandsOfGarbageConnectionsLeaveNothingBehind) {
    start_server();
    auto open_fds = [] {
        return std::distance(std::filesystem::directory_iterator("/proc/self/fd"),
                             std::filesystem::directory_iterator());
    };
    const auto before = open_fds();
    const std::vector<std::string> inputs = {
        "[1,2]\x1a{\"3i:d\",\"op\"0000:\"e}\n\n   \nz\"id\":4,\"op\":5,\"arg\n",
        "{\"id\":",
        std::string("\0\0\0]}\n", 6),
        "{\"id\": 1, \"op\": \"echo\", \"args\": {}}\n{\"id\": 2",
        "\n\n\n",
        ""};
    for (int i = 0; i < 3000; i++) {
        RawConn conn(path_);
        conn.send_text(inputs[static_cast<size_t>(i) % inputs.size()]);
        if (i % 3 != 0) {
            conn.shut_write();  // as the fuzzer: all sent, now the replies
            EXPECT_TRUE(conn.drained_until_closed()) << i;
        }  // else: gone without reading
    }
    const auto start = std::chrono::steady_clock::now();
    ApiClient client(path_);
    EXPECT_EQ(client.call("echo", json{{"n", 1}})["args"]["n"], 1);
    EXPECT_LT(std::chrono::steady_clock::now() - start, 1s);
    // The server closes what the clients left; give it a moment to notice the last ones.
    for (int i = 0; i < 100 && open_fds() > before + 2; i++) {
        std::this_thread::sleep_for(10ms);
    }
    EXPECT_LE(open_fds(), before + 2);  // + the client's connection, both ends
}

TEST_F(ApiTest, ClientWithoutServerIsUnavailable) {
    ApiClient client(path_);
    try {
        client.call("echo", json::object());
        FAIL() << "call succeeded without a server";
    } catch (const ApiConnectionError &e) {
        EXPECT_EQ(e.code(), "unavailable");
        EXPECT_EQ(std::string(e.what()),
                  "cannot connect to " + path_ + ": " + std::strerror(ENOENT));
    }
}

// ---------------------------------------------------------------------------------------------
// The socket file

TEST_F(ApiTest, SocketHasTheRequestedMode) {
    start_server();
    struct stat st {};
    ASSERT_EQ(stat(path_.c_str(), &st), 0);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(st.st_mode & 07777, 0600u);
    server_.reset();

    start_server(gid_t{4321});
    ASSERT_EQ(stat(path_.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 07777, 0660u);
    EXPECT_EQ(st.st_gid, 4321u);
}

// Runs f in a child process as uid / gid (the test runs as root) and returns its exit code.
template <typename F>
int as_user(uid_t uid, gid_t gid, F &&f) {
    const pid_t pid = fork();
    if (pid == 0) {
        if (setgroups(0, nullptr) != 0 || setgid(gid) != 0 || setuid(uid) != 0) {
            _exit(100);
        }
        _exit(f());
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 200;
}

constexpr uid_t kNobody = 65534;

// The peer's credentials are checked, not only the file's mode: with the socket opened to
// everyone (an operator's chmod), another user is still answered "permission_denied" and
// cut off; a member of the API's group is served.
TEST_F(ApiTest, PeersOtherThanRootTheDaemonAndItsGroupAreRefused) {
    if (geteuid() != 0) {
        GTEST_SKIP() << "needs root to run a client as another user";
    }
    ASSERT_EQ(chmod(dir_.c_str(), 0755), 0);
    start_server(gid_t{4321});
    ASSERT_EQ(chmod(path_.c_str(), 0666), 0);
    auto call_echo = [this] {
        try {
            ApiClient c(path_, 5000);
            return c.call("echo", json::object())["op"] == "echo" ? 0 : 1;
        } catch (const ApiError &e) {
            const bool named =
                std::string(e.what()).find("uid 65534 may not use") != std::string::npos;
            return e.code() == "permission_denied" && named ? 2 : 3;
        }
    };
    EXPECT_EQ(as_user(kNobody, kNobody, call_echo), 2);
    EXPECT_EQ(as_user(kNobody, 4321, call_echo), 0);  // the API's group
    // The server keeps serving root.
    EXPECT_EQ(ApiClient(path_).call("echo", json::object())["op"], "echo");
}

// A client talks only to a server run by root or its own user: a socket another user bound
// on the path is refused before any request is sent.
TEST_F(ApiTest, ClientRefusesAServerRunByAnotherUser) {
    if (geteuid() != 0) {
        GTEST_SKIP() << "needs root to run a server as another user";
    }
    ASSERT_EQ(chmod(dir_.c_str(), 0755), 0);
    const std::string sub = dir_ + "/nobody";
    ASSERT_EQ(mkdir(sub.c_str(), 0755), 0);
    ASSERT_EQ(chown(sub.c_str(), kNobody, kNobody), 0);
    path_ = sub + "/api.sock";
    int ready[2];
    ASSERT_EQ(pipe(ready), 0);
    const pid_t pid = fork();
    if (pid == 0) {
        close(ready[0]);
        if (setgroups(0, nullptr) != 0 || setgid(kNobody) != 0 || setuid(kNobody) != 0) {
            _exit(100);
        }
        const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        sockaddr_un addr{};
        addr.sun_family = AF_UNIX;
        std::strncpy(addr.sun_path, path_.c_str(), sizeof(addr.sun_path) - 1);
        if (bind(fd, reinterpret_cast<sockaddr *>(&addr), sizeof(addr)) != 0 ||
            chmod(path_.c_str(), 0666) != 0 || listen(fd, 4) != 0) {
            _exit(101);
        }
        const char one = 1;
        (void)!write(ready[1], &one, 1);
        pause();
        _exit(0);
    }
    close(ready[1]);
    char one = 0;
    ASSERT_EQ(read(ready[0], &one, 1), 1);
    close(ready[0]);
    const ApiError e = api_error([&] { ApiClient(path_, 2000).call("echo", json::object()); });
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    EXPECT_EQ(e.code(), "unavailable");
    EXPECT_NE(std::string(e.what()).find("its server runs as uid 65534, not root"),
              std::string::npos)
        << e.what();
}

TEST_F(ApiTest, CreatesMissingParentDirectories) {
    path_ = dir_ + "/run/dpdk-fwd/api.sock";
    start_server();
    struct stat st {};
    ASSERT_EQ(stat((dir_ + "/run/dpdk-fwd").c_str(), &st), 0);
    EXPECT_TRUE(S_ISDIR(st.st_mode));
    EXPECT_EQ(st.st_mode & 07777, 0755u);
    EXPECT_EQ(ApiClient(path_).call("echo", json::object())["op"], "echo");
}

TEST_F(ApiTest, SecondServerOnALivePathIsRefused) {
    start_server();
    ApiServer second(path_, kOps, [](const std::string &, const json &) { return json(); });
    try {
        second.start();
        FAIL() << "second server started";
    } catch (const std::system_error &e) {
        EXPECT_NE(std::string(e.what()).find("another daemon is listening on " + path_),
                  std::string::npos)
            << e.what();
    }
    second.stop();
    // The failed server left the live one's socket alone.
    EXPECT_EQ(ApiClient(path_).call("echo", json::object())["op"], "echo");
}

TEST_F(ApiTest, StaleSocketIsReplaced) {
    {
        // A socket file whose server is gone, as a crashed daemon leaves it.
        const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
        const sockaddr_un addr = unix_addr(path_);
        ASSERT_EQ(bind(fd, reinterpret_cast<const sockaddr *>(&addr), sizeof(addr)), 0);
        close(fd);
    }
    start_server();
    EXPECT_EQ(ApiClient(path_).call("echo", json::object())["op"], "echo");
}

TEST_F(ApiTest, RefusesToReplaceAFileThatIsNotASocket) {
    std::ofstream(path_) << "precious";
    ApiServer server(path_, kOps, [](const std::string &, const json &) { return json(); });
    EXPECT_THROW(server.start(), std::system_error);
    server.stop();
    std::ifstream in(path_);
    std::string content;
    in >> content;
    EXPECT_EQ(content, "precious");
}

TEST_F(ApiTest, StopRemovesTheSocket) {
    start_server();
    ApiClient client(path_);
    EXPECT_EQ(client.call("echo", json::object())["op"], "echo");  // a connection is open
    server_->stop();
    EXPECT_FALSE(std::filesystem::exists(path_));
    server_->stop();  // idempotent
    EXPECT_THROW(client.call("echo", json::object()), ApiConnectionError);

    server_->start();  // and restartable
    EXPECT_EQ(client.call("echo", json::object())["op"], "echo");
}

// ---------------------------------------------------------------------------------------------
// fwdctl, the built binary

struct CliRun {
    int status = -1;
    std::string out;
    std::string err;
};

class FwdctlTest : public ApiTest {
  protected:
    CliRun fwdctl(const std::vector<std::string> &args, const std::string &env = "") {
        std::string cmd = env + " " FWDCTL_PATH;
        for (const auto &a : args) {
            cmd += " '" + a + "'";
        }
        const std::string out = dir_ + "/out", err = dir_ + "/err";
        cmd += " >" + out + " 2>" + err;
        const int rc = std::system(cmd.c_str());
        CliRun run;
        run.status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
        run.out = slurp(out);
        run.err = slurp(err);
        return run;
    }

    CliRun fwdctl_s(std::vector<std::string> args) {
        args.insert(args.begin(), {"-s", path_});
        return fwdctl(args);
    }

    static std::string slurp(const std::string &path) {
        std::ifstream in(path);
        std::stringstream ss;
        ss << in.rdbuf();
        return ss.str();
    }

    const json kEndpoints = json{{"endpoints",
                                  {{{"id", "pod-a"},
                                    {"kind", "tap"},
                                    {"netns", "/var/run/netns/a"},
                                    {"ifname", "eth0"},
                                    {"ipv4", "10.0.0.2"},
                                    {"ipv6", "fd00::2"},
                                    {"mac", "02:00:00:00:00:0a"},
                                    {"mtu", 1500},
                                    {"port_id", 3},
                                    {"worker", 0},
                                    {"host_ifname", "fwdp3"},
                                    {"vhost_socket", nullptr}},
                                   {{"id", "pod-long-name"},
                                    {"kind", "vhost-user"},
                                    {"netns", "/proc/42/ns/net"},
                                    {"ifname", "eth1"},
                                    {"ipv4", nullptr},
                                    {"ipv6", "fd00::1:17"},
                                    {"mac", "02:00:00:00:00:0b"},
                                    {"mtu", 9000},
                                    {"port_id", 12},
                                    {"worker", 1}}}}};
};

TEST_F(FwdctlTest, EndpointListAsATable) {
    endpoint_list_ = kEndpoints;
    start_server();
    const CliRun run = fwdctl_s({"endpoint", "list"});
    EXPECT_EQ(run.status, 0) << run.err;
    EXPECT_EQ(run.out,
              "ID             KIND        NETNS             IFNAME  IPV4      IPV6        "
              "MAC                 MTU  PORT  WORKER\n"
              "pod-a          tap         /var/run/netns/a  eth0    10.0.0.2  fd00::2     "
              "02:00:00:00:00:0a  1500     3       0\n"
              "pod-long-name  vhost-user  /proc/42/ns/net   eth1    -         fd00::1:17  "
              "02:00:00:00:00:0b  9000    12       1\n");
    EXPECT_EQ(run.err, "");
    EXPECT_EQ(last_op_, "endpoint.list");
    EXPECT_EQ(last_args_, json::object());
}

TEST_F(FwdctlTest, EndpointListAsJson) {
    endpoint_list_ = kEndpoints;
    start_server();
    for (const auto &args : {std::vector<std::string>{"--json", "endpoint", "list"},
                             std::vector<std::string>{"endpoint", "list", "--json"}}) {
        const CliRun run = fwdctl_s(args);
        EXPECT_EQ(run.status, 0) << run.err;
        EXPECT_EQ(json::parse(run.out), kEndpoints);
        EXPECT_EQ(run.out, kEndpoints.dump(2) + "\n");  // pretty
    }
}

TEST_F(FwdctlTest, EndpointAddSendsOnlyTheGivenOptions) {
    start_server();
    const CliRun run =
        fwdctl_s({"endpoint",       "add",         "--id",         "pod-a",
                  "--netns",        "ns1",         "--ipv4",       "10.0.0.2",
                  "--ipv6",         "fd00::2",     "--kind",       "vhost-user",
                  "--mtu",          "1400",        "--mac",        "02:00:00:00:00:01",
                  "--vhost-socket", "/run/v.sock", "--vhost-mode", "client"});
    EXPECT_EQ(run.status, 0) << run.err;
    EXPECT_EQ(last_op_, "endpoint.add");
    EXPECT_EQ(last_args_, (json{{"id", "pod-a"},
                                {"netns", "ns1"},
                                {"ipv4", "10.0.0.2"},
                                {"ipv6", "fd00::2"},
                                {"kind", "vhost-user"},
                                {"mtu", 1400},
                                {"mac", "02:00:00:00:00:01"},
                                {"vhost_socket", "/run/v.sock"},
                                {"vhost_mode", "client"}}));

    fwdctl_s({"endpoint", "add", "--id", "b", "--netns", "/proc/1/ns/net", "--ifname", "net1",
              "--ipv4", "10.0.0.3"});
    EXPECT_EQ(
        last_args_,
        (json{{"id", "b"}, {"netns", "/proc/1/ns/net"}, {"ifname", "net1"}, {"ipv4", "10.0.0.3"}}));
}

TEST_F(FwdctlTest, DaemonErrorExitsOneWithTheMessage) {
    start_server();
    const CliRun run = fwdctl_s({"endpoint", "get", "--id", "nope"});
    EXPECT_EQ(run.status, 1);
    EXPECT_EQ(run.err, "fwdctl: not_found: no endpoint 'nope'\n");
    EXPECT_EQ(run.out, "");
}

TEST_F(FwdctlTest, NoDaemonExitsThreeWithAHint) {
    CliRun run = fwdctl_s({"endpoint", "list"});
    EXPECT_EQ(run.status, 3);
    EXPECT_NE(run.err.find("fwdctl: unavailable: cannot connect to " + path_), std::string::npos)
        << run.err;
    EXPECT_NE(run.err.find("is dpdk-fwd running?"), std::string::npos) << run.err;

    // The socket also comes from the environment.
    start_server();
    run = fwdctl({"endpoint", "list"}, "FWD_API_SOCKET=" + path_);
    EXPECT_EQ(run.status, 0) << run.err;
}

TEST_F(FwdctlTest, UsageErrorsExitTwo) {
    start_server();
    EXPECT_EQ(fwdctl_s({"endpoint", "add", "--netns", "ns1"}).status, 2);  // no --id
    EXPECT_EQ(fwdctl_s({"endpoint", "add", "--id", "a", "--netns", "n", "--mtu", "big"}).status, 2);
    EXPECT_EQ(fwdctl_s({"endpoint"}).status, 2);
    EXPECT_EQ(fwdctl_s({"frobnicate"}).status, 2);
    EXPECT_EQ(fwdctl_s({}).status, 2);
    EXPECT_EQ(last_op_, "");
}

// Port kinds are the daemon's: fwdctl sends any --kind, and the daemon's refusal (which names
// the kinds it knows) reaches the user as any daemon error does.
TEST_F(FwdctlTest, UnknownKindIsTheDaemonsToRefuse) {
    start_server();
    const CliRun run = fwdctl_s({"endpoint", "add", "--id", "a", "--netns", "n", "--kind", "veth"});
    EXPECT_EQ(last_op_, "endpoint.add");
    EXPECT_EQ(last_args_, (json{{"id", "a"}, {"netns", "n"}, {"kind", "veth"}}));
    EXPECT_EQ(run.status, 1);
    EXPECT_EQ(run.err,
              "fwdctl: invalid_argument: unknown port kind 'veth' (known: tap, vhost-user)\n");
    EXPECT_EQ(run.out, "");
}

TEST_F(FwdctlTest, RouteCommandsSendWhatWasGiven) {
    start_server();
    CliRun run = fwdctl_s({"route", "add", "10.244.2.0/26", "--via", "10.0.0.2"});
    EXPECT_EQ(run.status, 0) << run.err;
    EXPECT_EQ(last_op_, "route.add");
    EXPECT_EQ(last_args_, (json{{"prefix", "10.244.2.0/26"}, {"via", "10.0.0.2"}}));

    run = fwdctl_s({"route", "add", "fd00::/64", "--via", "fd00:1::1", "--via", "fd00:1::2",
                    "--source", "ipam"});
    EXPECT_EQ(run.status, 0) << run.err;
    EXPECT_EQ(
        last_args_,
        (json{{"prefix", "fd00::/64"}, {"via", {"fd00:1::1", "fd00:1::2"}}, {"source", "ipam"}}));

    fwdctl_s({"route", "add", "10.9.0.0/16", "--via", "10.0.0.1", "--mac", "02:00:00:00:00:09"});
    EXPECT_EQ(last_args_,
              (json{{"prefix", "10.9.0.0/16"}, {"via", "10.0.0.1"}, {"mac", "02:00:00:00:00:09"}}));
    fwdctl_s({"route", "add", "10.8.0.0/16", "--blackhole"});
    EXPECT_EQ(last_args_, (json{{"prefix", "10.8.0.0/16"}, {"type", "blackhole"}}));

    const std::string file = dir_ + "/routes.json";
    {
        std::ofstream f(file);
        f << R"([{"prefix": "10.1.0.0/16", "type": "unreachable"}])";
    }
    fwdctl_s({"route", "add", "--file", file});
    EXPECT_EQ(last_args_,
              (json{{"routes", {{{"prefix", "10.1.0.0/16"}, {"type", "unreachable"}}}}}));

    fwdctl_s({"route", "del", "10.8.0.0/16"});
    EXPECT_EQ(last_op_, "route.del");
    EXPECT_EQ(last_args_, (json{{"prefix", "10.8.0.0/16"}}));

    fwdctl_s({"route", "list", "--source", "bgp", "--family", "ipv6", "--limit", "5"});
    EXPECT_EQ(last_op_, "route.list");
    EXPECT_EQ(last_args_, (json{{"source", "bgp"}, {"family", "ipv6"}, {"limit", 5}}));

    for (auto [cmd, op] : {std::pair<std::vector<std::string>, std::string>{{"node"}, "node.get"},
                           {{"neighbor", "list"}, "neighbor.list"},
                           {{"tables"}, "tables"}}) {
        run = fwdctl_s(cmd);
        EXPECT_EQ(run.status, 0) << run.err;
        EXPECT_EQ(last_op_, op);
        EXPECT_EQ(last_args_, json::object());
    }
}

TEST_F(FwdctlTest, RouteUsageErrorsExitTwoAndSendNothing) {
    start_server();
    EXPECT_EQ(fwdctl_s({"route", "add", "10.0.0.0/8"}).status, 2);  // no target
    EXPECT_EQ(fwdctl_s({"route", "add", "10.0.0.0/8", "--via", "1.1.1.1", "--blackhole"}).status,
              2);
    EXPECT_EQ(fwdctl_s({"route", "add", "--via", "1.1.1.1"}).status, 2);  // no prefix
    EXPECT_EQ(fwdctl_s({"route", "add", "10.0.0.0/8", "--blackhole", "--source", "bgp"}).status, 2);
    EXPECT_EQ(fwdctl_s({"route", "add", "--file", dir_ + "/missing.json"}).status, 2);
    EXPECT_EQ(fwdctl_s({"route", "list", "--family", "ipv5"}).status, 2);
    EXPECT_EQ(last_op_, "");
}

TEST_F(FwdctlTest, StatsShowsTablesAndOnlyNonZeroDrops) {
    stats_ = json{{"ports",
                   {{{"port_id", 0},
                     {"name", "uplink"},
                     {"kind", "uplink"},
                     {"rx_packets", 10},
                     {"rx_bytes", 1000},
                     {"tx_packets", 20},
                     {"tx_bytes", 2000},
                     {"rx_missed", 0},
                     {"tx_errors", 1},
                     {"link", {{"up", true}, {"events", 1}}}}}},
                  {"workers",
                   {{{"worker", 0},
                     {"core", 2},
                     {"rx_packets", 10},
                     {"tx_packets", 20},
                     {"busy_polls", 5},
                     {"idle_polls", 100},
                     {"sleeps", 7},
                     {"rx_queues", 2}}}},
                  {"drops", {{"no_route", 3}, {"ttl_exceeded", 9}, {"bad_csum", 0}, {"acl", 3}}},
                  {"icmp_errors_sent", 4}};
    start_server();
    const CliRun run = fwdctl_s({"stats"});
    EXPECT_EQ(run.status, 0) << run.err;
    EXPECT_EQ(run.out,
              "PORT  NAME    KIND    RX-PACKETS  RX-BYTES  TX-PACKETS  TX-BYTES  RX-MISSED  "
              "TX-ERRORS  LINK\n"
              "   0  uplink  uplink          10      1000          20      2000          0  "
              "        1  up\n"
              "\n"
              "WORKER  CORE  RX-PACKETS  TX-PACKETS  BUSY-POLLS  IDLE-POLLS  SLEEPS  RX-QUEUES\n"
              "     0     2          10          20           5         100       7          2\n"
              "\n"
              "DROP-REASON   PACKETS\n"
              "ttl_exceeded        9\n"
              "acl                 3\n"
              "no_route            3\n"
              "\n"
              "ICMP errors sent: 4\n");
}

TEST_F(FwdctlTest, StatsStagesShowsWhereCyclesGo) {
    const auto stage = [](int calls, int packets, int cycles) {
        return json{{"calls", calls}, {"packets", packets}, {"cycles", cycles}};
    };
    stats_ = json{{"tsc_hz", 2000000000},
                  {"stage_stats", true},
                  {"workers",
                   {{{"worker", 0},
                     {"rx_packets", 5000},  // since the start: not the base of per-packet figures
                     {"busy_loops", 10},
                     {"busy_cycles", 10000},
                     {"stages",
                      {{"rx", stage(10, 100, 1000)},
                       {"eth_input", stage(10, 100, 2000)},
                       {"ip4_input", stage(10, 60, 1500)},
                       {"l2_rewrite4", stage(10, 60, 3000)},
                       {"tx", stage(5, 100, 1000)},
                       {"arp_input", stage(0, 0, 0)}}}}}}};
    start_server();
    const CliRun run = fwdctl_s({"stats", "--stages"});
    EXPECT_EQ(run.status, 0) << run.err;
    EXPECT_EQ(last_op_, "stats");
    EXPECT_EQ(run.out,
              "stage stats on, TSC 2000.0 MHz\n"
              "\n"
              "worker 0: 100 packets in 10 busy loops, 10000 cycles, 100.0 cycles/packet\n"
              "STAGE         CALLS  PACKETS  CYCLES/PKT  CYCLES/RX-PKT  SHARE\n"
              "l2_rewrite4      10       60        50.0           30.0  30.0%\n"
              "eth_input        10      100        20.0           20.0  20.0%\n"
              "ip4_input        10       60        25.0           15.0  15.0%\n"
              "rx               10      100        10.0           10.0  10.0%\n"
              "tx                5      100        10.0           10.0  10.0%\n"
              "unattributed                                       15.0  15.0%\n");
}

TEST_F(FwdctlTest, StatsStagesOnOffSendsTheOp) {
    start_server();
    CliRun run = fwdctl_s({"stats", "stages", "on"});
    EXPECT_EQ(run.status, 0) << run.err;
    EXPECT_EQ(last_op_, "stats.stages");
    EXPECT_EQ(last_args_, (json{{"enabled", true}}));
    EXPECT_EQ(run.out, "stage stats on\n");
    run = fwdctl_s({"stats", "stages", "off"});
    EXPECT_EQ(run.status, 0) << run.err;
    EXPECT_EQ(last_args_, (json{{"enabled", false}}));
    EXPECT_EQ(run.out, "stage stats off\n");

    last_op_.clear();
    EXPECT_EQ(fwdctl_s({"stats", "stages"}).status, 2);
    EXPECT_EQ(fwdctl_s({"stats", "stages", "maybe"}).status, 2);
    EXPECT_EQ(last_op_, "");
}

}  // namespace
}  // namespace fwd::control
