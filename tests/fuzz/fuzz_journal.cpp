// The embedded cluster store's files, as a crash or a bad disk may leave them: each input (its
// first byte choosing which) is written as the journal or the snapshot of a fresh store
// directory, the store is opened (it reads the snapshot and replays the journal, checking each
// record's CRC) and listed, then a write is tried. Bad input must be
// refused with a message or recovered from, never crash the reader.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <system_error>

#include "fuzz_common.hpp"
#include "fwd/ipam/embedded_store.hpp"

namespace {

// The store's directory, made once per process, on tmpfs (/dev/shm) when there is one: made
// and deleted under /tmp on the root file system, the inputs' files blocked each input for
// milliseconds on metadata updates (190 inputs/s, the time spent waiting on the disk, not in
// the store's code). Removed at exit; plain storage, as static strings may be gone by then.
char g_root[64];

void remove_root() {
    std::error_code ec;
    std::filesystem::remove_all(g_root, ec);
}

const std::string &store_dir() {
    static const std::string dir = [] {
        const char *base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
        std::snprintf(g_root, sizeof(g_root), "%s/fwd-fuzz-journal.XXXXXX", base);
        if (mkdtemp(g_root) == nullptr) {
            std::perror("mkdtemp");
            std::abort();
        }
        std::atexit(remove_root);
        return std::string(g_root) + "/store";
    }();
    return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    // Each input starts from an empty store directory, whatever the last one left there.
    const std::string &dir = store_dir();
    std::filesystem::remove_all(dir);
    std::filesystem::create_directory(dir);
    if (size == 0) {
        return 0;
    }
    {
        std::ofstream f(dir + ((data[0] & 1) != 0 ? "/snapshot" : "/journal"), std::ios::binary);
        f.write(reinterpret_cast<const char *>(data + 1), static_cast<std::streamsize>(size - 1));
    }
    fwd::ipam::EmbeddedStore::Options opts;
    opts.sync = false;
    fwd::fuzz::accepted([&] {
        fwd::ipam::EmbeddedStore store(dir, opts);
        (void)store.list("");
        (void)store.txn({}, {{fwd::ipam::Operation::Kind::kPut, "/fuzz/key", "value"}});
    });
    return 0;
}
