// Shared helpers of the allocator tests: a MemStore, a hand-driven clock,
// and pool / request / node record builders.
#pragma once

#include <gtest/gtest.h>

#include <atomic>

#include "fwd/ipam/allocator.hpp"
#include "fwd/ipam/mem_store.hpp"
#include "fwd/ipam/node.hpp"

namespace fwd::ipam {
inline void PrintTo(const Cidr &c, std::ostream *os) {
    *os << c.str();
}
}  // namespace fwd::ipam
namespace fwd::net {
inline void PrintTo(const IpAddr &a, std::ostream *os) {
    *os << a.str();
}
}  // namespace fwd::net

namespace fwd::ipam::test {

inline IpPool make_pool(const std::string &name, const std::string &cidr, int block_size = 0) {
    IpPool p;
    p.name = name;
    p.cidr = *Cidr::parse(cidr);
    p.block_size = block_size;
    return p.normalized();
}

inline net::IpAddr ip(const char *s) {
    return *net::IpAddr::parse(s);
}
inline Cidr cidr(const char *s) {
    return *Cidr::parse(s);
}

// A node record with the given addresses ("10.10.10.1/24"); nullptr: none of that family.
inline NodeRecord node(const std::string &name, const char *v4, const char *v6 = nullptr) {
    NodeRecord n;
    n.name = name;
    if (v4) {
        n.ipv4 = IfAddr::parse(v4);
    }
    if (v6) {
        n.ipv6 = IfAddr::parse(v6);
    }
    return n;
}

inline AssignRequest request(const std::string &cid, const std::string &node, int n4, int n6) {
    AssignRequest r;
    r.handle = pod_handle(cid);
    r.attrs.ns = "default";
    r.attrs.pod = "pod-" + cid;
    r.attrs.container_id = cid;
    r.node = node;
    r.num4 = n4;
    r.num6 = n6;
    return r;
}

class AllocatorTest : public ::testing::Test {
  protected:
    AllocatorOptions opts() {
        AllocatorOptions o;
        o.clock = [this] { return now_.load(); };
        return o;
    }
    void advance(int64_t ms) { now_ += ms; }
    void expect_clean() {
        auto f = alloc_.check();
        for (const auto &x : f) {
            ADD_FAILURE() << to_string(x.kind) << " " << x.subject << ": " << x.detail;
        }
    }
    size_t allocated() { return alloc_.allocations().size(); }

    std::atomic<int64_t> now_{1'000'000};
    MemStore store_;
    Allocator alloc_{store_, opts()};
};

}  // namespace fwd::ipam::test
