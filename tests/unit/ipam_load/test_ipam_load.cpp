// The concurrency and crash must-shows, with the real allocator on
// the real stores: ipam_load processes (ipam/tools) allocating at once on the
// embedded store and on a real etcd, one of them killed with SIGKILL at
// several random moments and restarted each time. Right after each kill the
// checker is clean and every handle of the killed process is complete or
// absent; at the end the store holds exactly what the processes reported,
// nothing twice.
//
// The report protocol: a process writes "<handle> <addrs>" after assign()
// returns, so a handle without a line was in flight (or done, unreported)
// when its process died. The restarted process gets --recover: it releases
// that one handle first, then allocates it again, so every handle of the
// killed process ends complete or absent, and here: complete and reported.
//
// IPAM_LOAD_SEED replays the kills of an earlier run (its seed is printed).
#include <gtest/gtest.h>

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "../temp_dir.hpp"
#include "etcd_server.hpp"

namespace fwd::ipam {
namespace {

using ::fwd::test::TempDir;

namespace fs = std::filesystem;
using json = nlohmann::json;

std::string tool() {
    const char *p = std::getenv("IPAM_LOAD");
    return p ? p : "";
}

int per_process() {
    const char *c = std::getenv("IPAM_LOAD_COUNT");
    return c ? std::atoi(c) : 1000;
}

unsigned seed() {
    const char *s = std::getenv("IPAM_LOAD_SEED");
    return s ? static_cast<unsigned>(std::strtoul(s, nullptr, 10)) : std::random_device{}();
}

// The crash test: the victim is killed this many times, each time once it is
// allocating again (its report grew since its start) plus a random delay of
// up to kMaxKillDelayMs, which at hundreds of allocations per second lands
// anywhere inside an allocation.
constexpr int kKills = 5;
constexpr int kMaxKillDelayMs = 150;

std::string slurp(const std::string &path) {
    std::ifstream f(path);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

// Starts `tool() args...` with stdout into out, stderr into err and, when
// report is set, that file (appended to) on fd 3. Dies with the test.
pid_t spawn(const std::vector<std::string> &args, const std::string &out, const std::string &err,
            const std::string &report = "", const std::string &binary = "") {
    pid_t parent = ::getpid();
    pid_t pid = ::fork();
    if (pid != 0) {
        return pid;
    }
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) {
        ::_exit(127);
    }
    int o = ::open(out.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    int e = ::open(err.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
    ::dup2(o, 1);
    ::dup2(e, 2);
    if (!report.empty()) {
        int r = ::open(report.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
        ::dup2(r, 3);
    }
    std::vector<char *> argv;
    std::string bin = binary.empty() ? tool() : binary;
    argv.push_back(bin.data());
    std::vector<std::string> copy = args;
    for (auto &a : copy) {
        argv.push_back(a.data());
    }
    argv.push_back(nullptr);
    ::execv(bin.c_str(), argv.data());
    ::_exit(127);
}

int wait_exit(pid_t pid) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// Runs the tool to completion; its stdout and exit code.
std::pair<int, std::string> run(const std::vector<std::string> &args, const std::string &dir,
                                const std::string &binary = "") {
    std::string out = dir + "/run.out", err = dir + "/run.err";
    fs::remove(out);
    fs::remove(err);
    int rc = wait_exit(spawn(args, out, err, "", binary));
    return {rc, slurp(out) + slurp(err)};
}

// The complete lines of a report; a torn last line (no newline) is cut off so
// a restarted process can append.
std::vector<std::string> report_lines(const std::string &path, bool truncate_torn) {
    std::string s = slurp(path);
    size_t end = s.rfind('\n');
    end = end == std::string::npos ? 0 : end + 1;
    if (truncate_torn && end != s.size()) {
        fs::resize_file(path, end);
    }
    std::vector<std::string> lines;
    std::stringstream ss(s.substr(0, end));
    for (std::string l; std::getline(ss, l);) {
        lines.push_back(l);
    }
    return lines;
}

struct Loader {
    std::string node;
    std::string prefix;
    bool dual = false;
    std::string report, out, err;
    pid_t pid = -1;
};

test::EtcdServer *etcd() {
    static std::unique_ptr<test::EtcdServer> server;
    static bool tried = false;
    if (!tried) {
        tried = true;
        server = std::make_unique<test::EtcdServer>();
    }
    return server.get();
}

class IpamLoad : public ::testing::TestWithParam<std::string> {
  protected:
    void SetUp() override {
        ASSERT_FALSE(tool().empty()) << "IPAM_LOAD must name the ipam_load binary";
        if (GetParam() == "Etcd") {
            try {
                spec_ = "etcd:" + etcd()->endpoint() + ",/" +
                        ::testing::UnitTest::GetInstance()->current_test_info()->name() + "/";
            } catch (const std::exception &e) {
                FAIL() << "etcd is required for this test: " << e.what();
            }
        } else {
            spec_ = "embedded:" + dir_.path() + "/store";
        }
    }

    // 4 processes x per_process() allocations at once: two on node-a, one on
    // node-b, one on node-c; the even ones dual-stack. With kill, loader 0
    // (dual-stack, sharing node-a's blocks with loader 1) is killed kKills
    // times (kill_and_restart).
    void run_load(bool kill) {
        const int n = per_process();
        std::vector<Loader> ls(4);
        const char *nodes[] = {"node-a", "node-a", "node-b", "node-c"};
        for (int i = 0; i < 4; ++i) {
            ls[i].node = nodes[i];
            ls[i].prefix = "p" + std::to_string(i);
            ls[i].dual = i % 2 == 0;
            ls[i].report = dir_.path() + "/" + ls[i].prefix + ".report";
            ls[i].out = dir_.path() + "/" + ls[i].prefix + ".out";
            ls[i].err = dir_.path() + "/" + ls[i].prefix + ".err";
        }
        auto args = [&](const Loader &l, int start, int count, bool recover) {
            std::vector<std::string> a{"--store",         spec_,
                                       "--node",          l.node,
                                       "--handle-prefix", l.prefix,
                                       "--count",         std::to_string(count),
                                       "--start",         std::to_string(start),
                                       "--report-fd",     "3"};
            if (l.dual) {
                a.push_back("--dual");
            }
            if (recover) {
                a.push_back("--recover");
            }
            return a;
        };
        for (auto &l : ls) {
            l.pid = spawn(args(l, 0, n, false), l.out, l.err, l.report);
        }
        if (kill) {
            kill_and_restart(ls[0], n, args);
        }
        std::vector<double> rates;
        for (auto &l : ls) {
            if (l.pid < 0) {
                continue;
            }
            int rc = wait_exit(l.pid);
            ASSERT_EQ(rc, 0) << l.prefix << ": " << slurp(l.err);
            auto j = json::parse(slurp(l.out));
            rates.push_back(j["rate"].get<double>());
        }
        std::sort(rates.begin(), rates.end());
        double median = rates.size() % 2
                            ? rates[rates.size() / 2]
                            : (rates[rates.size() / 2 - 1] + rates[rates.size() / 2]) / 2;
        std::printf("[ ipam_load ] %s %s: allocations/s per process:", GetParam().c_str(),
                    kill ? "crash" : "concurrent");
        for (double r : rates) {
            std::printf(" %.1f", r);
        }
        std::printf(" (median %.1f)\n", median);
        RecordProperty("median_allocations_per_s", std::to_string(median));

        // What the processes say they got.
        std::map<std::string, std::vector<std::string>> reported;  // handle -> addresses
        std::map<std::string, std::string> owner;                  // address -> handle
        for (const auto &l : ls) {
            auto lines = report_lines(l.report, false);
            EXPECT_EQ(static_cast<int>(lines.size()), n) << l.prefix;
            for (const auto &line : lines) {
                std::stringstream ss(line);
                std::string h, a;
                ss >> h;
                EXPECT_TRUE(h.starts_with(l.prefix + "-")) << line;
                EXPECT_FALSE(reported.count(h)) << "handle reported twice: " << h;
                auto &addrs = reported[h];
                while (ss >> a) {
                    addrs.push_back(a);
                    auto [it, fresh] = owner.emplace(a, h);
                    EXPECT_TRUE(fresh) << a << " reported for " << it->second << " and " << h;
                }
                size_t want = l.dual ? 2 : 1;
                EXPECT_EQ(addrs.size(), want) << line;
                if (l.dual && addrs.size() == 2) {
                    EXPECT_EQ(addrs[0].find(':'), std::string::npos) << line;
                    EXPECT_NE(addrs[1].find(':'), std::string::npos) << line;
                }
            }
        }

        // The checker, and what the store holds: exactly the reports.
        auto listed = expect_consistent(kill ? &ls[0] : nullptr, "at the end");
        for (const auto &[a, h] : listed) {
            auto r = owner.find(a);
            if (r == owner.end()) {
                ADD_FAILURE() << "leaked: " << a << " of " << h << " is in no report";
            } else {
                EXPECT_EQ(r->second, h) << a;
            }
        }
        EXPECT_EQ(listed.size(), owner.size()) << "store holds a different number of addresses";
        for (const auto &[a, h] : owner) {
            EXPECT_TRUE(listed.count(a))
                << "reported " << a << " for " << h << " is not in the store";
        }
        EXPECT_EQ(static_cast<int>(reported.size()), 4 * n);
    }

    // Kills the victim kKills times, each once it allocates again plus a
    // random delay, checks the store right after each kill (before anyone
    // cleans up) and restarts it with --recover where its report ends.
    template <typename Args>
    void kill_and_restart(Loader &v, int n, Args args) {
        const unsigned s = seed();
        std::mt19937 rng(s);
        std::uniform_int_distribution<int> delay(0, kMaxKillDelayMs);
        std::string delays;
        int kills = 0;
        for (; kills < kKills && v.pid > 0; ++kills) {
            wait_for_progress(v);
            int ms = delay(rng);
            std::this_thread::sleep_for(std::chrono::milliseconds(ms));
            ::kill(v.pid, SIGKILL);
            int rc = wait_exit(v.pid);
            v.pid = -1;
            if (rc != 128 + SIGKILL) {
                ASSERT_EQ(rc, 0) << slurp(v.err);  // it was done before the kill
                break;
            }
            int done = static_cast<int>(report_lines(v.report, true).size());
            delays += (delays.empty() ? "" : " ") + std::to_string(ms);
            std::printf(
                "[ ipam_load ] %s: kill %d of %s %d ms after it resumed allocating, "
                "%d reported\n",
                GetParam().c_str(), kills + 1, v.prefix.c_str(), ms, done);
            expect_consistent(&v, "after kill " + std::to_string(kills + 1));
            if (done < n) {
                fs::remove(v.out);
                v.pid = spawn(args(v, done, n - done, true), v.out, v.err, v.report);
            }
        }
        std::printf("[ ipam_load ] %s: killed %s %d times (seed %u; delays ms: %s)\n",
                    GetParam().c_str(), v.prefix.c_str(), kills, s, delays.c_str());
        RecordProperty("kills", kills);
        RecordProperty("seed", std::to_string(s));
        EXPECT_GT(kills, 0) << "the victim finished before the first kill";
    }

    // Returns once l's report grew since this call (one more allocation
    // done, so l is past its start and recovery) or l has exited.
    static void wait_for_progress(const Loader &l) {
        auto size = [&] {
            std::error_code ec;  // not created yet: empty
            auto n = fs::file_size(l.report, ec);
            return ec ? 0 : n;
        };
        const auto size0 = size();
        for (int i = 0; i < 60'000; ++i) {
            siginfo_t info{};
            if (::waitid(P_PID, static_cast<id_t>(l.pid), &info, WEXITED | WNOHANG | WNOWAIT) ==
                    0 &&
                info.si_pid == l.pid) {
                return;
            }
            if (size() > size0) {
                return;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        ADD_FAILURE() << l.prefix << " made no progress for a minute";
    }

    // The store's allocations (address -> handle, each address once) after
    // checking that the checker finds nothing and, for `victim`, that each
    // of its handles holds all its addresses or none.
    std::map<std::string, std::string> expect_consistent(const Loader *victim,
                                                         const std::string &when) {
        auto [crc, findings] = run({"--store", spec_, "--check"}, dir_.path());
        EXPECT_EQ(crc, 0) << when << ": ipam check found:\n" << findings;
        // The operator's checker says the same.
        const char *fwdctl = std::getenv("FWDCTL");
        EXPECT_TRUE(fwdctl != nullptr) << "FWDCTL must name the fwdctl binary";
        if (fwdctl != nullptr) {
            auto [frc, report] = run({"ipam", "check", "--store", spec_}, dir_.path(), fwdctl);
            EXPECT_EQ(frc, 0) << when << ": fwdctl ipam check:\n" << report;
            EXPECT_NE(report.find("IPAM is consistent"), std::string::npos) << report;
        }
        auto [lrc, listing] = run({"--store", spec_, "--list"}, dir_.path());
        EXPECT_EQ(lrc, 0) << when << ": " << listing;
        std::map<std::string, std::string> listed;
        std::map<std::string, int> per_handle;
        std::stringstream in(lrc == 0 ? listing : "");
        for (std::string line; std::getline(in, line);) {
            auto j = json::parse(line);
            std::string a = j["address"], h = j["handle"];
            EXPECT_TRUE(listed.emplace(a, h).second) << when << ": address listed twice: " << a;
            per_handle[h]++;
        }
        for (const auto &[h, cnt] : per_handle) {
            if (victim && h.starts_with(victim->prefix + "-")) {
                EXPECT_EQ(cnt, victim->dual ? 2 : 1) << when << ": " << h << " is half done";
            }
        }
        return listed;
    }

    TempDir dir_;
    std::string spec_;
};

TEST_P(IpamLoad, FourProcessesAtOnce) {
    run_load(false);
}

TEST_P(IpamLoad, OneKilledAndRestarted) {
    run_load(true);
}

INSTANTIATE_TEST_SUITE_P(IpamLoad, IpamLoad, ::testing::Values("Embedded", "Etcd"),
                         [](const auto &info) { return info.param; });

}  // namespace
}  // namespace fwd::ipam
