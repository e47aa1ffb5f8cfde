// The datapath's service table (service_table.hpp): frontends found by
// (family, protocol, port, address) and nothing else, the first of two equal
// keys kept, new flows spread over the backends allowed for them only.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <rte_byteorder.h>

#include <map>
#include <set>

#include "fwd/dp/service_table.hpp"
#include "fwd/net/addr.hpp"

namespace fwd::dp::test {
namespace {

using svc::Backend;
using svc::FrontendSpec;
using svc::ServiceTable;

std::array<uint8_t, 16> a4(const char *s) {
    std::array<uint8_t, 16> a{};
    const uint32_t be = net::IpAddr::parse(s)->v4().be().raw();
    std::memcpy(a.data(), &be, 4);
    return a;
}

std::array<uint8_t, 16> a6(const char *s) {
    return net::IpAddr::parse(s)->v6().bytes();
}

uint32_t be4(const char *s) {
    return net::IpAddr::parse(s)->v4().be().raw();
}

Backend backend(std::array<uint8_t, 16> addr, uint16_t port, uint8_t flags = svc::kBeReady) {
    return Backend{addr, rte_cpu_to_be_16(port), flags};
}

FrontendSpec fe(bool v6, std::array<uint8_t, 16> addr, uint8_t proto, uint16_t port,
                std::vector<Backend> bs, std::vector<bool> for_new, uint8_t flags = 0) {
    FrontendSpec s;
    s.v6 = v6;
    s.addr = addr;
    s.proto = proto;
    s.port = port;
    s.flags = flags;
    s.backends = std::move(bs);
    s.for_new = std::move(for_new);
    return s;
}

TEST(ServiceTable, FindsByFamilyProtocolPortAndAddressOnly) {
    ServiceTable t({
        fe(false, a4("10.96.0.10"), IPPROTO_TCP, 80, {backend(a4("10.244.0.5"), 8080)}, {true}),
        fe(false, a4("10.96.0.10"), IPPROTO_UDP, 53, {backend(a4("10.244.0.6"), 53)}, {true}),
        fe(true, a6("fd00:10:96::a"), IPPROTO_TCP, 80, {backend(a6("fd00:244::5"), 8080)}, {true}),
        // the same key again: the first is kept
        fe(false, a4("10.96.0.10"), IPPROTO_TCP, 80, {}, {}, svc::kFeReject),
    });
    EXPECT_EQ(t.size(), 3u);
    const uint32_t tcp = t.find4(be4("10.96.0.10"), IPPROTO_TCP, rte_cpu_to_be_16(80));
    ASSERT_NE(tcp, svc::kNoFrontend);
    EXPECT_EQ(t.frontend(tcp).n_backends, 1u);
    EXPECT_EQ(t.frontend(tcp).flags, 0) << "the later duplicate did not replace it";
    const uint32_t udp = t.find4(be4("10.96.0.10"), IPPROTO_UDP, rte_cpu_to_be_16(53));
    ASSERT_NE(udp, svc::kNoFrontend);
    EXPECT_NE(udp, tcp);
    const auto v6 = a6("fd00:10:96::a");
    EXPECT_NE(t.find6(v6.data(), IPPROTO_TCP, rte_cpu_to_be_16(80)), svc::kNoFrontend);
    // misses: another port, protocol, address, family
    EXPECT_EQ(t.find4(be4("10.96.0.10"), IPPROTO_TCP, rte_cpu_to_be_16(81)), svc::kNoFrontend);
    EXPECT_EQ(t.find4(be4("10.96.0.10"), IPPROTO_UDP, rte_cpu_to_be_16(80)), svc::kNoFrontend);
    EXPECT_EQ(t.find4(be4("10.96.0.11"), IPPROTO_TCP, rte_cpu_to_be_16(80)), svc::kNoFrontend);
    const auto v4in6 = a4("10.96.0.10");
    EXPECT_EQ(t.find6(v4in6.data(), IPPROTO_TCP, rte_cpu_to_be_16(80)), svc::kNoFrontend);
    const auto other6 = a6("fd00:10:96::b");
    EXPECT_EQ(t.find6(other6.data(), IPPROTO_TCP, rte_cpu_to_be_16(80)), svc::kNoFrontend);
}

TEST(ServiceTable, EmptyTableFindsNothing) {
    ServiceTable t({});
    EXPECT_EQ(t.find4(be4("10.96.0.10"), IPPROTO_TCP, rte_cpu_to_be_16(80)), svc::kNoFrontend);
    const auto v6 = a6("fd00:10:96::a");
    EXPECT_EQ(t.find6(v6.data(), IPPROTO_TCP, rte_cpu_to_be_16(80)), svc::kNoFrontend);
}

TEST(ServiceTable, NewFlowsSpreadOverAllowedBackendsOnly) {
    std::vector<Backend> bs;
    std::vector<bool> for_new;
    for (int i = 0; i < 6; i++) {
        const std::string a = "10.244.0." + std::to_string(10 + i);
        const bool ok = i % 2 == 0;  // 10, 12, 14: ready; the others terminating
        bs.push_back(backend(a4(a.c_str()), 8080,
                             static_cast<uint8_t>(ok ? svc::kBeReady : svc::kBeTerminating)));
        for_new.push_back(ok);
    }
    ServiceTable t({fe(false, a4("10.96.0.1"), IPPROTO_TCP, 443, bs, for_new)});
    const auto &f = t.frontend(t.find4(be4("10.96.0.1"), IPPROTO_TCP, rte_cpu_to_be_16(443)));
    EXPECT_EQ(f.n_backends, 6u);
    EXPECT_EQ(f.n_new, 3u);
    std::map<uint32_t, int> hits;
    for (uint32_t h = 0; h < 3000; h++) {
        const uint32_t b = t.pick(f, h * 0x9E3779B1u);
        ASSERT_NE(b, UINT32_MAX);
        ASSERT_TRUE(t.backend(b).flags & svc::kBeReady) << "a terminating backend took a new flow";
        hits[b]++;
    }
    ASSERT_EQ(hits.size(), 3u);
    for (const auto &[b, n] : hits) {
        EXPECT_GT(n, 700) << "backend " << b << " took " << n << " of 3000";
    }
    // one flow hash, one backend
    EXPECT_EQ(t.pick(f, 12345), t.pick(f, 12345));
    // an existing flow keeps a terminating backend: it is still listed
    const auto term = a4("10.244.0.11");
    EXPECT_TRUE(t.has_backend(f, term.data(), rte_cpu_to_be_16(8080)));
    EXPECT_FALSE(t.has_backend(f, term.data(), rte_cpu_to_be_16(8081)));
    const auto gone = a4("10.244.0.99");
    EXPECT_FALSE(t.has_backend(f, gone.data(), rte_cpu_to_be_16(8080)));
}

TEST(ServiceTable, NoBackendForNewFlowsSaysWhatToDo) {
    ServiceTable t(
        {fe(true, a6("fd00:10:96::1"), IPPROTO_UDP, 53,
            {backend(a6("fd00:244::9"), 53, svc::kBeServing)}, {false}, svc::kFeReject)});
    const auto v6 = a6("fd00:10:96::1");
    const auto &f = t.frontend(t.find6(v6.data(), IPPROTO_UDP, rte_cpu_to_be_16(53)));
    EXPECT_EQ(t.pick(f, 1), UINT32_MAX);
    EXPECT_TRUE(f.flags & svc::kFeReject);
}

TEST(ServiceTable, ThousandsOfFrontendsAllFound) {
    std::vector<FrontendSpec> specs;
    for (uint32_t i = 0; i < 3000; i++) {
        std::array<uint8_t, 16> a{};
        const uint32_t be = rte_cpu_to_be_32(0x0a600000u + i / 3);
        std::memcpy(a.data(), &be, 4);
        specs.push_back(fe(false, a, IPPROTO_TCP, static_cast<uint16_t>(80 + i % 3),
                           {backend(a4("10.244.1.1"), static_cast<uint16_t>(i + 1))}, {true}));
    }
    ServiceTable t(specs);
    ASSERT_EQ(t.size(), 3000u);
    std::set<uint32_t> seen;
    for (uint32_t i = 0; i < 3000; i++) {
        const uint32_t f = t.find4(rte_cpu_to_be_32(0x0a600000u + i / 3), IPPROTO_TCP,
                                   rte_cpu_to_be_16(static_cast<uint16_t>(80 + i % 3)));
        ASSERT_NE(f, svc::kNoFrontend) << i;
        EXPECT_EQ(t.backend(t.frontend(f).first_backend).port_be,
                  rte_cpu_to_be_16(static_cast<uint16_t>(i + 1)));
        seen.insert(f);
    }
    EXPECT_EQ(seen.size(), 3000u);
    EXPECT_EQ(t.find4(rte_cpu_to_be_32(0x0a600000u + 1000), IPPROTO_TCP, rte_cpu_to_be_16(80)),
              svc::kNoFrontend);
}

}  // namespace
}  // namespace fwd::dp::test
