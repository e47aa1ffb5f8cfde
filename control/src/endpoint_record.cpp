#include "fwd/control/endpoint_record.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace fwd::control {

using nlohmann::json;

namespace {

constexpr const char *kSuffix = ".json";
// A put() in progress: ".<id>.json.tmp" (a dot first: never taken for a record).
constexpr const char *kTmpSuffix = ".tmp";

[[noreturn]] void fail(const std::string &what, int err) {
    throw RecordError(what + ": " + std::strerror(err));
}

bool ends_with(const std::string &s, const std::string &tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

void write_all(int fd, const std::string &data, const std::string &path) {
    size_t off = 0;
    while (off < data.size()) {
        ssize_t n = ::write(fd, data.data() + off, data.size() - off);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            fail("write " + path, errno);
        }
        off += static_cast<size_t>(n);
    }
}

}  // namespace

EndpointRecord::EndpointRecord(std::string dir) : dir_(std::move(dir)) {
    std::error_code ec;
    std::filesystem::create_directories(dir_, ec);
    if (ec) {
        throw RecordError("endpoint record " + dir_ + ": " + ec.message());
    }
    ::chmod(dir_.c_str(), 0700);  // addresses and pod names: the daemon's own
    dir_fd_ = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd_ < 0) {
        fail("endpoint record " + dir_, errno);
    }
    const std::string lock = dir_ + "/lock";
    lock_fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock_fd_ < 0) {
        int err = errno;
        ::close(dir_fd_);
        fail("endpoint record " + lock, err);
    }
    if (::flock(lock_fd_, LOCK_EX | LOCK_NB) != 0) {
        int err = errno;
        ::close(lock_fd_);
        ::close(dir_fd_);
        if (err == EWOULDBLOCK) {
            throw RecordError("endpoint record " + dir_ +
                              " is held by another dpdk-fwd: give each daemon its own state_dir");
        }
        fail("lock endpoint record " + lock, err);
    }
}

EndpointRecord::~EndpointRecord() {
    ::close(lock_fd_);
    ::close(dir_fd_);
}

std::string EndpointRecord::path_of(const std::string &id) const {
    return dir_ + "/" + id + kSuffix;
}

void EndpointRecord::sync_dir() const {
    if (::fsync(dir_fd_) != 0) {
        fail("fsync " + dir_, errno);
    }
}

void EndpointRecord::put(const json &rec) {
    if (!rec.is_object() || !rec.contains("id") || !rec["id"].is_string()) {
        throw RecordError("an endpoint record needs a string id");
    }
    const std::string id = rec["id"].get<std::string>();
    if (id.empty() || id[0] == '.' || id.find('/') != std::string::npos || id == "lock") {
        throw RecordError("endpoint id '" + id + "' cannot name a record file");
    }
    const std::string path = path_of(id);
    const std::string tmp = dir_ + "/." + id + kSuffix + kTmpSuffix;
    const std::string data = json{{"version", kVersion}, {"endpoint", rec}}.dump(1) + "\n";
    int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        fail("create " + tmp, errno);
    }
    try {
        write_all(fd, data, tmp);
        if (::fsync(fd) != 0) {
            fail("fsync " + tmp, errno);
        }
    } catch (...) {
        ::close(fd);
        ::unlink(tmp.c_str());
        throw;
    }
    ::close(fd);
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        int err = errno;
        ::unlink(tmp.c_str());
        fail("rename " + tmp + " to " + path, err);
    }
    sync_dir();
}

void EndpointRecord::erase(const std::string &id) {
    if (id.empty() || id[0] == '.' || id.find('/') != std::string::npos || id == "lock") {
        return;  // no record can have that name
    }
    const std::string path = path_of(id);
    if (::unlink(path.c_str()) != 0) {
        if (errno == ENOENT) {
            return;
        }
        fail("remove " + path, errno);
    }
    sync_dir();
}

RecordLoad EndpointRecord::load() const {
    RecordLoad out;
    DIR *d = ::opendir(dir_.c_str());
    if (d == nullptr) {
        fail("read endpoint record " + dir_, errno);
    }
    std::vector<std::string> names;
    while (dirent *ent = ::readdir(d)) {
        names.emplace_back(ent->d_name);
    }
    ::closedir(d);
    std::sort(names.begin(), names.end());
    for (const auto &name : names) {
        const std::string path = dir_ + "/" + name;
        if (name[0] == '.') {
            if (ends_with(name, kTmpSuffix)) {
                ::unlink(path.c_str());  // a put() the crash cut short: the old record stands
            }
            continue;
        }
        if (!ends_with(name, kSuffix)) {
            continue;  // the lock, or a file of someone else's
        }
        const std::string id = name.substr(0, name.size() - std::strlen(kSuffix));
        std::ifstream in(path);
        std::stringstream text;
        text << in.rdbuf();
        if (!in) {
            out.unreadable.push_back(path + ": cannot be read");
            continue;
        }
        json doc = json::parse(text.str(), nullptr, false);
        if (doc.is_discarded()) {
            out.unreadable.push_back(path + ": not JSON (a damaged record)");
            continue;
        }
        if (!doc.is_object() || !doc.contains("version") || doc["version"] != kVersion) {
            out.unreadable.push_back(path + ": not a version " + std::to_string(kVersion) +
                                     " endpoint record");
            continue;
        }
        auto ep = doc.find("endpoint");
        if (ep == doc.end() || !ep->is_object() || !ep->contains("id") || (*ep)["id"] != json(id)) {
            out.unreadable.push_back(path + ": its endpoint is missing or not named '" + id + "'");
            continue;
        }
        out.records.push_back(*ep);
    }
    return out;
}

}  // namespace fwd::control
