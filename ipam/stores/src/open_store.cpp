#include "fwd/ipam/open_store.hpp"

#include <poll.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include "fwd/ipam/embedded_store.hpp"
#include "fwd/ipam/etcd_store.hpp"

namespace fwd::ipam {

namespace {

struct EtcdSpec {
    std::vector<std::string> endpoints;
    std::string prefix;
};

EtcdSpec split_etcd(const std::string &rest) {
    EtcdSpec s;
    auto comma = rest.find(',');
    std::string urls = rest.substr(0, comma);
    if (comma != std::string::npos) {
        s.prefix = rest.substr(comma + 1);
    }
    size_t from = 0;
    while (from <= urls.size()) {
        auto semi = urls.find(';', from);
        std::string u =
            urls.substr(from, semi == std::string::npos ? std::string::npos : semi - from);
        if (!u.empty()) {
            s.endpoints.push_back(u);
        }
        if (semi == std::string::npos) {
            break;
        }
        from = semi + 1;
    }
    return s;
}

// inotify on the embedded store's directory: a write to the journal, or a compaction's new
// snapshot and journal, is a change; reads (flock, read) raise no event.
class DirNotifier final : public ChangeNotifier {
  public:
    explicit DirNotifier(const std::string &dir) : what_("embedded " + dir) {
        fd_ = ::inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
        if (fd_ < 0) {
            fail("inotify_init1");
        }
        if (::inotify_add_watch(fd_, dir.c_str(), IN_MODIFY | IN_MOVED_TO | IN_CREATE) < 0) {
            const int err = errno;
            ::close(fd_);
            errno = err;
            fail("inotify_add_watch");
        }
    }
    ~DirNotifier() override { ::close(fd_); }
    DirNotifier(const DirNotifier &) = delete;
    DirNotifier &operator=(const DirNotifier &) = delete;

    bool wait(std::chrono::milliseconds timeout) override {
        pollfd p{fd_, POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(timeout.count())) < 0 && errno != EINTR) {
            fail("poll inotify");
        }
        // Every queued event drained: one wake-up for a burst of writes.
        bool any = false;
        alignas(inotify_event) char buf[4096];
        for (;;) {
            const ssize_t r = ::read(fd_, buf, sizeof(buf));
            if (r <= 0) {
                if (r < 0 && errno != EAGAIN && errno != EINTR) {
                    fail("read inotify");
                }
                return any;
            }
            any = true;
        }
    }

  private:
    [[noreturn]] void fail(const char *what) const {
        throw StoreError(what_ + ": " + what + ": " + std::strerror(errno));
    }
    std::string what_;
    int fd_ = -1;
};

}  // namespace

std::unique_ptr<ChangeNotifier> open_notifier(const std::string &spec) {
    if (auto why = check_store_spec(spec); !why.empty()) {
        throw std::invalid_argument("IPAM store '" + spec + "': " + why);
    }
    if (spec.starts_with("embedded:")) {
        return std::make_unique<DirNotifier>(spec.substr(9));
    }
    return nullptr;
}

std::string check_store_spec(const std::string &spec) {
    if (spec.starts_with("embedded:")) {
        return spec.size() > 9 && spec[9] == '/' ? "" : "embedded: wants an absolute directory";
    }
    if (spec.starts_with("etcd:")) {
        auto s = split_etcd(spec.substr(5));
        if (s.endpoints.empty()) {
            return "etcd: wants at least one http:// or https:// URL";
        }
        for (const auto &u : s.endpoints) {
            if (!u.starts_with("http://") && !u.starts_with("https://")) {
                return "etcd endpoint '" + u + "' is not an http:// or https:// URL";
            }
        }
        return "";
    }
    return "want embedded:<dir> or etcd:<url>[;<url>...][,<key prefix>]";
}

std::unique_ptr<Store> open_store(const std::string &spec) {
    if (auto why = check_store_spec(spec); !why.empty()) {
        throw std::invalid_argument("IPAM store '" + spec + "': " + why);
    }
    if (spec.starts_with("embedded:")) {
        return std::make_unique<EmbeddedStore>(spec.substr(9));
    }
    auto s = split_etcd(spec.substr(5));
    EtcdStore::Options o;
    o.endpoints = s.endpoints;
    o.prefix = s.prefix;
    return std::make_unique<EtcdStore>(o);
}

}  // namespace fwd::ipam
