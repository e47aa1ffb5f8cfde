// The node's endpoints on disk (issue 18 item 5): what a restarted daemon
// needs to take its pods back with no CNI call. One file per endpoint,
// <dir>/<id>.json, holding the endpoint.add arguments that made it (with
// the MAC and MTU it got), so a restore is the same add.
//
// Why a local directory and not the cluster store: the record must be
// readable when the store is not (etcd down must not keep pods from getting
// their traffic back within a second), it is this node's alone (no other
// node reads it), and a file per endpoint makes each write O(1) and confines
// a damaged file to one pod, which is reported by name.
//
// Crash safety: a write goes to a temporary file, is fsynced, renamed over
// the old one and the directory fsynced, so a reader after a crash at any
// point sees the old record or the new one, never a mix. An erase is an
// unlink and a directory fsync. One daemon per directory: the constructor
// takes an exclusive lock on <dir>/lock (released when the process dies,
// however it dies).
//
// No DPDK: unit tested on its own. Control thread only.
#pragma once

#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

namespace fwd::control {

class RecordError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

struct RecordLoad {
    std::vector<nlohmann::json> records;  // each the endpoint.add arguments, "id" first among them
    // Files that cannot be read as a record: "<path>: <why>". They are left
    // in place (for a person to look at; a new endpoint of that id replaces
    // them) and reported at every start until then.
    std::vector<std::string> unreadable;
};

class EndpointRecord {
  public:
    // The format's version: a file of another is unreadable (reported).
    static constexpr int kVersion = 1;

    // Creates dir (mode 0700, parents too) and locks it. Throws RecordError
    // naming the directory and the problem (another daemon holds it, no
    // permission, ...).
    explicit EndpointRecord(std::string dir);
    ~EndpointRecord();
    EndpointRecord(const EndpointRecord &) = delete;
    EndpointRecord &operator=(const EndpointRecord &) = delete;

    // rec must be an object with a string "id" that is a valid file name
    // (the endpoints module's ids are). Replaces the old record of that id
    // atomically. Throws RecordError (disk full, I/O error): the old record
    // then stands.
    void put(const nlohmann::json &rec);
    // No record of id left; none is not an error. Throws RecordError.
    void erase(const std::string &id);
    // Every record, sorted by id; leftover temporary files of a crash
    // during put() are removed.
    RecordLoad load() const;

    const std::string &dir() const { return dir_; }

  private:
    std::string path_of(const std::string &id) const;
    void sync_dir() const;

    std::string dir_;
    int lock_fd_ = -1;
    int dir_fd_ = -1;
};

}  // namespace fwd::control
