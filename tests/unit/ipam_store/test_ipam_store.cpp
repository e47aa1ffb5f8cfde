// The IPAM store contract, checked on both stores (StoreConformance/Embedded,
// StoreConformance/Etcd), then what only one store promises: the embedded
// store's persistence, torn-journal recovery, multi-process sharing and
// kill -9 safety; the etcd store's endpoint handling against a real etcd.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <algorithm>
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <random>
#include <thread>

#include "../temp_dir.hpp"
#include "etcd_server.hpp"
#include "fwd/ipam/embedded_store.hpp"
#include "fwd/ipam/etcd_store.hpp"
#include "fwd/ipam/open_store.hpp"

namespace fwd::ipam {
namespace {

using ::fwd::test::TempDir;

namespace fs = std::filesystem;
using Kind = Operation::Kind;

Operation put(std::string k, std::string v) {
    return Operation{Kind::kPut, std::move(k), std::move(v)};
}
Operation del(std::string k) {
    return Operation{Kind::kDelete, std::move(k), {}};
}

// A fresh temporary directory, removed with its contents.
// One etcd for the whole binary, started on first use, stopped at exit.
test::EtcdServer *g_etcd = nullptr;
std::string g_etcd_error;

class EtcdEnvironment : public ::testing::Environment {
  public:
    void TearDown() override {
        delete g_etcd;
        g_etcd = nullptr;
    }
};
[[maybe_unused]] auto *const g_env = ::testing::AddGlobalTestEnvironment(new EtcdEnvironment);

// Null (with g_etcd_error set) when etcd cannot run here.
test::EtcdServer *etcd() {
    if (g_etcd == nullptr && g_etcd_error.empty()) {
        try {
            g_etcd = new test::EtcdServer();
        } catch (const std::exception &e) {
            g_etcd_error = e.what();
        }
    }
    return g_etcd;
}

std::string unique_prefix() {
    static std::atomic<int> n{0};
    const auto *info = ::testing::UnitTest::GetInstance()->current_test_info();
    return std::string("/t/") + info->test_suite_name() + "." + info->name() + "/" +
           std::to_string(::getpid()) + "-" + std::to_string(n++) + "/";
}

std::unique_ptr<EtcdStore> open_etcd(const std::string &prefix) {
    EtcdStore::Options o;
    o.endpoints = {etcd()->endpoint()};
    o.prefix = prefix;
    return std::make_unique<EtcdStore>(o);
}

struct EmbeddedBackend {
    TempDir dir;
    std::string why_not;
    std::unique_ptr<Store> open() { return std::make_unique<EmbeddedStore>(dir.path() + "/state"); }
};

struct EtcdBackend {
    std::string prefix = unique_prefix();
    std::string why_not = etcd() ? "" : "etcd is required for these tests: " + g_etcd_error;
    std::unique_ptr<Store> open() { return open_etcd(prefix); }
};

template <class Backend>
class StoreConformance : public ::testing::Test {
  protected:
    void SetUp() override {
        ASSERT_TRUE(backend_.why_not.empty()) << backend_.why_not;
        store_ = backend_.open();
    }
    Backend backend_;
    std::unique_ptr<Store> store_;
};

struct BackendNames {
    template <class T>
    static std::string GetName(int) {
        return std::is_same_v<T, EmbeddedBackend> ? "Embedded" : "Etcd";
    }
};
using Backends = ::testing::Types<EmbeddedBackend, EtcdBackend>;
TYPED_TEST_SUITE(StoreConformance, Backends, BackendNames);

// Get, then CAS-increment until it lands; returns the number of lost races.
int cas_increment(Store &s, const std::string &key) {
    for (int lost = 0;; ++lost) {
        auto kv = s.get(key);
        int64_t n = kv ? std::stoll(kv->value) : 0;
        if (s.txn({{key, kv ? kv->mod_revision : 0}}, {put(key, std::to_string(n + 1))}))
            return lost;
    }
}

TYPED_TEST(StoreConformance, AbsentKeyAndEmptyStore) {
    EXPECT_FALSE(this->store_->get("nothing").has_value());
    EXPECT_TRUE(this->store_->list("").empty());
    EXPECT_FALSE(this->store_->describe().empty());
}

TYPED_TEST(StoreConformance, CreateIfAbsent) {
    Store &s = *this->store_;
    ASSERT_TRUE(s.txn({{"a", 0}}, {put("a", "1")}));
    auto a = s.get("a");
    ASSERT_TRUE(a.has_value());
    EXPECT_EQ(a->key, "a");
    EXPECT_EQ(a->value, "1");
    EXPECT_GT(a->mod_revision, 0);
    EXPECT_FALSE(s.txn({{"a", 0}}, {put("a", "2")}));
    EXPECT_EQ(s.get("a")->value, "1");
    EXPECT_EQ(s.get("a")->mod_revision, a->mod_revision);
}

TYPED_TEST(StoreConformance, CompareOnModRevision) {
    Store &s = *this->store_;
    ASSERT_TRUE(s.txn({}, {put("k", "v1")}));
    int64_t r1 = s.get("k")->mod_revision;
    ASSERT_TRUE(s.txn({{"k", r1}}, {put("k", "v2")}));
    int64_t r2 = s.get("k")->mod_revision;
    EXPECT_GT(r2, r1);
    EXPECT_FALSE(s.txn({{"k", r1}}, {put("k", "v3")}));  // stale revision
    EXPECT_FALSE(s.txn({{"k", 0}}, {put("k", "v3")}));   // not absent
    EXPECT_EQ(s.get("k")->value, "v2");
    EXPECT_EQ(s.get("k")->mod_revision, r2);
}

TYPED_TEST(StoreConformance, FailedCompareAppliesNothing) {
    Store &s = *this->store_;
    ASSERT_TRUE(s.txn({}, {put("a", "A"), put("b", "B")}));
    auto a = *s.get("a"), b = *s.get("b");
    // a holds, b does not: none of the three operations may happen.
    EXPECT_FALSE(s.txn({{"a", a.mod_revision}, {"b", b.mod_revision + 100}},
                       {put("a", "A2"), del("b"), put("c", "C")}));
    EXPECT_EQ(s.get("a")->value, "A");
    EXPECT_EQ(s.get("a")->mod_revision, a.mod_revision);
    EXPECT_EQ(s.get("b")->value, "B");
    EXPECT_FALSE(s.get("c").has_value());
    // A later write still gets the next revision after the last real one.
    ASSERT_TRUE(s.txn({}, {put("c", "C")}));
    EXPECT_GT(s.get("c")->mod_revision, b.mod_revision);
}

TYPED_TEST(StoreConformance, RevisionsStrictlyIncrease) {
    Store &s = *this->store_;
    int64_t last = 0;
    for (int i = 0; i < 20; ++i) {
        std::string key = "r/" + std::to_string(i % 3);
        ASSERT_TRUE(s.txn({}, {put(key, std::to_string(i))}));
        int64_t rev = s.get(key)->mod_revision;
        EXPECT_GT(rev, last) << i;
        last = rev;
    }
    // The operations of one txn share its revision.
    ASSERT_TRUE(s.txn({}, {put("m/1", "x"), put("m/2", "y")}));
    EXPECT_EQ(s.get("m/1")->mod_revision, s.get("m/2")->mod_revision);
    EXPECT_GT(s.get("m/1")->mod_revision, last);
}

TYPED_TEST(StoreConformance, Delete) {
    Store &s = *this->store_;
    ASSERT_TRUE(s.txn({{"d", 0}}, {put("d", "1")}));
    int64_t r = s.get("d")->mod_revision;
    EXPECT_FALSE(s.txn({{"d", r + 1}}, {del("d")}));
    EXPECT_TRUE(s.get("d").has_value());
    ASSERT_TRUE(s.txn({{"d", r}}, {del("d")}));
    EXPECT_FALSE(s.get("d").has_value());
    EXPECT_TRUE(s.list("d").empty());
    EXPECT_TRUE(s.txn({}, {del("d")}));  // deleting nothing is not an error
    // Absent again, so create-if-absent works again, at a newer revision.
    ASSERT_TRUE(s.txn({{"d", 0}}, {put("d", "2")}));
    EXPECT_GT(s.get("d")->mod_revision, r);
}

TYPED_TEST(StoreConformance, ListByPrefixInKeyOrder) {
    Store &s = *this->store_;
    const std::vector<std::string> keys = {"p/b",    "q/x", "p/a",        "p", "p/c/1",
                                           "p/\xff", "o",   "p/\xff\xff", "p0"};
    for (const auto &k : keys)
        ASSERT_TRUE(s.txn({}, {put(k, "v:" + k)}));
    auto names = [](const std::vector<KeyValue> &kvs) {
        std::vector<std::string> out;
        for (const auto &kv : kvs)
            out.push_back(kv.key);
        return out;
    };
    EXPECT_EQ(names(s.list("p/")),
              (std::vector<std::string>{"p/a", "p/b", "p/c/1", "p/\xff", "p/\xff\xff"}));
    EXPECT_EQ(names(s.list("p/\xff")), (std::vector<std::string>{"p/\xff", "p/\xff\xff"}));
    auto all = s.list("");
    auto sorted = keys;
    std::sort(sorted.begin(), sorted.end());
    EXPECT_EQ(names(all), sorted);
    for (const auto &kv : all) {
        EXPECT_EQ(kv.value, "v:" + kv.key);
        EXPECT_EQ(kv.mod_revision, s.get(kv.key)->mod_revision);
    }
    EXPECT_TRUE(s.list("z").empty());
}

TYPED_TEST(StoreConformance, BinaryEmptyAndLargeValues) {
    Store &s = *this->store_;
    std::string bin("\0\x01\xff\n\"\\{}", 9);
    std::string big(256 * 1024, 'x');
    for (std::size_t i = 0; i < big.size(); i += 7)
        big[i] = static_cast<char>(i);
    ASSERT_TRUE(s.txn({}, {put("bin", bin), put("empty", ""), put("big", big)}));
    EXPECT_EQ(s.get("bin")->value, bin);
    ASSERT_TRUE(s.get("empty").has_value());
    EXPECT_EQ(s.get("empty")->value, "");
    EXPECT_EQ(s.get("big")->value, big);
}

TYPED_TEST(StoreConformance, RevisionMovesOnEverySuccessfulTxnOnly) {
    Store &s = *this->store_;
    ASSERT_TRUE(s.txn({}, {put("a", "1")}));
    int64_t r = s.revision();
    EXPECT_EQ(r, s.get("a")->mod_revision);  // the revision of the last write
    for (int i = 0; i < 5; ++i) {
        auto a = *s.get("a");
        ASSERT_TRUE(s.txn({{"a", a.mod_revision}}, {put("a", std::to_string(i)), put("b", "x")}));
        EXPECT_EQ(s.revision(), r + 1) << i;  // one txn, one revision
        EXPECT_EQ(s.get("b")->mod_revision, r + 1);
        r = s.revision();
        // A failed compare changes nothing, the revision included.
        EXPECT_FALSE(s.txn({{"a", a.mod_revision}}, {put("a", "stale")}));
        EXPECT_FALSE(s.txn({{"new", 0}, {"a", 0}}, {put("new", "x")}));
        EXPECT_EQ(s.revision(), r) << i;
    }
    // Nor does a txn that changes nothing (as etcd: deleting an absent key).
    ASSERT_TRUE(s.txn({}, {del("absent")}));
    EXPECT_EQ(s.revision(), r);
    ASSERT_TRUE(s.txn({{"a", s.get("a")->mod_revision}}, {del("a")}));
    EXPECT_EQ(s.revision(), r + 1);
    // Another client's write moves it too.
    auto other = this->backend_.open();
    ASSERT_TRUE(other->txn({}, {put("c", "1")}));
    EXPECT_EQ(s.revision(), r + 2);
    EXPECT_EQ(other->revision(), r + 2);
}

TYPED_TEST(StoreConformance, ListKeysHasKeysAndRevisionsWithoutValues) {
    Store &s = *this->store_;
    EXPECT_TRUE(s.list_keys("").empty());
    for (const char *k : {"k/b", "k/a", "k/c/1", "k", "l/x"})
        ASSERT_TRUE(s.txn({}, {put(k, std::string(1000, 'v') + k)}));
    ASSERT_TRUE(s.txn({{"k/a", s.get("k/a")->mod_revision}}, {put("k/a", "newer")}));
    auto keys = s.list_keys("k/");
    auto full = s.list("k/");
    ASSERT_EQ(keys.size(), 3u);
    ASSERT_EQ(keys.size(), full.size());
    for (std::size_t i = 0; i < keys.size(); ++i) {
        EXPECT_EQ(keys[i].key, full[i].key);
        EXPECT_EQ(keys[i].mod_revision, full[i].mod_revision) << keys[i].key;
        EXPECT_TRUE(keys[i].value.empty()) << keys[i].key;
    }
    EXPECT_EQ(keys[0].key, "k/a");
    EXPECT_EQ(keys[0].mod_revision, s.revision());
    EXPECT_EQ(s.list_keys("").size(), 5u);
    EXPECT_TRUE(s.list_keys("z").empty());
}

TYPED_TEST(StoreConformance, ConcurrentCasIncrementsFromThreads) {
    constexpr int kThreads = 4, kEach = 100;
    std::vector<std::thread> threads;
    std::atomic<int> lost{0};
    // Half the threads share the fixture's instance, half open their own.
    std::vector<std::unique_ptr<Store>> own;
    for (int t = 0; t < kThreads; ++t)
        own.push_back(t % 2 ? this->backend_.open() : nullptr);
    for (int t = 0; t < kThreads; ++t)
        threads.emplace_back([&, t] {
            Store &s = own[t] ? *own[t] : *this->store_;
            for (int i = 0; i < kEach; ++i)
                lost += cas_increment(s, "counter");
        });
    for (auto &th : threads)
        th.join();
    EXPECT_EQ(this->store_->get("counter")->value, std::to_string(kThreads * kEach));
    this->RecordProperty("lost_races", lost.load());
}

TYPED_TEST(StoreConformance, ThroughputSingleClient) {
    // Not a pass/fail bound: prints txn/s (median of 3 runs) for the notes.
    constexpr int kTxns = 300;
    std::vector<double> rates;
    for (int run = 0; run < 3; ++run) {
        auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < kTxns; ++i)
            cas_increment(*this->store_, "bench");
        std::chrono::duration<double> dt = std::chrono::steady_clock::now() - t0;
        rates.push_back(kTxns / dt.count());
    }
    std::sort(rates.begin(), rates.end());
    std::printf("[ RATE     ] %s: %.0f CAS txn/s (get + txn, median of 3 x %d)\n",
                this->store_->describe().c_str(), rates[1], kTxns);
    EXPECT_EQ(this->store_->get("bench")->value, std::to_string(3 * kTxns));
}

// ---- EmbeddedStore only ----

std::map<std::string, std::pair<std::string, int64_t>> dump(Store &s) {
    std::map<std::string, std::pair<std::string, int64_t>> out;
    for (auto &kv : s.list(""))
        out[kv.key] = {kv.value, kv.mod_revision};
    return out;
}

std::string read_file(const std::string &path) {
    std::ifstream f(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(f), {});
}

void write_file(const std::string &path, const std::string &data) {
    std::ofstream f(path, std::ios::binary | std::ios::trunc);
    f.write(data.data(), static_cast<std::streamsize>(data.size()));
}

TEST(EmbeddedStore, CreatesStateDirectoryPrivate) {
    TempDir tmp;
    std::string dir = tmp.path() + "/ipam";
    EmbeddedStore s(dir);
    struct stat st {};
    ASSERT_EQ(::stat(dir.c_str(), &st), 0);
    EXPECT_EQ(st.st_mode & 0777, 0700u);
    EXPECT_EQ(s.describe(), "embedded " + dir);
    EXPECT_THROW(EmbeddedStore("/proc/forbidden/ipam"), StoreError);
}

// open_notifier: another writer's transaction (here another process's instance, a child
// writing through its own store) wakes the waiter; reads do not; a compaction (new files)
// does; etcd has none.
TEST(EmbeddedStore, NotifierWakesOnWritesNotOnReads) {
    TempDir tmp;
    const std::string dir = tmp.path() + "/s";
    EmbeddedStore reader(dir);
    auto n = open_notifier("embedded:" + dir);
    ASSERT_NE(n, nullptr);
    using std::chrono::milliseconds;
    EXPECT_FALSE(n->wait(milliseconds(0)));
    (void)reader.list("");
    (void)reader.revision();
    EXPECT_FALSE(n->wait(milliseconds(50))) << "a read raised a change notice";
    const pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
        EmbeddedStore writer(dir);
        ::_exit(writer.txn({}, {put("k", "v")}) ? 0 : 1);
    }
    const auto t0 = std::chrono::steady_clock::now();
    EXPECT_TRUE(n->wait(milliseconds(5000)));
    EXPECT_LT(std::chrono::steady_clock::now() - t0, milliseconds(4000));
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    while (n->wait(milliseconds(20))) {
        // the rest of that write's events
    }
    EXPECT_EQ(reader.get("k")->value, "v");
    EXPECT_FALSE(n->wait(milliseconds(50)));
    reader.compact();
    EXPECT_TRUE(n->wait(milliseconds(1000)));
    EXPECT_EQ(open_notifier("etcd:http://127.0.0.1:1"), nullptr);
    EXPECT_THROW(open_notifier("embedded:" + tmp.path() + "/absent"), StoreError);
    EXPECT_THROW(open_notifier("nonsense"), std::invalid_argument);
}

TEST(EmbeddedStore, PersistsAcrossReopen) {
    TempDir tmp;
    std::string dir = tmp.path() + "/s";
    std::map<std::string, std::pair<std::string, int64_t>> before;
    int64_t rev = 0;
    {
        EmbeddedStore s(dir);
        for (int i = 0; i < 50; ++i)
            ASSERT_TRUE(s.txn({}, {put("k/" + std::to_string(i % 7), std::to_string(i))}));
        ASSERT_TRUE(s.txn({}, {del("k/3")}));
        before = dump(s);
        rev = s.revision();
    }
    EmbeddedStore s(dir);
    EXPECT_EQ(dump(s), before);
    EXPECT_EQ(s.revision(), rev);
    EXPECT_FALSE(s.get("k/3").has_value());
    ASSERT_TRUE(s.txn({}, {put("n", "1")}));
    EXPECT_EQ(s.get("n")->mod_revision, rev + 1);
}

TEST(EmbeddedStore, CompactionKeepsStateAndRevisions) {
    TempDir tmp;
    std::string dir = tmp.path() + "/s";
    EmbeddedStore::Options o;
    o.compact_bytes = 2048;
    std::map<std::string, std::pair<std::string, int64_t>> before;
    int64_t writes = 400;
    {
        EmbeddedStore s(dir, o);
        for (int i = 0; i < 400; ++i) {
            ASSERT_TRUE(
                s.txn({}, {put("k/" + std::to_string(i % 13), std::string(40, 'a' + i % 26))}));
            std::string victim = "k/" + std::to_string((i + 1) % 13);
            if (i % 5 == 0) {
                writes += s.get(victim).has_value() ? 1 : 0;  // deleting nothing is no revision
                ASSERT_TRUE(s.txn({}, {del(victim)}));
            }
        }
        before = dump(s);
        EXPECT_EQ(s.revision(), writes);
    }
    EXPECT_TRUE(fs::exists(dir + "/snapshot"));
    EXPECT_LT(fs::file_size(dir + "/journal"), 2048u + 256);
    EmbeddedStore s(dir, o);
    EXPECT_EQ(dump(s), before);
    EXPECT_EQ(s.revision(), writes);
    s.compact();
    EXPECT_EQ(fs::file_size(dir + "/journal"), 0u);
    EmbeddedStore again(dir);
    EXPECT_EQ(dump(again), before);
}

// A crash between installing the snapshot and resetting the journal leaves
// an old journal whose records are all in the snapshot: none is applied twice.
TEST(EmbeddedStore, OldJournalBesideNewerSnapshotIsSkipped) {
    TempDir tmp;
    std::string dir = tmp.path() + "/s";
    std::string journal;
    std::map<std::string, std::pair<std::string, int64_t>> before;
    {
        EmbeddedStore s(dir);
        for (int i = 0; i < 10; ++i)
            ASSERT_TRUE(s.txn({}, {put("k" + std::to_string(i % 3), std::to_string(i))}));
        journal = read_file(dir + "/journal");
        s.compact();
        before = dump(s);
    }
    write_file(dir + "/journal", journal);
    EmbeddedStore s(dir);
    EXPECT_EQ(dump(s), before);
    EXPECT_EQ(s.revision(), 10);
}

// A store that cannot be read is refused with a StoreError and keeps no file open: a caller
// retrying does not run out of descriptors (found by tests/fuzz/fuzz_journal).
TEST(EmbeddedStore, UnreadableSnapshotIsRefusedAndLeavesNoDescriptor) {
    TempDir tmp;
    std::string dir = tmp.path() + "/s";
    fs::create_directories(dir);
    write_file(dir + "/snapshot", "this is not a snapshot at all");
    auto open_fds = [] {
        return std::distance(fs::directory_iterator("/proc/self/fd"), fs::directory_iterator{});
    };
    const auto before = open_fds();
    for (int i = 0; i < 50; ++i) {
        EXPECT_THROW(EmbeddedStore s(dir), StoreError);
    }
    EXPECT_EQ(open_fds(), before);
}

TEST(EmbeddedStore, TornJournalTailRecoversPreviousState) {
    TempDir tmp;
    std::string dir = tmp.path() + "/s";
    std::map<std::string, std::pair<std::string, int64_t>> before, after;
    std::size_t cut_from = 0;
    std::string full;
    {
        EmbeddedStore s(dir);
        for (int i = 0; i < 5; ++i)
            ASSERT_TRUE(s.txn({}, {put("k" + std::to_string(i), "v")}));
        before = dump(s);
        cut_from = fs::file_size(dir + "/journal");
        // The last record: two puts and a delete, so a visible half would show.
        ASSERT_TRUE(s.txn({}, {put("k0", "new"), put("x", std::string(100, 'x')), del("k1")}));
        after = dump(s);
        full = read_file(dir + "/journal");
    }
    ASSERT_GT(full.size(), cut_from);
    EmbeddedStore::Options fast;
    fast.sync = false;
    for (std::size_t cut = cut_from; cut < full.size(); ++cut) {
        write_file(dir + "/journal", full.substr(0, cut));
        {
            EmbeddedStore s(dir, fast);
            ASSERT_EQ(dump(s), before) << "cut at " << cut;
            ASSERT_EQ(s.revision(), 5);
            ASSERT_TRUE(s.txn({}, {put("later", std::to_string(cut))}));
        }
        // The torn bytes were dropped, so the new record is readable after them.
        EmbeddedStore s(dir, fast);
        ASSERT_EQ(s.get("later")->value, std::to_string(cut)) << "cut at " << cut;
        ASSERT_EQ(s.get("later")->mod_revision, 6);
    }
    // Garbage after whole records (a crash while extending the file).
    std::string garbage = full + std::string("\x20\x00\x00\x00\xde\xad\xbe\xef junk", 13);
    write_file(dir + "/journal", garbage);
    EmbeddedStore s(dir, fast);
    EXPECT_EQ(dump(s), after);
    EXPECT_EQ(fs::file_size(dir + "/journal"), full.size());
}

TEST(EmbeddedStore, ConcurrentCasIncrementsFromProcesses) {
    constexpr int kProcs = 4, kEach = 250;
    TempDir tmp;
    std::string dir = tmp.path() + "/s";
    EmbeddedStore::Options o;
    o.compact_bytes = 8192;  // compactions by one process under the others' feet
    EmbeddedStore parent(dir, o);
    std::vector<pid_t> kids;
    for (int p = 0; p < kProcs; ++p) {
        pid_t pid = ::fork();
        ASSERT_GE(pid, 0);
        if (pid == 0) {
            int rc = 0;
            try {
                // Half reuse the inherited instance (it reopens its files), half open their own.
                std::unique_ptr<EmbeddedStore> own;
                if (p % 2)
                    own = std::make_unique<EmbeddedStore>(dir, o);
                Store &s = own ? static_cast<Store &>(*own) : parent;
                for (int i = 0; i < kEach; ++i)
                    cas_increment(s, "counter");
            } catch (...) {
                rc = 2;
            }
            ::_exit(rc);
        }
        kids.push_back(pid);
    }
    for (pid_t pid : kids) {
        int status = 0;
        ASSERT_EQ(::waitpid(pid, &status, 0), pid);
        EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
    }
    EXPECT_EQ(parent.get("counter")->value, std::to_string(kProcs * kEach));
    EXPECT_EQ(parent.revision(), kProcs * kEach);
    EXPECT_EQ(EmbeddedStore(dir).get("counter")->value, std::to_string(kProcs * kEach));
}

// A child CAS-increments "counter" and "mirror" together and reports every
// committed value on a pipe; we SIGKILL it at random instants. Afterwards the
// store holds the last reported value or the one after it (committed but not
// yet reported), and both keys always agree (no half transaction).
TEST(EmbeddedStore, SurvivesKill9AtRandomInstants) {
    TempDir tmp;
    std::string dir = tmp.path() + "/s";
    EmbeddedStore::Options o;
    o.compact_bytes = 16384;
    std::mt19937 rng(12345);
    int64_t last = 0;
    for (int round = 0; round < 25; ++round) {
        int fds[2];
        ASSERT_EQ(::pipe(fds), 0);
        pid_t pid = ::fork();
        ASSERT_GE(pid, 0);
        if (pid == 0) {
            ::close(fds[0]);
            try {
                EmbeddedStore s(dir, o);
                for (;;) {
                    auto c = s.get("counter");
                    int64_t n = c ? std::stoll(c->value) : 0;
                    std::string pad(static_cast<std::size_t>(n % 300), 'p');
                    if (s.txn({{"counter", c ? c->mod_revision : 0}},
                              {put("counter", std::to_string(n + 1)),
                               put("mirror", std::to_string(n + 1) + pad)})) {
                        int64_t done = n + 1;
                        if (::write(fds[1], &done, sizeof done) != sizeof done)
                            ::_exit(3);
                    }
                }
            } catch (...) {
                ::_exit(2);
            }
        }
        ::close(fds[1]);
        std::this_thread::sleep_for(
            std::chrono::microseconds(std::uniform_int_distribution<int>(2000, 40000)(rng)));
        ::kill(pid, SIGKILL);
        int status = 0;
        ASSERT_EQ(::waitpid(pid, &status, 0), pid);
        ASSERT_TRUE(WIFSIGNALED(status)) << "child exited early: " << status;
        int64_t v = 0;
        std::string bytes;
        char buf[4096];
        for (ssize_t r; (r = ::read(fds[0], buf, sizeof buf)) > 0;)
            bytes.append(buf, static_cast<std::size_t>(r));
        ::close(fds[0]);
        if (bytes.size() >= sizeof v) {
            std::memcpy(&v, bytes.data() + (bytes.size() / sizeof v - 1) * sizeof v, sizeof v);
            last = v;
        }
        EmbeddedStore s(dir, o);
        auto c = s.get("counter");
        int64_t stored = c ? std::stoll(c->value) : 0;
        ASSERT_GE(stored, last) << "round " << round << ": a reported commit was lost";
        ASSERT_LE(stored, last + 1) << "round " << round;
        auto m = s.get("mirror");
        ASSERT_EQ(m.has_value(), c.has_value());
        if (m) {
            EXPECT_EQ(m->value.substr(0, c->value.size()), c->value);
        }
        EXPECT_EQ(s.revision(), stored) << "every committed txn is exactly one revision";
        last = stored;
    }
    EXPECT_GT(last, 25) << "the child made too little progress to test anything";
    RecordProperty("commits", static_cast<int>(last));
}

// ---- EtcdStore only ----

class EtcdStoreTest : public ::testing::Test {
  protected:
    void SetUp() override {
        ASSERT_NE(etcd(), nullptr) << "etcd is required for these tests: " << g_etcd_error;
    }
};

TEST_F(EtcdStoreTest, UnreachableEndpointIsAStoreErrorNamingIt) {
    EtcdStore::Options o;
    o.endpoints = {"http://127.0.0.1:1"};
    o.connect_timeout = std::chrono::milliseconds(300);
    EtcdStore s(o);
    try {
        s.get("x");
        FAIL() << "no error";
    } catch (const StoreError &e) {
        EXPECT_NE(std::string(e.what()).find("http://127.0.0.1:1"), std::string::npos) << e.what();
    }
    EXPECT_THROW(s.txn({}, {put("x", "1")}), StoreError);
    EXPECT_THROW(s.list(""), StoreError);
}

TEST_F(EtcdStoreTest, FailsOverToTheNextEndpoint) {
    EtcdStore::Options o;
    o.endpoints = {"http://127.0.0.1:1", etcd()->endpoint()};
    o.prefix = unique_prefix();
    o.connect_timeout = std::chrono::milliseconds(300);
    EtcdStore s(o);
    ASSERT_TRUE(s.txn({{"a", 0}}, {put("a", "1")}));
    EXPECT_EQ(s.get("a")->value, "1");
}

TEST_F(EtcdStoreTest, PrefixIsolatesUsers) {
    auto a = open_etcd(unique_prefix()), b = open_etcd(unique_prefix());
    ASSERT_TRUE(a->txn({}, {put("k", "a")}));
    EXPECT_FALSE(b->get("k").has_value());
    EXPECT_TRUE(b->list("").empty());
    EXPECT_EQ(a->list("").size(), 1u);
}

TEST_F(EtcdStoreTest, RevisionWithoutAPrefix) {
    // The whole keyspace as the store: etcd refuses an empty key, which revision() must not send.
    auto s = open_etcd("");
    int64_t r0 = s->revision();
    auto k = unique_prefix() + "k";
    ASSERT_TRUE(s->txn({}, {put(k, "1")}));
    EXPECT_GT(s->revision(), r0);
}

TEST_F(EtcdStoreTest, ServerErrorIsAStoreError) {
    auto s = open_etcd(unique_prefix());
    // etcd refuses two operations on one key in a txn.
    try {
        s->txn({}, {put("dup", "1"), put("dup", "2")});
        FAIL() << "no error";
    } catch (const StoreError &e) {
        EXPECT_NE(std::string(e.what()).find(etcd()->endpoint()), std::string::npos) << e.what();
    }
}

TEST_F(EtcdStoreTest, ListPagesThroughManyKeys) {
    auto s = open_etcd(unique_prefix());
    for (int i = 0; i < 2500; i += 100) {
        std::vector<Operation> ops;
        for (int j = i; j < i + 100; ++j) {
            char k[16];
            std::snprintf(k, sizeof k, "k/%05d", j);
            ops.push_back(put(k, std::to_string(j)));
        }
        ASSERT_TRUE(s->txn({}, ops));
    }
    auto all = s->list("k/");
    ASSERT_EQ(all.size(), 2500u);
    for (int j = 0; j < 2500; ++j)
        EXPECT_EQ(all[static_cast<std::size_t>(j)].value, std::to_string(j));
    // keys_only pages the same way.
    auto keys = s->list_keys("k/");
    ASSERT_EQ(keys.size(), 2500u);
    for (std::size_t j = 0; j < keys.size(); ++j) {
        EXPECT_EQ(keys[j].key, all[j].key);
        EXPECT_EQ(keys[j].mod_revision, all[j].mod_revision);
        EXPECT_TRUE(keys[j].value.empty());
    }
}

}  // namespace
}  // namespace fwd::ipam
