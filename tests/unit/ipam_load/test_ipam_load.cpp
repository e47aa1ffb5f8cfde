// The concurrency and crash must-shows, with the real allocator on
// the real stores: ipam_load processes (ipam/tools) allocating at once on the
// embedded store and on a real etcd, one of them killed with SIGKILL at a
// random moment and restarted. Afterwards the checker is clean and the
// store holds exactly what the processes reported, nothing twice.
//
// The report protocol: a process writes "<handle> <addrs>" after assign()
// returns, so a handle without a line was in flight (or done, unreported)
// when its process died. The restarted process gets --recover: it releases
// that one handle first, then allocates it again, so every handle of the
// killed process ends complete or absent, and here: complete and reported.
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

#include "etcd_server.hpp"

namespace fwd::ipam {
namespace {

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

class TempDir {
  public:
    TempDir() {
        char tmpl[] = "/tmp/fwd-ipam-load-XXXXXX";
        if (::mkdtemp(tmpl) == nullptr) {
            throw std::runtime_error("mkdtemp failed");
        }
        path_ = tmpl;
    }
    ~TempDir() {
        std::error_code ec;
        fs::remove_all(path_, ec);
    }
    const std::string &path() const { return path_; }

  private:
    std::string path_;
};

std::string slurp(const std::string &path) {
    std::ifstream f(path);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
}

// Starts `tool() args...` with stdout into out, stderr into err and, when
// report is set, that file (appended to) on fd 3. Dies with the test.
pid_t spawn(const std::vector<std::string> &args, const std::string &out, const std::string &err,
            const std::string &report = "") {
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
    std::string bin = tool();
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
std::pair<int, std::string> run(const std::vector<std::string> &args, const std::string &dir) {
    std::string out = dir + "/run.out", err = dir + "/run.err";
    fs::remove(out);
    fs::remove(err);
    int rc = wait_exit(spawn(args, out, err));
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
    // (dual-stack, sharing node-a's blocks with loader 1) dies after 50-500 ms and
    // is restarted where its report ends.
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
        int restarted_at = -1;
        if (kill) {
            std::random_device rd;
            unsigned seed = rd();
            std::mt19937 rng(seed);
            int ms = std::uniform_int_distribution<int>(50, 500)(rng);
            std::this_thread::sleep_for(std::chrono::milliseconds(ms));
            Loader &v = ls[0];
            ::kill(v.pid, SIGKILL);
            int rc = wait_exit(v.pid);
            int done = static_cast<int>(report_lines(v.report, true).size());
            std::printf("[ ipam_load ] %s: killed %s after %d ms (seed %u, rc %d), %d reported\n",
                        GetParam().c_str(), v.prefix.c_str(), ms, seed, rc, done);
            if (rc == 128 + SIGKILL && done < n) {
                restarted_at = done;
                fs::remove(v.out);
                v.pid = spawn(args(v, done, n - done, true), v.out, v.err, v.report);
            } else {
                ASSERT_EQ(rc, 0) << slurp(v.err);
                v.pid = -1;
            }
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

        // The checker.
        auto [crc, findings] = run({"--store", spec_, "--check"}, dir_.path());
        EXPECT_EQ(crc, 0) << "ipam check found:\n" << findings;

        // What the store holds: exactly the reports.
        auto [lrc, listing] = run({"--store", spec_, "--list"}, dir_.path());
        ASSERT_EQ(lrc, 0) << listing;
        std::map<std::string, std::string> listed;  // address -> handle
        std::map<std::string, int> per_handle;
        std::stringstream ls_in(listing);
        for (std::string line; std::getline(ls_in, line);) {
            auto j = json::parse(line);
            std::string a = j["address"], h = j["handle"];
            auto [it, fresh] = listed.emplace(a, h);
            EXPECT_TRUE(fresh) << "address listed twice: " << a;
            per_handle[h]++;
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
        // The killed process: each of its handles complete or absent.
        if (kill) {
            const Loader &v = ls[0];
            for (const auto &[h, cnt] : per_handle) {
                if (h.starts_with(v.prefix + "-")) {
                    EXPECT_EQ(cnt, v.dual ? 2 : 1) << h << " is half done";
                }
            }
            RecordProperty("restarted_at", restarted_at);
        }
        EXPECT_EQ(static_cast<int>(reported.size()), 4 * n);
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
