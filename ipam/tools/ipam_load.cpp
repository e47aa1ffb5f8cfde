// ipam_load: drives the real Allocator over a real store from one process,
// so tests can run several at once, kill one and look at what is left.
//
//   ipam_load --store embedded:<dir> | etcd:<http://host:port>[,<key prefix>]
//     --node N --count K --handle-prefix P [--start S] [--recover] [--dual] [--report-fd FD]
//       Sets up the load pools (idempotent), then K allocations, handles P-S .. P-(S+K-1).
//       After each one returns, "<handle> <addr>[ <addr>]\n" goes to FD in one write(),
//       so a report line exists only for a complete allocation. --recover first
//       releases handle P-S: a predecessor killed while allocating it may have
//       finished it (an assign is one transaction) without reporting it.
//       Prints one JSON line at the end: {"allocations", "seconds", "rate"}.
//   ipam_load --store ... --check   Allocator::check() findings as JSON lines; exit 1 if any.
//   ipam_load --store ... --list    every allocation as a JSON line {handle, address, node, block}.
//   ipam_load --store ... --node N [--claim CIDR]... [--ip ADDR... --handle-prefix P [--start S]]
//       A cluster's state laid out by hand (the perf harness's remote nodes), in the pools the
//       store already has (no load pools): each --claim block claimed for N (confirmed), then
//       each --ip address allocated to N with handle P-S, P-(S+1), ... Fails (exit 1) when a
//       block is another node's or an address is taken. Prints {"claimed", "allocated"}.
#include <unistd.h>
#include <CLI/CLI.hpp>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "fwd/ipam/allocator.hpp"
#include "fwd/ipam/open_store.hpp"

namespace {

using namespace fwd::ipam;

constexpr const char *kPool4 = "load-v4";
constexpr const char *kPool6 = "load-v6";
// 4000+ addresses per family even with several nodes, and enough blocks per
// node that a node running two loaders does not fall back to borrowing only.
constexpr const char *kCidr4 = "10.128.0.0/16";
constexpr const char *kCidr6 = "fd00:128::/112";
constexpr int kMaxBlocksPerHost = 200;

// Several loaders start at once: each adds what is missing; losing the race
// to add a pool is fine as long as the pool is there afterwards.
void setup(Allocator &a) {
    for (auto [name, cidr, size] : {std::tuple{kPool4, kCidr4, 26}, {kPool6, kCidr6, 122}}) {
        if (a.pool(name)) {
            continue;
        }
        IpPool p;
        p.name = name;
        p.cidr = *Cidr::parse(cidr);
        p.block_size = size;
        try {
            a.add_pool(p);
        } catch (const IpamError &) {
            if (!a.pool(name)) {
                throw;
            }
        }
    }
    for (int tries = 0; a.config().max_blocks_per_host != kMaxBlocksPerHost; ++tries) {
        IpamConfig c = a.config();
        c.max_blocks_per_host = kMaxBlocksPerHost;
        try {
            a.set_config(c);
        } catch (const IpamError &) {
            if (tries > 100) {
                throw;
            }
        }
    }
}

void write_all(int fd, const std::string &s) {
    size_t off = 0;
    while (off < s.size()) {
        ssize_t n = ::write(fd, s.data() + off, s.size() - off);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0) {
            throw std::runtime_error("report fd: write failed");
        }
        off += static_cast<size_t>(n);
    }
}

int run_load(Allocator &a, const std::string &node, const std::string &prefix, int start, int count,
             bool dual, bool recover, int report_fd) {
    setup(a);
    if (recover) {
        a.release_handle(prefix + "-" + std::to_string(start));
    }
    auto t0 = std::chrono::steady_clock::now();
    for (int i = start; i < start + count; ++i) {
        AssignRequest r;
        r.handle = prefix + "-" + std::to_string(i);
        r.node = node;
        r.num4 = 1;
        r.num6 = dual ? 1 : 0;
        r.attrs.ns = "load";
        r.attrs.pod = "pod-" + std::to_string(i);
        r.attrs.container_id = r.handle;
        Assignment got = a.assign(r);
        std::string line = r.handle;
        for (const auto &ip : got.v4) {
            line += " " + ip.str();
        }
        for (const auto &ip : got.v6) {
            line += " " + ip.str();
        }
        if (report_fd >= 0) {
            write_all(report_fd, line + "\n");
        }
    }
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::cout << nlohmann::json{{"allocations", count},
                                {"seconds", s},
                                {"rate", s > 0 ? count / s : 0.0}}
                     .dump()
              << std::endl;
    return 0;
}

int run_layout(Allocator &a, const std::string &node, const std::vector<std::string> &blocks,
               const std::vector<std::string> &ips, const std::string &prefix, int start) {
    int claimed = 0;
    for (const auto &s : blocks) {
        auto c = Cidr::parse(s);
        if (!c) {
            std::cerr << "ipam_load: --claim " << s << ": not a CIDR\n";
            return 2;
        }
        if (!a.claim_block(node, *c)) {
            std::cerr << "ipam_load: block " << s << " is held by another node\n";
            return 1;
        }
        ++claimed;
    }
    int allocated = 0;
    for (const auto &s : ips) {
        auto ip = fwd::net::IpAddr::parse(s);
        if (!ip) {
            std::cerr << "ipam_load: --ip " << s << ": not an address\n";
            return 2;
        }
        AssignRequest r;
        r.handle = prefix + "-" + std::to_string(start + allocated);
        r.node = node;
        r.attrs.node = node;
        r.attrs.container_id = r.handle;
        r.fixed = {*ip};
        a.assign(r);  // throws when the address is taken or in no pool
        ++allocated;
    }
    std::cout << nlohmann::json{{"claimed", claimed}, {"allocated", allocated}}.dump() << std::endl;
    return 0;
}

}  // namespace

int main(int argc, char **argv) {
    CLI::App app{"IPAM load generator and checker"};
    std::string store_spec, node, prefix;
    int count = 0, start = 0, report_fd = -1;
    bool dual = false, recover = false, check = false, list = false;
    std::vector<std::string> claim_blocks, fixed_ips;
    app.add_option("--store", store_spec, "embedded:<dir> or etcd:<url>[,prefix]")->required();
    app.add_option("--node", node, "node name");
    app.add_option("--count", count, "allocations to make");
    app.add_option("--start", start, "index of the first handle");
    app.add_option("--handle-prefix", prefix, "handles are <prefix>-<i>");
    app.add_option("--report-fd", report_fd, "fd receiving one line per allocation");
    app.add_flag("--dual", dual, "IPv4 and IPv6 per allocation");
    app.add_flag("--recover", recover, "release handle <prefix>-<start> first");
    app.add_flag("--check", check, "print check() findings; exit 1 if any");
    app.add_flag("--list", list, "print every allocation");
    app.add_option("--claim", claim_blocks,
                   "claim this block of a pool for --node (repeatable; no load pools)");
    app.add_option("--ip", fixed_ips,
                   "allocate this address to --node, handles <prefix>-<start>... (repeatable; "
                   "no load pools)");
    CLI11_PARSE(app, argc, argv);
    try {
        auto store = open_store(store_spec);
        Allocator a(*store);
        if (check) {
            auto findings = a.check();
            for (const auto &f : findings) {
                std::cout << nlohmann::json{{"kind", to_string(f.kind)},
                                            {"subject", f.subject},
                                            {"detail", f.detail}}
                                 .dump()
                          << "\n";
            }
            return findings.empty() ? 0 : 1;
        }
        if (list) {
            for (const auto &al : a.allocations()) {
                std::cout << nlohmann::json{{"handle", al.attrs.handle},
                                            {"address", al.addr.str()},
                                            {"node", al.attrs.node},
                                            {"block", al.block.str()}}
                                 .dump()
                          << "\n";
            }
            return 0;
        }
        if (!claim_blocks.empty() || !fixed_ips.empty()) {
            if (node.empty() || (!fixed_ips.empty() && prefix.empty())) {
                std::cerr << "ipam_load: --claim needs --node; --ip needs --node and "
                             "--handle-prefix\n";
                return 2;
            }
            return run_layout(a, node, claim_blocks, fixed_ips, prefix, start);
        }
        if (node.empty() || prefix.empty() || count < 0) {
            std::cerr << "ipam_load: --node, --handle-prefix and --count are needed\n";
            return 2;
        }
        return run_load(a, node, prefix, start, count, dual, recover, report_fd);
    } catch (const std::exception &e) {
        std::cerr << "ipam_load: " << e.what() << "\n";
        return 3;
    }
}
