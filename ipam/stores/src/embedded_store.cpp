// EmbeddedStore: journal + snapshot under a state directory; see the header
// for the file layout and the crash-safety argument.
#include "fwd/ipam/embedded_store.hpp"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <cerrno>
#include <cstring>

#include "crc32.hpp"

namespace fwd::ipam {

namespace {

constexpr char kSnapshotMagic[8] = {'F', 'W', 'D', 'I', 'P', 'S', 'N', '1'};
// A record longer than this is a torn or corrupted length field.
constexpr uint32_t kMaxRecord = 1u << 30;
constexpr std::size_t kRecordHeader = 8;  // u32 len + u32 crc

void put_u32(std::string &out, uint32_t v) {
    for (int i = 0; i < 4; ++i)
        out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}
void put_u64(std::string &out, uint64_t v) {
    for (int i = 0; i < 8; ++i)
        out.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}
void put_str(std::string &out, const std::string &s) {
    put_u32(out, static_cast<uint32_t>(s.size()));
    out += s;
}

// Bounds-checked little-endian reader; any overrun makes ok() false.
class Reader {
  public:
    Reader(const char *p, std::size_t n) : p_(p), n_(n) {}
    bool ok() const { return ok_; }
    bool done() const { return pos_ == n_; }
    uint64_t u(int bytes) {
        if (!take(static_cast<std::size_t>(bytes)))
            return 0;
        uint64_t v = 0;
        for (int i = 0; i < bytes; ++i)
            v |= static_cast<uint64_t>(static_cast<unsigned char>(p_[pos_ - bytes + i])) << (8 * i);
        return v;
    }
    std::string str() {
        auto len = static_cast<std::size_t>(u(4));
        if (!take(len))
            return {};
        return std::string(p_ + pos_ - len, len);
    }

  private:
    bool take(std::size_t k) {
        if (!ok_ || n_ - pos_ < k) {
            ok_ = false;
            return false;
        }
        pos_ += k;
        return true;
    }
    const char *p_;
    std::size_t n_;
    std::size_t pos_ = 0;
    bool ok_ = true;
};

bool read_all(int fd, uint64_t off, std::string &out, std::size_t len) {
    out.resize(len);
    std::size_t got = 0;
    while (got < len) {
        ssize_t r = ::pread(fd, out.data() + got, len - got, static_cast<off_t>(off + got));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return false;
        got += static_cast<std::size_t>(r);
    }
    return true;
}

bool write_all(int fd, uint64_t off, const std::string &data) {
    std::size_t done = 0;
    while (done < data.size()) {
        ssize_t r =
            ::pwrite(fd, data.data() + done, data.size() - done, static_cast<off_t>(off + done));
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0) {
            if (r == 0)
                errno = EIO;
            return false;
        }
        done += static_cast<std::size_t>(r);
    }
    return true;
}

}  // namespace

// The flock for the calling process, taken after mu_ (threads share the fd,
// and flock does not order threads of one process).
class EmbeddedStore::Lock {
  public:
    Lock(EmbeddedStore &s, bool exclusive) : s_(s) {
        while (::flock(s_.lock_fd_, exclusive ? LOCK_EX : LOCK_SH) != 0) {
            if (errno != EINTR)
                s_.fail("flock", errno);
        }
    }
    ~Lock() { ::flock(s_.lock_fd_, LOCK_UN); }
    Lock(const Lock &) = delete;
    Lock &operator=(const Lock &) = delete;

  private:
    EmbeddedStore &s_;
};

EmbeddedStore::EmbeddedStore(std::string dir, Options opts) : dir_(std::move(dir)), opts_(opts) {
    if (::mkdir(dir_.c_str(), 0700) != 0 && errno != EEXIST)
        fail("mkdir", errno);
    open_files();
    try {
        std::lock_guard g(mu_);
        Lock l(*this, true);
        reload_locked(true);
        // The journal may have just been created: make its name durable.
        fsync_dir();
    } catch (...) {
        // No destructor runs for a constructor that throws: a store that cannot be read
        // must not keep its files open (a caller retrying ran out of descriptors; found by
        // tests/fuzz/fuzz_journal).
        close_files();
        throw;
    }
}

EmbeddedStore::~EmbeddedStore() {
    close_files();
}

void EmbeddedStore::fail(const std::string &what, int err) const {
    throw StoreError(describe() + ": " + what + ": " + std::strerror(err));
}

std::string EmbeddedStore::describe() const {
    return "embedded " + dir_;
}

void EmbeddedStore::open_files() {
    lock_fd_ = ::open((dir_ + "/lock").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (lock_fd_ < 0)
        fail("open lock", errno);
    owner_ = ::getpid();
}

void EmbeddedStore::close_files() {
    if (journal_fd_ >= 0)
        ::close(journal_fd_);
    if (lock_fd_ >= 0)
        ::close(lock_fd_);
    journal_fd_ = lock_fd_ = -1;
}

void EmbeddedStore::ensure_owner() {
    // After fork() the child shares our open file descriptions, hence our
    // flock: it needs its own.
    if (owner_ == ::getpid())
        return;
    close_files();
    open_files();
    journal_ino_ = 0;  // forces a reload
}

void EmbeddedStore::fsync_dir() {
    if (!opts_.sync)
        return;
    int fd = ::open(dir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        fail("open directory", errno);
    int rc = ::fsync(fd);
    int err = errno;
    ::close(fd);
    if (rc != 0)
        fail("fsync directory", err);
}

void EmbeddedStore::reload_locked(bool writer) {
    state_.clear();
    revision_ = 0;
    journal_end_ = 0;
    if (journal_fd_ >= 0)
        ::close(journal_fd_);
    journal_fd_ = ::open((dir_ + "/journal").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (journal_fd_ < 0)
        fail("open journal", errno);
    struct stat st {};
    if (::fstat(journal_fd_, &st) != 0)
        fail("fstat journal", errno);
    journal_ino_ = st.st_ino;

    int sfd = ::open((dir_ + "/snapshot").c_str(), O_RDONLY | O_CLOEXEC);
    if (sfd < 0 && errno != ENOENT)
        fail("open snapshot", errno);
    if (sfd >= 0) {
        struct stat sst {};
        std::string buf;
        bool ok =
            ::fstat(sfd, &sst) == 0 && read_all(sfd, 0, buf, static_cast<std::size_t>(sst.st_size));
        ::close(sfd);
        // The snapshot is renamed into place whole, so a bad one is corruption, not a crash.
        if (!ok || buf.size() < sizeof kSnapshotMagic + 4 ||
            std::memcmp(buf.data(), kSnapshotMagic, sizeof kSnapshotMagic) != 0)
            throw StoreError(describe() + ": snapshot is damaged");
        std::size_t body = buf.size() - 4;
        Reader crc_r(buf.data() + body, 4);
        if (detail::crc32(buf.data(), body) != static_cast<uint32_t>(crc_r.u(4)))
            throw StoreError(describe() + ": snapshot checksum mismatch");
        Reader r(buf.data() + sizeof kSnapshotMagic, body - sizeof kSnapshotMagic);
        revision_ = static_cast<int64_t>(r.u(8));
        uint64_t n = r.u(8);
        for (uint64_t i = 0; i < n && r.ok(); ++i) {
            std::string key = r.str();
            Entry e;
            e.value = r.str();
            e.mod_revision = static_cast<int64_t>(r.u(8));
            state_.emplace(std::move(key), std::move(e));
        }
        if (!r.ok() || !r.done())
            throw StoreError(describe() + ": snapshot is malformed");
    }
    replay_journal_locked(writer);
}

void EmbeddedStore::replay_journal_locked(bool writer) {
    struct stat st {};
    if (::fstat(journal_fd_, &st) != 0)
        fail("fstat journal", errno);
    auto size = static_cast<uint64_t>(st.st_size);
    if (size <= journal_end_)
        return;
    std::string buf;
    if (!read_all(journal_fd_, journal_end_, buf, static_cast<std::size_t>(size - journal_end_)))
        fail("read journal", errno ? errno : EIO);

    std::size_t pos = 0;
    while (buf.size() - pos >= kRecordHeader) {
        Reader h(buf.data() + pos, kRecordHeader);
        auto len = static_cast<uint32_t>(h.u(4));
        auto crc = static_cast<uint32_t>(h.u(4));
        if (len < 12 || len > kMaxRecord || buf.size() - pos - kRecordHeader < len)
            break;
        const char *payload = buf.data() + pos + kRecordHeader;
        if (detail::crc32(payload, len) != crc)
            break;
        Reader r(payload, len);
        auto rev = static_cast<int64_t>(r.u(8));
        auto nops = static_cast<uint32_t>(r.u(4));
        std::vector<Operation> ops;
        for (uint32_t i = 0; i < nops && r.ok(); ++i) {
            Operation op;
            op.kind = r.u(1) == 0 ? Operation::Kind::kPut : Operation::Kind::kDelete;
            op.key = r.str();
            if (op.kind == Operation::Kind::kPut)
                op.value = r.str();
            ops.push_back(std::move(op));
        }
        if (!r.ok() || !r.done())
            break;  // CRC matched but the body is not ours: stop here
        // At or below the snapshot's revision: already in the snapshot.
        if (rev > revision_) {
            for (auto &op : ops) {
                if (op.kind == Operation::Kind::kPut)
                    state_[op.key] = Entry{std::move(op.value), rev};
                else
                    state_.erase(op.key);
            }
            revision_ = rev;
        }
        pos += kRecordHeader + len;
    }
    journal_end_ += pos;
    // Leftover bytes are a record torn by a crashed writer (writers hold the
    // exclusive lock, so no live one is mid-write). Drop them before appending.
    if (writer && journal_end_ < size) {
        if (::ftruncate(journal_fd_, static_cast<off_t>(journal_end_)) != 0)
            fail("truncate journal", errno);
        if (opts_.sync && ::fdatasync(journal_fd_) != 0)
            fail("fdatasync journal", errno);
    }
}

void EmbeddedStore::sync_locked(bool writer) {
    struct stat st {};
    if (::stat((dir_ + "/journal").c_str(), &st) != 0 && errno != ENOENT)
        fail("stat journal", errno);
    if (journal_fd_ < 0 || st.st_ino != journal_ino_) {
        reload_locked(writer);  // compacted by another process (or first use after fork)
        return;
    }
    replay_journal_locked(writer);
}

std::optional<KeyValue> EmbeddedStore::get(const std::string &key) {
    std::lock_guard g(mu_);
    ensure_owner();
    Lock l(*this, false);
    sync_locked(false);
    auto it = state_.find(key);
    if (it == state_.end())
        return std::nullopt;
    return KeyValue{it->first, it->second.value, it->second.mod_revision};
}

std::vector<KeyValue> EmbeddedStore::list(const std::string &prefix) {
    std::lock_guard g(mu_);
    ensure_owner();
    Lock l(*this, false);
    sync_locked(false);
    std::vector<KeyValue> out;
    for (auto it = state_.lower_bound(prefix);
         it != state_.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it)
        out.push_back(KeyValue{it->first, it->second.value, it->second.mod_revision});
    return out;
}

int64_t EmbeddedStore::revision() {
    std::lock_guard g(mu_);
    ensure_owner();
    Lock l(*this, false);
    sync_locked(false);
    return revision_;
}

bool EmbeddedStore::txn(const std::vector<Compare> &cmps, const std::vector<Operation> &ops) {
    std::lock_guard g(mu_);
    ensure_owner();
    Lock l(*this, true);
    sync_locked(true);

    for (const auto &c : cmps) {
        auto it = state_.find(c.key);
        int64_t have = it == state_.end() ? 0 : it->second.mod_revision;
        if (have != c.mod_revision)
            return false;
    }
    // As etcd: the revision moves only if something changes (a delete of an
    // absent key changes nothing).
    bool changes = false;
    std::map<std::string, bool> present;
    for (const auto &op : ops) {
        bool was = present.count(op.key) ? present[op.key] : state_.count(op.key) != 0;
        if (op.kind == Operation::Kind::kPut || was)
            changes = true;
        present[op.key] = op.kind == Operation::Kind::kPut;
    }
    if (!changes)
        return true;

    int64_t rev = revision_ + 1;
    std::string payload;
    put_u64(payload, static_cast<uint64_t>(rev));
    put_u32(payload, static_cast<uint32_t>(ops.size()));
    for (const auto &op : ops) {
        payload.push_back(op.kind == Operation::Kind::kPut ? 0 : 1);
        put_str(payload, op.key);
        if (op.kind == Operation::Kind::kPut)
            put_str(payload, op.value);
    }
    if (payload.size() > kMaxRecord)
        throw StoreError(describe() + ": transaction too large");
    std::string rec;
    put_u32(rec, static_cast<uint32_t>(payload.size()));
    put_u32(rec, detail::crc32(payload.data(), payload.size()));
    rec += payload;

    if (!write_all(journal_fd_, journal_end_, rec) ||
        (opts_.sync && ::fdatasync(journal_fd_) != 0)) {
        int err = errno;
        // Not committed: take the record back so no later reader applies it.
        if (::ftruncate(journal_fd_, static_cast<off_t>(journal_end_)) == 0 && opts_.sync)
            ::fdatasync(journal_fd_);
        fail("append journal", err);
    }
    journal_end_ += rec.size();
    for (const auto &op : ops) {
        if (op.kind == Operation::Kind::kPut)
            state_[op.key] = Entry{op.value, rev};
        else
            state_.erase(op.key);
    }
    revision_ = rev;
    if (journal_end_ >= opts_.compact_bytes) {
        try {
            compact_locked();
        } catch (const StoreError &) {
            // The txn is durable in the journal; compaction is retried next time.
        }
    }
    return true;
}

void EmbeddedStore::compact() {
    std::lock_guard g(mu_);
    ensure_owner();
    Lock l(*this, true);
    sync_locked(true);
    compact_locked();
}

void EmbeddedStore::compact_locked() {
    std::string buf(kSnapshotMagic, sizeof kSnapshotMagic);
    put_u64(buf, static_cast<uint64_t>(revision_));
    put_u64(buf, state_.size());
    for (const auto &[k, e] : state_) {
        put_str(buf, k);
        put_str(buf, e.value);
        put_u64(buf, static_cast<uint64_t>(e.mod_revision));
    }
    put_u32(buf, detail::crc32(buf.data(), buf.size()));

    auto write_file = [&](const std::string &name, const std::string &data) {
        std::string tmp = dir_ + "/" + name + ".tmp";
        int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
        if (fd < 0)
            fail("create " + tmp, errno);
        if (!write_all(fd, 0, data) || (opts_.sync && ::fsync(fd) != 0)) {
            int err = errno;
            ::close(fd);
            fail("write " + tmp, err);
        }
        ::close(fd);
        if (::rename(tmp.c_str(), (dir_ + "/" + name).c_str()) != 0)
            fail("rename " + tmp, errno);
        fsync_dir();
    };
    // Snapshot first: until the journal is replaced, its records are all at
    // or below the snapshot's revision and are skipped on replay.
    write_file("snapshot", buf);
    write_file("journal", std::string());
    reload_locked(true);
}

}  // namespace fwd::ipam
