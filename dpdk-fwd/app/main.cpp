// dpdk-fwd: the node daemon. main only wires things: config, EAL, the packet
// pool, tables, workers, the control thread and the API server.
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_lcore.h>
#include <rte_malloc.h>
#include <rte_mbuf.h>
#include <rte_rcu_qsbr.h>
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "fwd/control/api.hpp"
#include "fwd/control/config.hpp"
#include "fwd/control/controller.hpp"
#include "fwd/control/log.hpp"
#include "fwd/control/telemetry.hpp"
#include "fwd/dp/eal.hpp"
#include "fwd/dp/meta.hpp"
#include "fwd/dp/tables.hpp"
#include "fwd/dp/worker.hpp"

namespace {

using fwd::control::NodeConfig;

constexpr const char *kUsage =
    "usage: dpdk-fwd --config FILE.json [--check-config]\n"
    "\n"
    "Userspace dataplane for Kubernetes pod networking (Calico-style, IPv4 and IPv6).\n"
    "\n"
    "  --config FILE     node configuration (JSON); see configs/README.md\n"
    "  --check-config    validate the configuration, print a summary and exit\n"
    "  --version         print the version and exit\n"
    "  --help            this text\n"
    "\n"
    "The daemon serves its API on the unix socket named by api_socket\n"
    "(default /run/dpdk-fwd/api.sock); drive it with fwdctl. SIGINT or SIGTERM\n"
    "stop it cleanly: pod ports are removed. The pods stay recorded in\n"
    "state_dir (default /var/lib/dpdk-fwd): the next start, after a stop or a\n"
    "crash, takes them back with their interfaces, addresses and routes.\n";

// Free hugepage memory in MB (default page size), from /proc/meminfo; -1 when unknown.
long free_hugepages_mb() {
    std::ifstream in("/proc/meminfo");
    std::string key;
    long free_pages = -1, page_kb = -1, value = 0;
    while (in >> key >> value) {
        if (key == "HugePages_Free:") {
            free_pages = value;
        } else if (key == "Hugepagesize:") {
            page_kb = value;
        }
        in.ignore(256, '\n');
    }
    return free_pages < 0 || page_kb < 0 ? -1 : free_pages * page_kb / 1024;
}

bool is_vdev(const std::string &devargs) {
    return devargs.rfind("net_", 0) == 0 || devargs.rfind("eth_", 0) == 0;
}

// lcore 0 = main, 1 = control, 2.. = workers, each pinned to its CPU.
std::vector<std::string> eal_args(const NodeConfig &c) {
    std::vector<std::string> a = {"dpdk-fwd"};
    std::string map = "0@" + std::to_string(c.main_core) + ",1@" + std::to_string(c.control_core);
    for (size_t i = 0; i < c.workers.size(); i++) {
        map += "," + std::to_string(i + 2) + "@" + std::to_string(c.workers[i].core);
    }
    a.push_back("--lcores=" + map);
    a.push_back("--main-lcore=0");
    a.push_back("--file-prefix=" + c.eal.file_prefix);
    if (c.eal.in_memory) {
        a.push_back("--in-memory");
    }
    if (c.eal.no_huge) {
        a.push_back("--no-huge");
    }
    a.push_back("-m");
    a.push_back(std::to_string(c.eal.memory_mb));
    if (!c.uplink || is_vdev(c.uplink->devargs)) {
        a.push_back("--no-pci");
    } else {
        a.push_back("-a");
        a.push_back(c.uplink->devargs);
    }
    if (!c.section<fwd::control::telemetry::TelemetryConfig>("telemetry").enabled) {
        a.push_back("--no-telemetry");
    }
    // rte_fib6 picks its AVX-512 lookup only when EAL allows 512-bit vectors
    // (the default cap is 256); it still checks the CPU flags itself. EAL
    // takes the option once: eal.extra_args may set another width (the perf
    // harness caps it at 256 under valgrind, which lacks AVX-512).
    bool simd_given = false;
    for (const auto &x : c.eal.extra_args) {
        simd_given |= x.rfind("--force-max-simd-bitwidth", 0) == 0;
    }
    if (!simd_given) {
        a.push_back("--force-max-simd-bitwidth=512");
    }
    for (const auto &x : c.eal.extra_args) {
        a.push_back(x);
    }
    return a;
}

struct LaunchArg {
    fwd::dp::Worker *worker = nullptr;
    fwd::control::Controller *controller = nullptr;
};

int lcore_main(void *p) {
    auto *a = static_cast<LaunchArg *>(p);
    if (a->worker != nullptr) {
        a->worker->run();
    } else {
        a->controller->run();
    }
    return 0;
}

}  // namespace

int main(int argc, char **argv) {
    std::string config_path;
    bool check_only = false;
    for (int i = 1; i < argc; i++) {
        std::string arg = argv[i];
        if (arg == "--help" || arg == "-h") {
            std::fputs(kUsage, stdout);
            return 0;
        }
        if (arg == "--version") {
            std::printf("dpdk-fwd %s\n", FWD_VERSION);
            return 0;
        }
        if (arg == "--check-config") {
            check_only = true;
        } else if (arg == "--config" && i + 1 < argc) {
            config_path = argv[++i];
        } else if (arg.rfind("--config=", 0) == 0) {
            config_path = arg.substr(9);
        } else {
            std::fprintf(stderr, "dpdk-fwd: unknown argument '%s'\n\n%s", arg.c_str(), kUsage);
            return 2;
        }
    }
    if (config_path.empty()) {
        std::fprintf(stderr, "dpdk-fwd: --config FILE is required\n\n%s", kUsage);
        return 2;
    }
    NodeConfig cfg;
    try {
        cfg = fwd::control::load_config(config_path);
    } catch (const std::exception &e) {
        std::fprintf(stderr, "dpdk-fwd: config %s: %s\n", config_path.c_str(), e.what());
        return 2;
    }
    if (check_only) {
        std::printf("config %s: ok (node %s, %zu worker(s), uplink %s)\n", config_path.c_str(),
                    cfg.node_name.c_str(), cfg.workers.size(),
                    cfg.uplink ? cfg.uplink->devargs.c_str() : "none");
        return 0;
    }

    // Our log, and DPDK's into it, before EAL says anything.
    fwd::control::log::init(cfg.section<fwd::control::LogConfig>("log"));
    fwd::control::log::capture_dpdk();

    // A kernel pod's port holds a fd per queue (one per worker by default): a
    // thousand pods pass the usual soft limit of 1024. Up to the hard limit,
    // as the operator set it.
    rlimit nofile{};
    if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
        const rlim_t was = nofile.rlim_cur;
        nofile.rlim_cur = nofile.rlim_max;
        if (setrlimit(RLIMIT_NOFILE, &nofile) != 0) {
            fwd::control::log::warn("cannot raise the open file limit from {}: {}", was,
                                    std::strerror(errno));
        }
    }

    // SIGINT/SIGTERM are taken by sigwait on the main thread; every thread
    // created from here on inherits the blocked mask.
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, nullptr);

    auto args = eal_args(cfg);
    std::vector<char *> argv_eal;
    for (auto &s : args) {
        argv_eal.push_back(s.data());
    }
    if (rte_eal_init(static_cast<int>(argv_eal.size()), argv_eal.data()) < 0) {
        const int err = rte_errno;
        std::fprintf(stderr, "dpdk-fwd: EAL init failed: %s\n", rte_strerror(err));
        if (err == ENOMEM && !cfg.eal.no_huge) {
            // The usual cause: more memory asked than the node has hugepages free. EAL's
            // own line says so among a dozen others; this one names the setting to change.
            std::fprintf(stderr,
                         "dpdk-fwd: not enough hugepage memory: eal.memory_mb is %u MB, "
                         "%ld MB of hugepages free (HugePages_Free in /proc/meminfo)\n",
                         cfg.eal.memory_mb, free_hugepages_mb());
        }
        return 1;
    }
    int rc = 0;
    {
        rte_mempool *pool = rte_pktmbuf_pool_create("fwd_pkts", cfg.mbufs, 256, fwd::dp::kMetaSize,
                                                    RTE_MBUF_DEFAULT_BUF_SIZE, rte_socket_id());
        if (pool == nullptr) {
            std::fprintf(stderr, "dpdk-fwd: cannot create the packet pool (%u mbufs): %s\n",
                         cfg.mbufs, rte_strerror(rte_errno));
            fwd::dp::eal_cleanup_all();
            return 1;
        }
        auto n_workers = static_cast<uint32_t>(cfg.workers.size());
        auto *qsbr = static_cast<rte_rcu_qsbr *>(
            rte_zmalloc("fwd_qsbr", rte_rcu_qsbr_get_memsize(n_workers), RTE_CACHE_LINE_SIZE));
        rte_rcu_qsbr_init(qsbr, n_workers);

        std::unique_ptr<fwd::dp::Tables> owned_tables;
        try {
            owned_tables = std::make_unique<fwd::dp::Tables>(
                cfg.tables.ipv4_routes, cfg.tables.ipv6_routes, qsbr,
                static_cast<int>(rte_socket_id()), cfg.tables.ipv4_tbl8s, cfg.tables.ipv6_tbl8s);
        } catch (const std::exception &e) {
            // Their memory comes from the hugepages too: name the settings that size them.
            std::fprintf(stderr,
                         "dpdk-fwd: cannot create the route tables (tables.ipv4_routes %u, "
                         "ipv6_routes %u, ipv4_tbl8s %u, ipv6_tbl8s %u): %s; %ld MB of "
                         "hugepages free (eal.memory_mb %u)\n",
                         cfg.tables.ipv4_routes, cfg.tables.ipv6_routes, cfg.tables.ipv4_tbl8s,
                         cfg.tables.ipv6_tbl8s, e.what(), free_hugepages_mb(), cfg.eal.memory_mb);
            rte_mempool_free(pool);
            rte_free(qsbr);
            fwd::dp::eal_cleanup_all();
            return 1;
        }
        fwd::dp::Tables &tables = *owned_tables;
        fwd::dp::NodeAddrs node;
        node.gw6 = fwd::net::calico_gateway6();
        if (cfg.node_ip4) {
            node.has_ip4 = true;
            node.ip4 = cfg.node_ip4->addr;
        }
        if (cfg.node_ip6) {
            node.has_ip6 = true;
            node.ip6 = cfg.node_ip6->addr;
        }
        // With a host tap, traffic for the node's own addresses goes to its kernel.
        node.host_punt = cfg.host.has_value() && cfg.uplink.has_value();
        tables.set_node(node);

        fwd::dp::IdleParams idle{cfg.idle.enabled, cfg.idle.spin_polls, cfg.idle.pause_polls,
                                 cfg.idle.max_sleep_us, cfg.idle.max_block_ms};
        std::vector<std::unique_ptr<fwd::dp::Worker>> workers;
        std::vector<fwd::dp::Worker *> wptrs;
        for (unsigned i = 0; i < n_workers; i++) {
            workers.push_back(std::make_unique<fwd::dp::Worker>(
                i, tables, pool, idle, cfg.icmp_errors_per_sec, qsbr,
                cfg.host ? cfg.host->punt_rate_pps : 10000));
            wptrs.push_back(workers.back().get());
        }
        // The control plane's modules (routes, endpoints, IPAM, CNI, ...)
        // register themselves; the controller makes them all.
        std::unique_ptr<fwd::control::Controller> controller;
        try {
            controller = std::make_unique<fwd::control::Controller>(cfg, tables, wptrs, pool);
            // node.shutdown: the same stop as SIGTERM, through the sigwait below
            controller->set_stop_request([] { ::kill(::getpid(), SIGTERM); });
            controller->start();
        } catch (const std::exception &e) {
            std::fprintf(stderr, "dpdk-fwd: start failed: %s\n", e.what());
            rc = 1;
        }
        if (rc == 0) {
            std::vector<LaunchArg> launch(n_workers + 1);
            for (unsigned i = 0; i < n_workers; i++) {
                launch[i].worker = workers[i].get();
                rte_eal_remote_launch(lcore_main, &launch[i], i + 2);
            }
            launch[n_workers].controller = controller.get();
            rte_eal_remote_launch(lcore_main, &launch[n_workers], 1);

            fwd::control::ApiServer api(
                cfg.api_socket, controller->api_ops(),
                [&](const std::string &op, const nlohmann::json &a) {
                    return controller->call(op, a);
                },
                cfg.api_socket_group);
            try {
                controller->online();
                api.start();
                std::printf("dpdk-fwd: node %s up: %u worker(s), API on %s\n",
                            cfg.node_name.c_str(), n_workers, cfg.api_socket.c_str());
                std::fflush(stdout);
                int sig = 0;
                sigwait(&sigs, &sig);
                std::printf("dpdk-fwd: signal %d, shutting down\n", sig);
            } catch (const std::exception &e) {
                std::fprintf(stderr, "dpdk-fwd: start failed: %s\n", e.what());
                rc = 1;
            }
            api.stop();
            controller->offline();
            controller->stop();
            rte_eal_wait_lcore(1);
            controller->shutdown();
            for (auto &w : workers) {
                w->stop();
            }
            rte_eal_mp_wait_lcore();
        }
        controller.reset();
        rte_mempool_free(pool);
        rte_free(qsbr);
    }
    fwd::dp::eal_cleanup_all();
    return rc;
}
