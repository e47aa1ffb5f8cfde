// EmbeddedStore: the single-node IPAM store, persistent under a state
// directory and crash-safe (kill -9 at any instant).
//
// Layout of the directory (created 0700 if absent):
//   lock      flock()ed exclusively around every transaction, shared around reads
//   journal   append-only committed transactions: [u32 len][u32 crc32][payload],
//             payload = u64 revision, u32 op count, ops; fdatasync'ed before txn returns
//   snapshot  the whole key space at one revision (write temp, fsync, rename, fsync dir)
//
// Crash safety: a transaction is one journal record, visible only once its CRC
// checks, so a torn tail (a writer killed mid-write) is ignored and truncated
// by the next writer. Records at or below the snapshot's revision are skipped,
// so a crash between writing the snapshot and resetting the journal is harmless.
//
// Sharing: several processes (and threads) may open the same directory. Each
// reads the journal tail written by others under the lock before answering,
// so revisions are global. A compaction by another process replaces the
// journal file; a reader notices the new inode and reloads. An instance is
// not meant to cross fork(): a child process reopens its files on first use.
#pragma once

#include <sys/types.h>
#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>

#include "fwd/ipam/store.hpp"

namespace fwd::ipam {

class EmbeddedStore final : public Store {
  public:
    struct Options {
        // Compact the journal into a snapshot once it grows past this size.
        std::size_t compact_bytes = 4u << 20;
        // fdatasync journal and snapshot (tests of logic only may turn it off).
        bool sync = true;
    };

    explicit EmbeddedStore(std::string dir) : EmbeddedStore(std::move(dir), Options{}) {}
    EmbeddedStore(std::string dir, Options opts);
    ~EmbeddedStore() override;
    EmbeddedStore(const EmbeddedStore &) = delete;
    EmbeddedStore &operator=(const EmbeddedStore &) = delete;

    std::optional<KeyValue> get(const std::string &key) override;
    std::vector<KeyValue> list(const std::string &prefix) override;
    bool txn(const std::vector<Compare> &cmps, const std::vector<Operation> &ops) override;
    std::string describe() const override;

    // The store's current revision (after reading others' writes).
    int64_t revision() override;
    // Write a snapshot and start an empty journal now.
    void compact();

  private:
    struct Entry {
        std::string value;
        int64_t mod_revision = 0;
    };
    class Lock;

    void open_files();
    void close_files();
    void ensure_owner();
    // Brings state_ up to date with the files; lock held. `writer`: allowed
    // to truncate a torn journal tail.
    void sync_locked(bool writer);
    void reload_locked(bool writer);
    void replay_journal_locked(bool writer);
    void compact_locked();
    void fsync_dir();
    [[noreturn]] void fail(const std::string &what, int err) const;

    std::string dir_;
    Options opts_;
    std::mutex mu_;  // threads of this process; the flock orders processes
    pid_t owner_ = 0;
    int lock_fd_ = -1;
    int journal_fd_ = -1;
    ino_t journal_ino_ = 0;
    uint64_t journal_end_ = 0;  // bytes of the journal already applied
    int64_t revision_ = 0;
    std::map<std::string, Entry> state_;
};

}  // namespace fwd::ipam
