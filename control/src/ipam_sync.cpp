// The node's IPAM routes into the dataplane and BIRD (see ipam_sync.hpp).
#include "fwd/control/ipam_sync.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "fwd/control/log.hpp"

extern char **environ;

namespace fwd::control {

namespace {

int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
}

std::string errno_str(const std::string &what) {
    return what + ": " + std::strerror(errno);
}

}  // namespace

std::pair<int, std::string> run_capture(const std::vector<std::string> &argv, int timeout_ms) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) {
        throw std::runtime_error(errno_str("pipe"));
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    // The daemon blocks SIGINT/SIGTERM for sigwait; the child gets them back.
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
    std::vector<char *> args;
    for (const auto &a : argv) {
        args.push_back(const_cast<char *>(a.c_str()));
    }
    args.push_back(nullptr);
    pid_t pid = -1;
    int err = ::posix_spawn(&pid, args[0], &fa, &attr, args.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    ::close(fds[1]);
    if (err != 0) {
        ::close(fds[0]);
        throw std::runtime_error(argv[0] + ": " + std::strerror(err));
    }
    std::string out;
    int64_t deadline = now_ms() + timeout_ms;
    bool timed_out = false;
    for (;;) {
        int left = static_cast<int>(deadline - now_ms());
        if (left <= 0) {
            timed_out = true;
            break;
        }
        pollfd p{fds[0], POLLIN, 0};
        int r = ::poll(&p, 1, left);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r <= 0) {
            timed_out = r == 0;
            break;
        }
        char buf[4096];
        ssize_t n = ::read(fds[0], buf, sizeof buf);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            break;
        }
        out.append(buf, static_cast<size_t>(n));
    }
    ::close(fds[0]);
    if (timed_out) {
        ::kill(pid, SIGKILL);
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (timed_out) {
        return {-1, out};
    }
    return {WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status), out};
}

std::string one_line(std::string s) {
    std::replace(s.begin(), s.end(), '\n', ' ');
    while (!s.empty() && s.back() == ' ') {
        s.pop_back();
    }
    return s;
}

void write_file_atomic(const std::string &file, const std::string &text, int mode) {
    namespace fs = std::filesystem;
    fs::path path(file);
    fs::path tmp = path;
    tmp += ".tmp";
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) {
        throw std::runtime_error(errno_str("open " + tmp.string()));
    }
    size_t off = 0;
    while (off < text.size()) {
        ssize_t n = ::write(fd, text.data() + off, text.size() - off);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            std::string e = errno_str("write " + tmp.string());
            ::close(fd);
            throw std::runtime_error(e);
        }
        off += static_cast<size_t>(n);
    }
    if (::fsync(fd) != 0 || ::close(fd) != 0) {
        throw std::runtime_error(errno_str("fsync " + tmp.string()));
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        throw std::runtime_error(errno_str("rename to " + path.string()));
    }
}

std::vector<ipam::Cidr> node_route_prefixes(const ipam::NodeRoutes &routes) {
    std::vector<ipam::Cidr> v = routes.blocks;
    for (const auto &a : routes.borrowed) {
        v.push_back(ipam::Cidr::containing(a, a.family() == net::Family::kIp4 ? 32 : 128));
    }
    std::sort(v.begin(), v.end(), [](const ipam::Cidr &a, const ipam::Cidr &b) {
        if (a.is_v4() != b.is_v4()) {
            return a.is_v4();
        }
        return a < b;
    });
    v.erase(std::unique(v.begin(), v.end()), v.end());
    return v;
}

std::string bird_include_text(const std::string &node, const std::string &store,
                              const ipam::NodeRoutes &routes) {
    auto prefixes = node_route_prefixes(routes);
    std::string s = "# Written by dpdk-fwd for node " + node + " from the IPAM store " + store +
                    ".\n# Do not edit: it is rewritten whenever the node's blocks change.\n"
                    "# fwd_ipam4/6: the node's affine blocks and the addresses it borrowed.\n";
    for (bool v4 : {true, false}) {
        s += std::string("protocol static fwd_ipam") + (v4 ? "4" : "6") + " {\n    " +
             (v4 ? "ipv4" : "ipv6") + ";\n";
        for (const auto &c : prefixes) {
            if (c.is_v4() == v4) {
                s += "    route " + c.str() + " blackhole;\n";
            }
        }
        s += "}\n";
    }
    return s;
}

IpamSync::IpamSync(const IpamNodeConfig &cfg, std::string node, std::shared_ptr<ipam::Store> store,
                   Apply apply, ipam::AllocatorOptions opts)
    : cfg_(cfg),
      node_(std::move(node)),
      store_(std::move(store)),
      alloc_(*store_,
             [&] {
                 opts.empty_block_grace_ms =
                     static_cast<int64_t>(cfg.release_empty_blocks_s) * 1000;
                 return opts;
             }()),
      apply_(std::move(apply)) {}

IpamSync::~IpamSync() {
    stop();
}

void IpamSync::follow(std::string name, FollowFn fn) {
    followers_.push_back(Follower{std::move(name), std::move(fn)});
}

void IpamSync::run_followers(int64_t rev) {
    for (auto &f : followers_) {
        if (f.done_revision == rev) {
            continue;
        }
        std::string error;
        try {
            f.fn(*store_, alloc_, rev);
            f.done_revision = rev;
        } catch (const std::exception &e) {
            error = e.what();
        }
        std::lock_guard g(mu_);
        f.runs++;
        if (!error.empty()) {
            f.errors++;
            if (error != f.last_error) {
                log::error("{}: {}", f.name, error);
            }
            f.last_error = error;
        }
        f.ok = error.empty();
    }
}

void IpamSync::start() {
    if (!cfg_.bird_include.empty() && !std::filesystem::exists(cfg_.bird_include)) {
        write_include(bird_include_text(node_, cfg_.store, {}));
    }
    thread_ = std::thread([this] { loop(); });
}

void IpamSync::stop() {
    {
        std::lock_guard g(mu_);
        stop_ = true;
    }
    cv_.notify_all();
    if (thread_.joinable()) {
        thread_.join();
    }
}

void IpamSync::kick() {
    {
        std::lock_guard g(mu_);
        kicked_ = true;
    }
    cv_.notify_all();
}

void IpamSync::loop() {
    std::unique_lock lk(mu_);
    while (!stop_) {
        lk.unlock();
        round();
        lk.lock();
        cv_.wait_for(lk, std::chrono::milliseconds(cfg_.sync_ms),
                     [this] { return stop_ || kicked_; });
        kicked_ = false;
    }
}

void IpamSync::sync_once() {
    round();
}

void IpamSync::round() {
    std::string error;
    try {
        int64_t rev = store_->revision();
        {
            std::lock_guard g(mu_);
            cnt_.polls++;
            revision_ = rev;
        }
        // Empty blocks go back now and then; that moves the revision, so the
        // routes below already reflect it.
        if (cfg_.release_empty_blocks_s > 0) {
            int64_t every = std::min<int64_t>(60'000, cfg_.release_empty_blocks_s * 1000LL / 4);
            if (now_ms() - last_gc_ms_ >= every) {
                int n = alloc_.release_empty_blocks(node_);
                last_gc_ms_ = now_ms();
                if (n > 0) {
                    std::lock_guard g(mu_);
                    cnt_.blocks_released += static_cast<uint64_t>(n);
                    rev = store_->revision();
                }
            }
        }
        if (rev != seen_revision_ || !applied_ok_) {
            ipam::NodeRoutes routes = alloc_.node_routes(node_);
            auto prefixes = node_route_prefixes(routes);
            {
                std::lock_guard g(mu_);
                cnt_.rounds++;
                blocks_ = routes.blocks.size();
                borrowed_ = routes.borrowed.size();
            }
            if (!applied_ok_ || prefixes != applied_) {
                applied_ok_ = false;
                apply_(prefixes);
                applied_ = prefixes;
                applied_ok_ = true;
                std::lock_guard g(mu_);
                cnt_.applies++;
            }
            applied_ok_ = true;
            if (!cfg_.bird_include.empty()) {
                std::string text = bird_include_text(node_, cfg_.store, routes);
                if (text != include_text_) {
                    write_include(text);
                    include_text_ = text;
                    bird_dirty_ = true;
                }
            }
            // Only now: a failed file write is retried on the next round.
            seen_revision_ = rev;
        }
        // The node's own routes first: a follower failing does not hold them up.
        run_followers(rev);
        if (bird_dirty_ && !cfg_.bird_socket.empty()) {
            reconfigure_bird();
        }
        bird_dirty_ = false;
    } catch (const std::exception &e) {
        error = e.what();
    }
    std::lock_guard g(mu_);
    if (!error.empty()) {
        cnt_.errors++;
        if (error != last_error_) {
            log::error("ipam sync: {}", error);
        }
    }
    last_error_ = error.empty() ? last_error_ : error;
    last_ok_ = error.empty();
}

void IpamSync::write_include(const std::string &text) {
    write_file_atomic(cfg_.bird_include, text, 0644);
}

void IpamSync::reconfigure_bird() {
    auto [rc, out] = run_capture({cfg_.birdc, "-s", cfg_.bird_socket, "configure"}, 10'000);
    // BIRD answers "Reconfigured", "Reconfiguration in progress" or "... queueing
    // new config"; a config error is "<file>:<line>:<col> <message>".
    bool ok = rc == 0 && out.find("Reconfigur") != std::string::npos &&
              out.find("rror") == std::string::npos;
    if (!ok) {
        bird_dirty_ = true;
        throw std::runtime_error("birdc -s " + cfg_.bird_socket + " configure " +
                                 (rc < 0 ? "timed out" : "exited " + std::to_string(rc)) + ": " +
                                 one_line(out));
    }
    std::lock_guard g(mu_);
    cnt_.bird_reloads++;
}

nlohmann::json IpamSync::status() const {
    std::lock_guard g(mu_);
    nlohmann::json followers = nlohmann::json::object();
    for (const auto &f : followers_) {
        followers[f.name] = {
            {"runs", f.runs}, {"errors", f.errors}, {"ok", f.ok}, {"last_error", f.last_error}};
    }
    return nlohmann::json{{"store", cfg_.store},
                          {"followers", followers},
                          {"node", node_},
                          {"revision", revision_},
                          {"blocks", blocks_},
                          {"borrowed", borrowed_},
                          {"polls", cnt_.polls},
                          {"rounds", cnt_.rounds},
                          {"applies", cnt_.applies},
                          {"bird_include", cfg_.bird_include},
                          {"bird_reloads", cnt_.bird_reloads},
                          {"blocks_released", cnt_.blocks_released},
                          {"ok", last_ok_},
                          {"errors", cnt_.errors},
                          {"last_error", last_error_}};
}

}  // namespace fwd::control
