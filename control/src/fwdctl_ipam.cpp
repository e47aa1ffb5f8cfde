// fwdctl ipam show | check | release, fwdctl apply -f | delete -f: the IPAM datastore and the
// node registry beside it (IPPool, IPAMConfiguration, Node), the way calicoctl talks to
// Calico's datastore. No daemon is involved: a command's CLI11 callback hands fwdctl's main()
// the function to run (Command::local) instead of a request for the daemon.
//
// The store: --store SPEC, else $FWD_IPAM_STORE, else ipam::kDefaultStoreSpec.
// Exit codes, as for the rest of fwdctl: 0 success, 1 an error (or `ipam check` found
// something), 2 usage error, 3 the store cannot be reached.
#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "fwd/ipam/allocator.hpp"
#include "fwd/ipam/document.hpp"
#include "fwd/ipam/node.hpp"
#include "fwd/ipam/open_store.hpp"
#include "fwd/ipam/resource.hpp"
#include "fwdctl.hpp"

namespace fwd::control::fwdctl {

namespace {

constexpr const char *kStoreEnv = "FWD_IPAM_STORE";

struct IpamOptions {
    std::string store = ipam::kDefaultStoreSpec;
    std::string node;
    std::string handle;
    std::string ip;
    std::vector<std::string> release_ips;
    std::string file;
    const CLI::Option *json_flag = nullptr;  // fwdctl's global --json
    bool as_json() const { return json_flag != nullptr && json_flag->count() > 0; }
};

// The store and an allocator over it, for one command.
struct Ipam {
    explicit Ipam(const std::string &spec) : store(ipam::open_store(spec)), alloc(*store) {}
    std::unique_ptr<ipam::Store> store;
    ipam::Allocator alloc;
};

// A JSON array of items, each converted by `one`.
template <typename T, typename F>
json json_array(const std::vector<T> &items, F one) {
    json a = json::array();
    for (const auto &item : items) {
        a.push_back(one(item));
    }
    return a;
}

// Text columns, two spaces apart; `right` marks the numeric ones.
void print_columns(const std::vector<std::string> &titles, const std::vector<bool> &right,
                   const std::vector<std::vector<std::string>> &rows) {
    std::vector<size_t> width;
    for (const auto &t : titles) {
        width.push_back(t.size());
    }
    for (const auto &r : rows) {
        for (size_t i = 0; i < r.size() && i < width.size(); ++i) {
            width[i] = std::max(width[i], r[i].size());
        }
    }
    auto line = [&](const std::vector<std::string> &cells) {
        std::ostringstream s;
        for (size_t i = 0; i < cells.size(); ++i) {
            const std::string pad(width[i] - cells[i].size(), ' ');
            s << (i ? "  " : "") << (right[i] ? pad + cells[i] : cells[i] + pad);
        }
        std::string out = s.str();
        out.erase(out.find_last_not_of(' ') + 1);
        std::cout << out << '\n';
    };
    line(titles);
    for (const auto &r : rows) {
        line(r);
    }
}

std::string yes_no(bool b) {
    return b ? "yes" : "no";
}

std::string dash_if_empty(const std::string &s) {
    return s.empty() ? "-" : s;
}

// ---- show ----

// Addresses in a pool: 2^(bits - len), exact up to 2^127 (no valid pool is larger).
std::string capacity_text(const ipam::Cidr &c) {
    ipam::U128 n = ipam::U128{1} << (c.bits() - c.len());
    std::string s;
    do {
        s.insert(s.begin(), static_cast<char>('0' + static_cast<int>(n % 10)));
        n /= 10;
    } while (n > 0);
    return s;
}

json capacity_json(const ipam::Cidr &c) {
    if (c.bits() - c.len() < 64) {
        return c.size();
    }
    return capacity_text(c);  // beyond 64 bits: a decimal string
}

std::string uses_text(const ipam::IpPool &p) {
    std::string s;
    for (auto u : p.allowed_uses) {
        s += (s.empty() ? "" : ",") + std::string(ipam::to_string(u));
    }
    return s;
}

json pool_json(const ipam::PoolUsage &u) {
    json j = u.pool;
    j["blocks"] = u.blocks;
    j["used"] = u.used;
    j["freeInBlocks"] = u.free_in_blocks;
    j["capacity"] = capacity_json(u.pool.cidr);
    return j;
}

json block_json(const ipam::BlockInfo &b) {
    return json{{"cidr", b.cidr.str()},
                {"pool", b.pool.empty() ? json(nullptr) : json(b.pool)},
                {"node", b.node ? json(*b.node) : json(nullptr)},
                {"state", b.state ? json(ipam::to_string(*b.state)) : json(nullptr)},
                {"used", b.used},
                {"free", b.free}};
}

json allocation_json(const ipam::AllocationInfo &a) {
    return json{{"address", a.addr.str()}, {"handle", a.attrs.handle},
                {"namespace", a.attrs.ns}, {"pod", a.attrs.pod},
                {"node", a.attrs.node},    {"containerID", a.attrs.container_id},
                {"block", a.block.str()},  {"borrowed", a.borrowed}};
}

void print_allocations(const std::vector<ipam::AllocationInfo> &as) {
    std::vector<std::vector<std::string>> rows;
    for (const auto &a : as) {
        const std::string pod =
            a.attrs.ns.empty() && a.attrs.pod.empty() ? "-" : a.attrs.ns + "/" + a.attrs.pod;
        rows.push_back({a.addr.str(), a.attrs.handle, pod, dash_if_empty(a.attrs.node),
                        a.block.str(), yes_no(a.borrowed)});
    }
    print_columns({"ADDRESS", "HANDLE", "NAMESPACE/POD", "NODE", "BLOCK", "BORROWED"},
                  {false, false, false, false, false, false}, rows);
}

void print_pools(const std::vector<ipam::PoolUsage> &pools) {
    std::vector<std::vector<std::string>> rows;
    for (const auto &u : pools) {
        const auto &p = u.pool;
        rows.push_back({p.name, p.cidr.str(), std::to_string(p.block_size),
                        std::to_string(u.blocks), std::to_string(u.used),
                        std::to_string(u.free_in_blocks), capacity_text(p.cidr),
                        yes_no(p.nat_outgoing), std::string(ipam::to_string(p.vxlan_mode)),
                        std::string(ipam::to_string(p.ipip_mode)), yes_no(p.disabled),
                        p.node_selector, uses_text(p)});
    }
    print_columns(
        {"POOL", "CIDR", "BLOCK-SIZE", "BLOCKS", "USED", "FREE-IN-BLOCKS", "CAPACITY",
         "NAT-OUTGOING", "VXLAN", "IPIP", "DISABLED", "NODE-SELECTOR", "USES"},
        {false, false, true, true, true, true, true, false, false, false, false, false, false},
        rows);
}

void print_blocks(const std::vector<ipam::BlockInfo> &blocks) {
    std::vector<std::vector<std::string>> rows;
    for (const auto &b : blocks) {
        rows.push_back({b.cidr.str(), dash_if_empty(b.pool), b.node.value_or("-"),
                        b.state ? std::string(ipam::to_string(*b.state)) : "-",
                        std::to_string(b.used), std::to_string(b.free)});
    }
    print_columns({"BLOCK", "POOL", "NODE", "STATE", "USED", "FREE"},
                  {false, false, false, false, true, true}, rows);
}

int show_overview(Ipam &ipam, const IpamOptions &o) {
    const auto pools = ipam.alloc.pool_usage();
    const auto blocks = ipam.alloc.blocks();
    const ipam::IpamConfig config = ipam.alloc.config();
    if (o.as_json()) {
        print_json({{"store", ipam.store->describe()},
                    {"config", config},
                    {"pools", json_array(pools, pool_json)},
                    {"blocks", json_array(blocks, block_json)}});
        return kExitOk;
    }
    std::cout << "IPAM store " << ipam.store->describe() << ": strictAffinity "
              << (config.strict_affinity ? "true" : "false") << ", maxBlocksPerHost "
              << config.max_blocks_per_host << " (" << config.effective_max_blocks()
              << " blocks per node)\n\n";
    print_pools(pools);
    std::cout << '\n';
    print_blocks(blocks);
    return kExitOk;
}

// One node: the blocks affine to it and the addresses it holds, its own or borrowed.
int show_node(Ipam &ipam, const IpamOptions &o) {
    auto blocks = ipam.alloc.blocks();
    std::erase_if(blocks, [&](const ipam::BlockInfo &b) { return b.node != o.node; });
    auto allocs = ipam.alloc.allocations();
    std::erase_if(allocs, [&](const ipam::AllocationInfo &a) { return a.attrs.node != o.node; });
    if (o.as_json()) {
        print_json({{"node", o.node},
                    {"blocks", json_array(blocks, block_json)},
                    {"allocations", json_array(allocs, allocation_json)}});
        return kExitOk;
    }
    const auto borrowed = std::count_if(allocs.begin(), allocs.end(),
                                        [](const ipam::AllocationInfo &a) { return a.borrowed; });
    std::cout << "node " << o.node << ": " << blocks.size() << " block(s), " << allocs.size()
              << " address(es), " << borrowed << " borrowed\n\n";
    print_blocks(blocks);
    std::cout << '\n';
    print_allocations(allocs);
    return kExitOk;
}

int show_handle(Ipam &ipam, const IpamOptions &o) {
    std::vector<ipam::AllocationInfo> held;
    for (auto &a : ipam.alloc.allocations()) {
        if (a.attrs.handle == o.handle) {
            held.push_back(std::move(a));
        }
    }
    if (o.as_json()) {
        print_json({{"handle", o.handle}, {"addresses", json_array(held, allocation_json)}});
    } else if (held.empty()) {
        std::cout << "handle " << o.handle << " holds no addresses\n";
    } else {
        print_allocations(held);
    }
    return kExitOk;
}

int show_ip(Ipam &ipam, const IpamOptions &o) {
    const auto addr = net::IpAddr::parse(o.ip);
    if (!addr) {
        throw CLI::ValidationError("--ip", "'" + o.ip + "' is not an IPv4 or IPv6 address");
    }
    std::optional<ipam::AllocationInfo> found;
    for (auto &a : ipam.alloc.allocations()) {
        if (a.addr == *addr) {
            found = std::move(a);
        }
    }
    std::string pool;
    for (const auto &p : ipam.alloc.pools()) {
        if (p.cidr.contains(*addr)) {
            pool = p.name;
        }
    }
    std::optional<ipam::BlockInfo> block;
    for (auto &b : ipam.alloc.blocks()) {
        if (b.cidr.contains(*addr)) {
            block = std::move(b);
        }
    }
    if (o.as_json()) {
        json j = found ? allocation_json(*found) : json{{"address", addr->str()}};
        j["allocated"] = found.has_value();
        j["pool"] = pool.empty() ? json(nullptr) : json(pool);
        j["blockAffinity"] = block && block->node ? json(*block->node) : json(nullptr);
        print_json(j);
        return kExitOk;
    }
    const std::string block_text =
        block ? block->cidr.str() + " (affine to " + block->node.value_or("no node") + ")"
              : "none claimed";
    if (!found) {
        std::cout << addr->str() << " is not allocated (pool " << (pool.empty() ? "none" : pool)
                  << ", block " << block_text << ")\n";
        return kExitOk;
    }
    const auto &a = *found;
    std::cout << addr->str() << " is allocated to handle " << a.attrs.handle << '\n'
              << "  namespace/pod  " << dash_if_empty(a.attrs.ns) << "/"
              << dash_if_empty(a.attrs.pod) << '\n'
              << "  container      " << dash_if_empty(a.attrs.container_id) << '\n'
              << "  node           " << dash_if_empty(a.attrs.node) << '\n'
              << "  pool           " << (pool.empty() ? "none" : pool) << '\n'
              << "  block          " << block_text << '\n'
              << "  borrowed       " << (a.borrowed ? "yes (the block is not the node's)" : "no")
              << '\n';
    return kExitOk;
}

int show(const IpamOptions &o) {
    Ipam ipam(o.store);
    if (!o.ip.empty()) {
        return show_ip(ipam, o);
    }
    if (!o.handle.empty()) {
        return show_handle(ipam, o);
    }
    if (!o.node.empty()) {
        return show_node(ipam, o);
    }
    return show_overview(ipam, o);
}

// ---- check ----

int check(const IpamOptions &o) {
    Ipam ipam(o.store);
    const auto findings = ipam.alloc.check();
    std::map<std::string, int> by_kind;
    for (const auto &f : findings) {
        by_kind[std::string(ipam::to_string(f.kind))]++;
    }
    if (o.as_json()) {
        print_json({{"store", ipam.store->describe()},
                    {"consistent", findings.empty()},
                    {"counts", by_kind},
                    {"findings", json_array(findings, [](const ipam::Finding &f) {
                         return json{{"kind", ipam::to_string(f.kind)},
                                     {"subject", f.subject},
                                     {"detail", f.detail}};
                     })}});
        return findings.empty() ? kExitOk : kExitError;
    }
    if (findings.empty()) {
        size_t addresses = 0;
        const auto blocks = ipam.alloc.blocks();
        for (const auto &b : blocks) {
            addresses += static_cast<size_t>(b.used);
        }
        std::cout << "IPAM is consistent: " << ipam.alloc.pools().size() << " pool(s), "
                  << blocks.size() << " block(s), " << addresses << " allocated address(es) in "
                  << ipam.store->describe() << '\n';
        return kExitOk;
    }
    std::vector<std::vector<std::string>> rows;
    for (const auto &f : findings) {
        rows.push_back({std::string(ipam::to_string(f.kind)), f.subject, f.detail});
    }
    print_columns({"KIND", "SUBJECT", "DETAIL"}, {false, false, false}, rows);
    std::string counts;
    for (const auto &[kind, n] : by_kind) {
        counts += (counts.empty() ? "" : ", ") + std::to_string(n) + " " + kind;
    }
    std::cout << "\n"
              << findings.size() << " problem(s) in " << ipam.store->describe() << ": " << counts
              << "\n";
    return kExitError;
}

// ---- release ----

int release_ips(Ipam &ipam, const IpamOptions &o) {
    std::vector<net::IpAddr> addrs;
    for (const auto &s : o.release_ips) {
        auto a = net::IpAddr::parse(s);
        if (!a) {
            throw CLI::ValidationError("--ip", "'" + s + "' is not an IPv4 or IPv6 address");
        }
        addrs.push_back(*a);
    }
    // All or nothing: every address must be allocated before any is released.
    std::map<net::IpAddr, ipam::AllocationInfo> allocated;
    for (auto &a : ipam.alloc.allocations()) {
        allocated.emplace(a.addr, std::move(a));
    }
    int missing = 0;
    for (const auto &a : addrs) {
        if (!allocated.contains(a)) {
            std::cerr << "fwdctl: " << a.str() << " is not allocated\n";
            ++missing;
        }
    }
    if (missing > 0) {
        std::cerr << "fwdctl: nothing released\n";
        return kExitError;
    }
    json out = json::array();
    int rc = kExitOk;
    for (const auto &a : addrs) {
        const auto &info = allocated.at(a);
        if (!ipam.alloc.release_address(a)) {
            std::cerr << "fwdctl: " << a.str() << " was released by someone else meanwhile\n";
            rc = kExitError;
            continue;
        }
        out.push_back({{"address", a.str()}, {"handle", info.attrs.handle}});
        if (!o.as_json()) {
            std::cout << "released " << a.str() << " (handle " << info.attrs.handle << ", node "
                      << dash_if_empty(info.attrs.node) << ")\n";
        }
    }
    if (o.as_json()) {
        print_json({{"released", out}});
    }
    return rc;
}

int release_handle(Ipam &ipam, const IpamOptions &o) {
    // The handle record itself: a leaked one (counting addresses no block holds) is only that.
    const bool had_record =
        ipam.store->get(ipam.alloc.options().prefix + "handles/" + o.handle).has_value();
    int released = ipam.alloc.release_handle(o.handle);
    // Addresses whose handle record is missing are released one by one.
    for (const auto &a : ipam.alloc.allocations()) {
        if (a.attrs.handle == o.handle && ipam.alloc.release_address(a.addr)) {
            ++released;
        }
    }
    if (released == 0 && !had_record) {
        std::cerr << "fwdctl: handle " << o.handle << " is unknown: no handle record, no address\n";
        return kExitError;
    }
    if (o.as_json()) {
        print_json({{"handle", o.handle}, {"released", released}});
    } else {
        std::cout << "released " << released << " address(es) of handle " << o.handle
                  << (released == 0 ? " (removed its empty handle record)" : "") << '\n';
    }
    return kExitOk;
}

int release(const IpamOptions &o) {
    Ipam ipam(o.store);
    return o.release_ips.empty() ? release_handle(ipam, o) : release_ips(ipam, o);
}

// ---- apply -f / delete -f ----

std::string read_file(const std::string &file) {
    std::ostringstream s;
    if (file == "-") {
        s << std::cin.rdbuf();
        return s.str();
    }
    std::ifstream in(file, std::ios::binary);
    if (!in) {
        throw CLI::ValidationError("-f", "cannot read " + file + ": " + std::strerror(errno));
    }
    s << in.rdbuf();
    return s.str();
}

// The origin of the plan's resource of that kind and name, to put before an error about it.
std::string origin_of(const std::vector<ipam::PlannedChange> &plan, bool node,
                      const std::string &name) {
    auto it = std::find_if(plan.begin(), plan.end(), [&](const ipam::PlannedChange &c) {
        const auto &r = c.resource;
        return node ? r.is_node() && r.node().name == name : r.is_pool() && r.pool().name == name;
    });
    return it != plan.end() ? it->resource.origin.str() + ": " : "";
}

// Every node of the plan, as the registry's check wants them.
std::vector<ipam::NodeRecord> planned_nodes(const std::vector<ipam::PlannedChange> &plan) {
    std::vector<ipam::NodeRecord> out;
    for (const auto &c : plan) {
        if (c.resource.is_node()) {
            out.push_back(c.resource.node());
        }
    }
    return out;
}

// Writes a validated plan: the pools and the IPAM configuration in one transaction (all of it
// or, on a failure, nothing), then the nodes one by one through the registry (apply checked
// every one of them before: a writer racing this one can still make a node's put fail, and
// the message then says what was written).
int execute(ipam::Allocator &alloc, ipam::NodeRegistry &registry,
            const std::vector<ipam::PlannedChange> &plan, json &results) {
    ipam::Allocator::PoolChanges changes;
    std::vector<const ipam::PlannedChange *> node_changes;
    bool pools = false;  // a pool or the IPAM configuration is in the plan
    for (const auto &c : plan) {
        const auto &r = c.resource;
        if (r.is_node()) {
            if (c.action != ipam::PlannedChange::Action::kUnchanged) {
                node_changes.push_back(&c);
            }
            continue;
        }
        pools = true;
        switch (c.action) {
            case ipam::PlannedChange::Action::kCreate:
            case ipam::PlannedChange::Action::kUpdate:
                if (r.is_pool()) {
                    changes.put.push_back(r.pool());
                } else {
                    changes.config = r.config();
                }
                break;
            case ipam::PlannedChange::Action::kDelete:
                if (r.is_pool()) {
                    changes.remove.push_back(r.pool().name);
                } else {
                    changes.config = ipam::IpamConfig{};
                }
                break;
            case ipam::PlannedChange::Action::kUnchanged:
                break;
        }
    }
    try {
        if (pools) {
            alloc.apply(changes);
        }
    } catch (const ipam::PoolError &e) {
        std::cerr << "fwdctl: " << origin_of(plan, false, e.pool()) << e.what()
                  << "\nfwdctl: nothing was written\n";
        return kExitError;
    } catch (const ipam::IpamError &e) {
        std::cerr << "fwdctl: " << e.what() << "\nfwdctl: nothing was written\n";
        return kExitError;
    }
    for (size_t i = 0; i < node_changes.size(); ++i) {
        const auto &c = *node_changes[i];
        try {
            if (c.action == ipam::PlannedChange::Action::kDelete) {
                registry.remove(c.resource.node().name);
            } else {
                registry.put(c.resource.node());
            }
        } catch (const ipam::IpamError &e) {
            std::cerr << "fwdctl: " << c.resource.origin.str() << ": " << e.what() << '\n'
                      << "fwdctl: written before it: "
                      << (pools ? "the pools and the IPAM configuration, " : "") << i
                      << " node(s); not written: this node and the " << node_changes.size() - i - 1
                      << " after it\n";
            return kExitError;
        }
    }
    for (const auto &c : plan) {
        results.push_back({{"kind", c.resource.origin.kind},
                           {"name", c.resource.origin.name},
                           {"action", ipam::to_string(c.action)},
                           {"document", c.resource.origin.document}});
    }
    return kExitOk;
}

// The registry's records of the nodes the resources name (a malformed one counts as absent:
// applying the node writes over it).
std::vector<ipam::NodeRecord> stored_nodes(ipam::NodeRegistry &registry,
                                           const std::vector<ipam::Resource> &resources) {
    std::vector<ipam::NodeRecord> out;
    for (const auto &r : resources) {
        if (!r.is_node()) {
            continue;
        }
        try {
            if (auto n = registry.get(r.node().name)) {
                out.push_back(std::move(*n));
            }
        } catch (const ipam::NodeError &) {
            // malformed: no record to compare with, the apply writes over it
        }
    }
    return out;
}

// The names of the nodes the resources name that have a record (readable or not).
std::vector<std::string> stored_node_names(ipam::NodeRegistry &registry,
                                           const std::vector<ipam::Resource> &resources) {
    std::vector<std::string> out;
    for (const auto &r : resources) {
        if (r.is_node() && registry.exists(r.node().name)) {
            out.push_back(r.node().name);
        }
    }
    return out;
}

// The IPAM kinds' entry of `apply -f` / `delete -f`: pools, the IPAM configuration, nodes.
FileKinds::Write stage_ipam(const std::vector<ipam::RawResource> &raw, ipam::Store &store,
                            bool del) {
    auto resources = ipam::decode_resources(raw);
    // The allocator and the registry outlive this call: the write step uses them.
    auto alloc = std::make_shared<ipam::Allocator>(store);
    auto registry = std::make_shared<ipam::NodeRegistry>(store);
    std::vector<ipam::PlannedChange> plan;
    if (!del) {
        plan = ipam::plan_apply(resources, alloc->pools(), alloc->config(),
                                stored_nodes(*registry, resources));
        if (const auto nodes = planned_nodes(plan); !nodes.empty()) {
            try {
                registry->check(nodes);  // every node before any write: all or nothing
            } catch (const ipam::NodeError &e) {
                throw std::runtime_error(origin_of(plan, true, e.node()) + e.what());
            }
        }
    } else {
        plan =
            ipam::plan_delete(resources, alloc->pools(), stored_node_names(*registry, resources));
        // No pool goes while any of them still holds addresses.
        std::map<std::string, uint64_t> used;
        for (const auto &u : alloc->pool_usage()) {
            used[u.pool.name] = u.used;
        }
        std::string busy;
        for (const auto &c : plan) {
            if (c.resource.is_pool() && used[c.resource.pool().name] > 0) {
                busy += (busy.empty() ? "" : "\nfwdctl: ") + c.resource.origin.str() +
                        ": still has " + std::to_string(used[c.resource.pool().name]) +
                        " allocated address(es); release them first (fwdctl ipam show)";
            }
        }
        if (!busy.empty()) {
            throw std::runtime_error(busy);
        }
    }
    return [alloc, registry, plan = std::move(plan)](json &results) {
        return execute(*alloc, *registry, plan, results);
    };
}

// `apply -f FILE` / `delete -f FILE`: every kind's entry stages its resources, then each
// writes. A kind no entry takes is refused before anything is read from the store.
int apply_file(const IpamOptions &o, bool del) {
    const std::string source = o.file == "-" ? "<stdin>" : o.file;
    const auto raw = ipam::split_resources(read_file(o.file), source);
    const auto kinds = registered_file_kinds();
    std::vector<std::vector<ipam::RawResource>> mine(kinds.size());
    for (const auto &r : raw) {
        auto it = std::find_if(kinds.begin(), kinds.end(),
                               [&](const FileKinds &k) { return k.handles(r.origin.kind); });
        if (it == kinds.end()) {
            std::string known;
            for (const auto &k : kinds) {
                known += (known.empty() ? "" : ", ") + k.kinds;
            }
            ipam::ResourceOrigin origin = r.origin;
            origin.name.clear();
            throw ipam::ResourceError(
                origin, "kind",
                "unknown kind '" + origin.kind + "' (want " + known + ", or a List of them)");
        }
        mine[static_cast<size_t>(it - kinds.begin())].push_back(r);
    }
    auto store = ipam::open_store(o.store);
    std::vector<FileKinds::Write> writes;
    for (size_t i = 0; i < kinds.size(); ++i) {
        if (mine[i].empty()) {
            continue;
        }
        try {
            writes.push_back(kinds[i].stage(mine[i], *store, del));
        } catch (const ipam::StoreError &) {
            throw;
        } catch (const std::exception &e) {
            std::cerr << "fwdctl: " << e.what() << "\nfwdctl: nothing was written\n";
            return kExitError;
        }
    }
    json results = json::array();
    for (auto &w : writes) {
        if (int rc = w(results); rc != kExitOk) {
            return rc;
        }
    }
    if (o.as_json()) {
        print_json({{"resources", results}});
        return kExitOk;
    }
    for (const auto &r : results) {
        std::cout << r["kind"].get<std::string>() << " '" << r["name"].get<std::string>() << "' "
                  << r["action"].get<std::string>() << '\n';
    }
    return kExitOk;
}

int apply(const IpamOptions &o) {
    return apply_file(o, false);
}

int remove(const IpamOptions &o) {
    return apply_file(o, true);
}

// The callback of a command that works on the store given by `store`: it leaves the command
// in `local` for main() to run once parsing is done.
std::function<void()> store_command(std::shared_ptr<IpamOptions> o,
                                    std::shared_ptr<std::string> store,
                                    int (*command)(const IpamOptions &),
                                    std::function<int()> &local) {
    return [o, store, command, &local] {
        o->store = *store;
        local = [o, command] { return run_guarded([o, command] { return command(*o); }); };
    };
}

// `apply -f FILE` / `delete -f FILE`.
void add_file_command(CLI::App &app, const std::string &name, const std::string &help,
                      const std::shared_ptr<IpamOptions> &o, int (*command)(const IpamOptions &),
                      std::function<int()> &local) {
    CLI::App *cmd = app.add_subcommand(name, help);
    cmd->add_option("-f,--filename", o->file, "resource file, or - for stdin")->required();
    cmd->callback(store_command(o, add_store_option(cmd), command, local));
}

// ipam show | check | release, apply -f, delete -f, in this --help order.
void add_ipam_commands(CLI::App &app, Command &command) {
    std::function<int()> &local = command.local;
    auto o = std::make_shared<IpamOptions>();
    o->json_flag = app.get_option_no_throw("--json");

    CLI::App *group = app.add_subcommand(
        "ipam", "IP address management, straight from the IPAM store (no daemon needed)");
    group->require_subcommand(1);
    auto store = add_store_option(group);

    CLI::App *show_cmd = group->add_subcommand(
        "show", "pools with their usage and blocks with their nodes; or one node, handle or IP");
    auto *node = show_cmd->add_option("--node", o->node, "only this node's blocks and addresses");
    auto *handle = show_cmd->add_option("--handle", o->handle, "the addresses of this handle");
    auto *ip = show_cmd->add_option("--ip", o->ip, "who holds this address");
    handle->excludes(ip)->excludes(node);
    ip->excludes(node);
    show_cmd->callback(store_command(o, store, show, local));

    CLI::App *check_cmd = group->add_subcommand(
        "check",
        "look for inconsistencies (leaked handles, doubled addresses, stale claims...); "
        "exit 1 if any");
    check_cmd->callback(store_command(o, store, check, local));

    CLI::App *release_cmd =
        group->add_subcommand("release", "release addresses, or every address of a handle");
    auto *rip = release_cmd->add_option("--ip", o->release_ips, "an address (repeat for more)");
    auto *rhandle = release_cmd->add_option("--handle", o->handle, "a handle");
    rip->excludes(rhandle);
    release_cmd->callback([o, run = store_command(o, store, release, local)] {
        if (o->release_ips.empty() && o->handle.empty()) {
            throw CLI::ValidationError("release", "give --ip or --handle");
        }
        run();
    });

    add_file_command(app, "apply",
                     "create or update Calico IPPool / IPAMConfiguration / Node / NetworkPolicy "
                     "/ GlobalNetworkPolicy and Kubernetes Service / EndpointSlice / "
                     "NetworkPolicy / Namespace / Pod resources (YAML or JSON, kinds mixed); "
                     "every one checked before any is written",
                     o, apply, local);
    add_file_command(app, "delete",
                     "delete the IPPools (refused while one holds addresses), Nodes, Services, "
                     "EndpointSlices, policies, Namespaces and Pods of a resource file; an "
                     "IPAMConfiguration goes back to its defaults",
                     o, remove, local);
}

}  // namespace

// Runs a command; its failures become messages and exit codes.
int run_guarded(const std::function<int()> &command) {
    int rc = kExitError;
    try {
        rc = command();
    } catch (const CLI::Error &e) {
        std::cerr << "fwdctl: " << e.what() << '\n';
        rc = kExitUsage;
    } catch (const std::invalid_argument &e) {
        std::cerr << "fwdctl: " << e.what() << '\n';
        rc = kExitUsage;
    } catch (const ipam::StoreError &e) {
        std::cerr << "fwdctl: IPAM store: " << e.what() << '\n'
                  << "fwdctl: choose the store with --store or " << kStoreEnv << '\n';
        rc = kExitUnavailable;
    } catch (const std::exception &e) {
        std::cerr << "fwdctl: " << e.what() << '\n';
        rc = kExitError;
    }
    return rc;
}

// The --store option of one command. Each has its own variable: CLI11 fills an option from
// the environment even when its command is not the one used, so a shared variable would let
// FWD_IPAM_STORE override the --store given to another command.
std::shared_ptr<std::string> add_store_option(CLI::App *cmd) {
    auto spec = std::make_shared<std::string>(ipam::kDefaultStoreSpec);
    cmd->add_option("--store", *spec,
                    "IPAM store: embedded:<dir> or etcd:<url>[;<url>...][,<key prefix>]")
        ->envname(kStoreEnv)
        ->capture_default_str();
    return spec;
}

void print_json(const json &j) {
    std::cout << j.dump(2, ' ', false, json::error_handler_t::replace) << '\n';
}

FWD_ON_LOAD(register_file_kinds({"IPAM", "IPPool, IPAMConfiguration / IPAMConfig, Node", 10,
                                 ipam::is_ipam_kind, stage_ipam}));

FWD_ON_LOAD(register_group("ipam", 50, add_ipam_commands));

}  // namespace fwd::control::fwdctl
