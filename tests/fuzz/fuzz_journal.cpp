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

#include "fuzz_common.hpp"
#include "fwd/ipam/embedded_store.hpp"

namespace {

std::string store_dir() {
    static const std::string dir = [] {
        char tmpl[] = "/tmp/fwd-fuzz-journal.XXXXXX";
        if (mkdtemp(tmpl) == nullptr) {
            std::perror("mkdtemp");
            std::abort();
        }
        return std::string(tmpl);
    }();
    return dir;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const std::string dir = store_dir() + "/store";
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
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
