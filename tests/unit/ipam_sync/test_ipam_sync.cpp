// IpamSync: the node's routes as the store has them reach the callback and
// the BIRD include file; changes only when something changed; failures are
// counted and retried; the include file is what BIRD 2 itself accepts.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "../temp_dir.hpp"
#include "fwd/control/ipam_sync.hpp"
#include "fwd/ipam/embedded_store.hpp"
#include "fwd/ipam/mem_store.hpp"

namespace fwd::control {
namespace {

namespace fs = std::filesystem;
using ::fwd::test::TempDir;
using ipam::Cidr;

Cidr cidr(const char *s) {
    return *Cidr::parse(s);
}
net::IpAddr ip(const char *s) {
    return *net::IpAddr::parse(s);
}

std::string slurp(const fs::path &p) {
    std::ifstream f(p);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

std::vector<std::string> strs(const std::vector<Cidr> &v) {
    std::vector<std::string> s;
    for (const auto &c : v) {
        s.push_back(c.str());
    }
    return s;
}

// A birdc stand-in: records each call's arguments and answers like BIRD, or
// fails when the file "fail" exists next to it.
std::string fake_birdc(const fs::path &dir) {
    fs::path p = dir / "birdc";
    std::ofstream(p) << "#!/bin/sh\n"
                        "echo \"$@\" >> "
                     << (dir / "birdc.calls").string()
                     << "\n"
                        "if [ -e "
                     << (dir / "fail").string()
                     << " ]; then\n"
                        "  echo 'Unable to connect to server control socket'; exit 1\n"
                        "fi\n"
                        "echo 'BIRD 2.0.12 ready.'\n"
                        "echo 'Reading configuration from /etc/bird/bird.conf'\n"
                        "echo 'Reconfigured'\n";
    fs::permissions(p, fs::perms::owner_all);
    return p.string();
}

int lines(const fs::path &p) {
    if (!fs::exists(p)) {
        return 0;
    }
    std::string s = slurp(p);
    return static_cast<int>(std::count(s.begin(), s.end(), '\n'));
}

class IpamSyncTest : public ::testing::Test {
  protected:
    void SetUp() override {
        store_ = std::make_shared<ipam::MemStore>();
        ipam::AllocatorOptions o;
        o.clock = [this] { return now_.load(); };
        opts_ = o;
        alloc_ = std::make_unique<ipam::Allocator>(*store_, o);
        for (auto [name, c, size] :
             {std::tuple{"v4", "10.10.0.0/24", 26}, std::tuple{"v6", "fd00:10::/120", 122}}) {
            ipam::IpPool p;
            p.name = name;
            p.cidr = cidr(c);
            p.block_size = size;
            alloc_->add_pool(p.normalized());
        }
        cfg_.store = "embedded:/unused";
        cfg_.bird_include = (fs::path(dir_.path()) / "ipam.conf").string();
        cfg_.bird_socket = (fs::path(dir_.path()) / "bird.ctl").string();
        cfg_.birdc = fake_birdc(fs::path(dir_.path()));
        cfg_.release_empty_blocks_s = 1;
    }

    std::unique_ptr<IpamSync> make_sync() {
        return std::make_unique<IpamSync>(
            cfg_, "n1", store_,
            [this](const std::vector<Cidr> &p) {
                if (fail_apply_) {
                    throw std::runtime_error("tables full");
                }
                applied_.push_back(strs(p));
            },
            opts_);
    }

    ipam::Assignment assign(const std::string &h, const std::string &node, int n4, int n6) {
        ipam::AssignRequest r;
        r.handle = h;
        r.node = node;
        r.num4 = n4;
        r.num6 = n6;
        return alloc_->assign(r);
    }

    TempDir dir_;
    std::shared_ptr<ipam::MemStore> store_;
    std::atomic<int64_t> now_{1'000'000};
    ipam::AllocatorOptions opts_;
    std::unique_ptr<ipam::Allocator> alloc_;
    IpamNodeConfig cfg_;
    std::vector<std::vector<std::string>> applied_;
    bool fail_apply_ = false;
};

TEST(BirdInclude, BlocksAndBorrowedAsBlackholesPerFamily) {
    ipam::NodeRoutes r;
    r.blocks = {cidr("fd00:10::40/122"), cidr("10.10.0.64/26")};
    r.borrowed = {ip("10.10.0.130"), ip("fd00:10::81")};
    std::string t = bird_include_text("n1", "etcd:http://x", r);
    auto v4 = t.find(
        "protocol static fwd_ipam4 {\n    ipv4;\n"
        "    route 10.10.0.64/26 blackhole;\n"
        "    route 10.10.0.130/32 blackhole;\n}\n");
    auto v6 = t.find(
        "protocol static fwd_ipam6 {\n    ipv6;\n"
        "    route fd00:10::40/122 blackhole;\n"
        "    route fd00:10::81/128 blackhole;\n}\n");
    EXPECT_NE(v4, std::string::npos) << t;
    EXPECT_NE(v6, std::string::npos) << t;
    EXPECT_EQ(t, bird_include_text("n1", "etcd:http://x", r)) << "not deterministic";
}

// BIRD's own parser (bird -p) accepts the include file, with routes and empty.
TEST(BirdInclude, BirdParsesIt) {
    if (::access("/usr/sbin/bird", X_OK) != 0) {
        FAIL() << "/usr/sbin/bird missing: apt-get install -y bird2";
    }
    TempDir d;
    ipam::NodeRoutes r;
    r.blocks = {cidr("10.10.0.64/26"), cidr("fd00:10::40/122")};
    r.borrowed = {ip("10.10.0.130"), ip("fd00:10::81")};
    for (const auto &routes : {r, ipam::NodeRoutes{}}) {
        std::ofstream(fs::path(d.path()) / "ipam.conf")
            << bird_include_text("n1", "embedded:/x", routes);
        std::ofstream(fs::path(d.path()) / "bird.conf")
            << "router id 10.0.0.1;\nprotocol device {}\ninclude \""
            << (fs::path(d.path()) / "ipam.conf").string() << "\";\n";
        std::string cmd =
            "/usr/sbin/bird -p -c " + (fs::path(d.path()) / "bird.conf").string() + " 2>&1";
        FILE *p = ::popen(cmd.c_str(), "r");
        ASSERT_NE(p, nullptr);
        char buf[512];
        std::string out;
        while (std::fgets(buf, sizeof buf, p)) {
            out += buf;
        }
        EXPECT_EQ(::pclose(p), 0) << out << slurp(fs::path(d.path()) / "ipam.conf");
    }
}

TEST_F(IpamSyncTest, NodeBlocksAndBorrowedReachTablesAndBird) {
    auto sync = make_sync();
    sync->sync_once();
    ASSERT_EQ(applied_.size(), 1u);
    EXPECT_TRUE(applied_[0].empty());
    EXPECT_EQ(lines(fs::path(dir_.path()) / "birdc.calls"), 1)
        << "the first round writes and reloads";

    assign("a", "n1", 1, 1);
    sync->sync_once();
    ASSERT_EQ(applied_.size(), 2u);
    EXPECT_EQ(applied_[1], (std::vector<std::string>{"10.10.0.0/26", "fd00:10::/122"}));
    std::string inc = slurp(cfg_.bird_include);
    EXPECT_NE(inc.find("route 10.10.0.0/26 blackhole;"), std::string::npos) << inc;
    EXPECT_NE(inc.find("route fd00:10::/122 blackhole;"), std::string::npos) << inc;
    EXPECT_EQ(lines(fs::path(dir_.path()) / "birdc.calls"), 2);
    EXPECT_NE(
        slurp(fs::path(dir_.path()) / "birdc.calls").find("-s " + cfg_.bird_socket + " configure"),
        std::string::npos);

    // Nothing changed: no apply, no reload.
    sync->sync_once();
    EXPECT_EQ(applied_.size(), 2u);
    EXPECT_EQ(lines(fs::path(dir_.path()) / "birdc.calls"), 2);

    // Another node's allocation moves the revision but not n1's routes.
    assign("b", "n2", 1, 0);
    sync->sync_once();
    EXPECT_EQ(applied_.size(), 2u);
    EXPECT_EQ(lines(fs::path(dir_.path()) / "birdc.calls"), 2);

    // n1 borrows: its own blocks exhausted with maxBlocksPerHost 1.
    ipam::IpamConfig c = alloc_->config();
    c.max_blocks_per_host = 1;
    alloc_->set_config(c);
    for (int i = 0; i < 63; ++i) {
        assign("fill-" + std::to_string(i), "n1", 1, 0);
    }
    auto borrowed = assign("borrow", "n1", 1, 0);
    ASSERT_EQ(borrowed.v4.size(), 1u);
    EXPECT_FALSE(cidr("10.10.0.0/26").contains(borrowed.v4[0]));
    sync->sync_once();
    ASSERT_EQ(applied_.size(), 3u);
    EXPECT_EQ(applied_[2], (std::vector<std::string>{"10.10.0.0/26", borrowed.v4[0].str() + "/32",
                                                     "fd00:10::/122"}));
    EXPECT_NE(slurp(cfg_.bird_include).find("route " + borrowed.v4[0].str() + "/32 blackhole;"),
              std::string::npos);
    auto st = sync->status();
    EXPECT_EQ(st["blocks"], 2);
    EXPECT_EQ(st["borrowed"], 1);
    EXPECT_EQ(st["ok"], true);
    EXPECT_EQ(st["errors"], 0);
    EXPECT_EQ(st["bird_reloads"], 3);
}

TEST_F(IpamSyncTest, EmptyBlocksGoBackAfterTheGracePeriod) {
    auto sync = make_sync();
    assign("a", "n1", 0, 1);
    sync->sync_once();
    ASSERT_EQ(applied_.back(), (std::vector<std::string>{"fd00:10::/122"}));
    alloc_->release_handle("a");
    now_ += 500;  // within the 1 s grace: the block stays
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    sync->sync_once();
    EXPECT_EQ(applied_.back(), (std::vector<std::string>{"fd00:10::/122"}));
    now_ += 1000;
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    sync->sync_once();
    EXPECT_TRUE(applied_.back().empty());
    EXPECT_EQ(sync->status()["blocks_released"], 1);
    EXPECT_EQ(slurp(cfg_.bird_include).find("route fd00"), std::string::npos);
    EXPECT_TRUE(alloc_->check().empty());
}

TEST_F(IpamSyncTest, FailuresAreCountedAndRetried) {
    auto sync = make_sync();
    assign("a", "n1", 1, 0);
    fail_apply_ = true;
    sync->sync_once();
    EXPECT_TRUE(applied_.empty());
    auto st = sync->status();
    EXPECT_EQ(st["ok"], false);
    EXPECT_EQ(st["errors"], 1);
    EXPECT_EQ(st["last_error"], "tables full");
    // Not yet applied, so the file was not written and BIRD not reloaded.
    EXPECT_EQ(slurp(cfg_.bird_include).find("10.10.0.0/26"), std::string::npos);

    // The store does not change, yet the next round retries.
    fail_apply_ = false;
    std::ofstream(fs::path(dir_.path()) / "fail") << "";
    sync->sync_once();
    ASSERT_EQ(applied_.size(), 1u);
    EXPECT_NE(slurp(cfg_.bird_include).find("10.10.0.0/26"), std::string::npos);
    st = sync->status();
    EXPECT_EQ(st["ok"], false);
    EXPECT_NE(st["last_error"].get<std::string>().find("Unable to connect"), std::string::npos)
        << st.dump();
    // BIRD back: reloaded on the next round although nothing changed.
    fs::remove(fs::path(dir_.path()) / "fail");
    sync->sync_once();
    st = sync->status();
    EXPECT_EQ(st["ok"], true);
    EXPECT_EQ(st["bird_reloads"], 1);
    EXPECT_EQ(st["errors"], 2);
    EXPECT_EQ(applied_.size(), 1u);
}

// Followers (the overlay) run on the sync's rounds: once per store revision,
// again after a failure although the store did not move, and their failures
// are counted under their name without failing the node's own routes.
TEST_F(IpamSyncTest, FollowersRunOncePerRevisionAndRetryFailures) {
    auto sync = make_sync();
    std::vector<int64_t> seen;
    bool fail = false;
    sync->follow("overlay", [&](ipam::Store &s, ipam::Allocator &a, int64_t rev) {
        EXPECT_EQ(&s, store_.get());
        EXPECT_FALSE(a.pools().empty());  // the sync's own allocator, on the same store
        seen.push_back(rev);
        if (fail) {
            throw std::runtime_error("node registry refused n1");
        }
    });
    sync->sync_once();
    ASSERT_EQ(seen.size(), 1u);
    sync->sync_once();  // nothing moved
    EXPECT_EQ(seen.size(), 1u);
    assign("a", "n1", 1, 0);
    fail = true;
    sync->sync_once();
    ASSERT_EQ(seen.size(), 2u);
    EXPECT_GT(seen[1], seen[0]);
    EXPECT_EQ(applied_.size(), 2u) << "the node's own routes do not wait for a follower";
    auto st = sync->status();
    EXPECT_EQ(st["followers"]["overlay"]["ok"], false);
    EXPECT_EQ(st["followers"]["overlay"]["errors"], 1);
    EXPECT_EQ(st["followers"]["overlay"]["last_error"], "node registry refused n1");
    fail = false;
    sync->sync_once();  // the same revision, retried
    ASSERT_EQ(seen.size(), 3u);
    EXPECT_EQ(seen[2], seen[1]);
    st = sync->status();
    EXPECT_EQ(st["followers"]["overlay"]["ok"], true);
    EXPECT_EQ(st["followers"]["overlay"]["runs"], 3);
    sync->sync_once();
    EXPECT_EQ(seen.size(), 3u);
}

// The include file cannot be written (its directory is missing): counted,
// and written on a later round although the store did not change.
TEST_F(IpamSyncTest, IncludeFileWriteFailureIsRetried) {
    cfg_.bird_include = (fs::path(dir_.path()) / "later" / "ipam.conf").string();
    auto sync = make_sync();
    assign("a", "n1", 1, 0);
    sync->sync_once();
    auto st = sync->status();
    EXPECT_EQ(st["ok"], false);
    EXPECT_NE(st["last_error"].get<std::string>().find("later/ipam.conf"), std::string::npos)
        << st.dump();
    fs::create_directory(fs::path(dir_.path()) / "later");
    sync->sync_once();
    EXPECT_EQ(sync->status()["ok"], true) << sync->status().dump();
    EXPECT_NE(slurp(cfg_.bird_include).find("route 10.10.0.0/26 blackhole;"), std::string::npos);
    EXPECT_EQ(applied_.size(), 1u) << "the routes were applied once";
}

// The thread: an existing include file is kept until the store was read;
// start() creates a missing one; changes arrive within a few periods; stop()
// returns promptly.
TEST_F(IpamSyncTest, ThreadFollowsTheStore) {
    cfg_.sync_ms = 20;
    cfg_.bird_socket.clear();
    std::atomic<int> calls{0};
    std::vector<std::string> last;
    std::mutex mu;
    IpamSync sync(
        cfg_, "n1", store_,
        [&](const std::vector<Cidr> &p) {
            std::lock_guard g(mu);
            last = strs(p);
            calls++;
        },
        opts_);
    sync.start();
    auto wait_for = [&](const std::vector<std::string> &want) {
        for (int i = 0; i < 250; ++i) {
            {
                std::lock_guard g(mu);
                if (calls > 0 && last == want) {
                    return true;
                }
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
        return false;
    };
    EXPECT_TRUE(wait_for({}));
    assign("a", "n1", 1, 0);
    EXPECT_TRUE(wait_for({"10.10.0.0/26"}));
    auto t0 = std::chrono::steady_clock::now();
    sync.stop();
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(1));
    EXPECT_NE(slurp(cfg_.bird_include).find("10.10.0.0/26"), std::string::npos);
}

// The daemon's real store: an embedded store in a state directory.
TEST(IpamSyncEmbedded, ReadsWhatAnotherStoreHandleWrote) {
    TempDir d;
    auto writer = std::make_shared<ipam::EmbeddedStore>((fs::path(d.path()) / "state").string());
    ipam::Allocator a(*writer);
    ipam::IpPool p;
    p.name = "v4";
    p.cidr = cidr("10.20.0.0/24");
    a.add_pool(p.normalized());
    IpamNodeConfig cfg;
    cfg.store = "embedded:" + (fs::path(d.path()) / "state").string();
    std::vector<std::string> got;
    IpamSync sync(cfg, "n9",
                  std::make_shared<ipam::EmbeddedStore>((fs::path(d.path()) / "state").string()),
                  [&](const std::vector<Cidr> &v) { got = strs(v); });
    ipam::AssignRequest r;
    r.handle = "h";
    r.node = "n9";
    r.num4 = 1;
    a.assign(r);
    sync.sync_once();
    EXPECT_EQ(got, (std::vector<std::string>{"10.20.0.0/26"}));
}

}  // namespace
}  // namespace fwd::control
