// CniService: the cni.* ops against a real Allocator on an in-memory store and a fake control
// thread that keeps endpoints in a map. Covers all-or-nothing ADD, idempotent DEL, CHECK's
// differences, STATUS's readiness and GC, for IPv4-only, IPv6-only and dual-stack requests.
#include <gtest/gtest.h>

#include <map>

#include "fwd/control/api.hpp"
#include "fwd/control/cni_service.hpp"
#include "fwd/ipam/mem_store.hpp"
#include "fwd/policy/pod_network.hpp"
#include "fwd/policy/store.hpp"

namespace fwd::control {
namespace {

using nlohmann::json;

// A store whose every call fails while `down` is set: an etcd that went away.
class FlakyStore : public ipam::MemStore {
  public:
    bool down = false;
    std::optional<ipam::KeyValue> get(const std::string &k) override {
        fail();
        return MemStore::get(k);
    }
    std::vector<ipam::KeyValue> list(const std::string &p) override {
        fail();
        return MemStore::list(p);
    }
    bool txn(const std::vector<ipam::Compare> &c, const std::vector<ipam::Operation> &o) override {
        fail();
        return MemStore::txn(c, o);
    }

  private:
    void fail() const {
        if (down) {
            throw ipam::StoreError("memory: connection refused");
        }
    }
};

// The control thread's endpoint ops, as far as CniService uses them.
struct FakeController {
    std::map<std::string, json> endpoints;
    std::optional<ApiError> fail_add;  // the next endpoint.add throws this
    std::vector<json> added;           // every endpoint.add request

    json call(const std::string &op, const json &a) {
        if (op == "endpoint.add") {
            added.push_back(a);
            if (fail_add) {
                auto e = *fail_add;
                fail_add.reset();
                throw e;
            }
            json ep = a;
            ep["kind"] = a.value("kind", "tap");
            ep["pod_interface"] = ep["kind"] == "tap";  // as the daemon's port kinds say
            ep["mac"] = a.value("mac", "02:00:00:00:00:01");
            ep["host_ifname"] = "fwdp1";
            for (const char *k : {"ipv4", "ipv6", "netns"}) {
                if (!ep.contains(k)) {
                    ep[k] = nullptr;
                }
            }
            endpoints[a["id"]] = ep;
            return ep;
        }
        if (op == "endpoint.del" || op == "endpoint.get") {
            auto it = endpoints.find(a["id"]);
            if (it == endpoints.end()) {
                throw ApiError("not_found", "no endpoint");
            }
            json ep = it->second;
            if (op == "endpoint.del") {
                endpoints.erase(it);
            }
            return ep;
        }
        if (op == "endpoint.list") {
            json l = json::array();
            for (auto &[id, ep] : endpoints) {
                l.push_back(ep);
            }
            return {{"endpoints", l}};
        }
        throw ApiError("unknown_op", op);
    }
};

ipam::IpPool pool(const char *name, const char *cidr, int block, bool vxlan = false) {
    ipam::IpPool p;
    p.name = name;
    p.cidr = *ipam::Cidr::parse(cidr);
    p.block_size = block;
    p.vxlan_mode = vxlan ? ipam::EncapMode::kAlways : ipam::EncapMode::kNever;
    return p.normalized();
}

class CniServiceTest : public ::testing::Test {
  protected:
    void SetUp() override {
        store_ = std::make_shared<FlakyStore>();
        alloc_ = std::make_unique<ipam::Allocator>(*store_);
        cfg_.node_name = "node1";
        cfg_.mtu = 1500;
        cfg_.run_dir = "/run/test";
        svc_ = make("node1", ctl_);
    }
    // A service of `node` whose control thread is `ctl` (each node has its own).
    std::unique_ptr<CniService> make(const std::string &node, FakeController &ctl) {
        NodeConfig c = cfg_;
        c.node_name = node;
        return std::make_unique<CniService>(
            c, store_,
            CniDeps{[&ctl](const std::string &op, const json &a) { return ctl.call(op, a); },
                    [this](const json &) { return inspect_diff_; }});
    }
    void add_pools(bool v4 = true, bool v6 = true, bool vxlan = false) {
        if (v4) {
            alloc_->add_pool(pool("default-ipv4-ippool", "10.244.0.0/24", 26, vxlan));
        }
        if (v6) {
            alloc_->add_pool(pool("default-ipv6-ippool", "fd00:244::/120", 122));
        }
    }
    static json add_args(const std::string &cid, bool v4 = true, bool v6 = true) {
        return {{"network", "k8s-pod-network"},
                {"container_id", cid},
                {"netns", "/var/run/netns/" + cid},
                {"ifname", "eth0"},
                {"k8s", {{"namespace", "default"}, {"pod", "pod-" + cid}}},
                {"assign_ipv4", v4},
                {"assign_ipv6", v6}};
    }
    static json attachment(const std::string &cid) {
        return {{"network", "k8s-pod-network"}, {"container_id", cid}, {"ifname", "eth0"}};
    }
    std::string code_of(const std::string &op, const json &args) {
        try {
            svc_->call(op, args);
        } catch (const ApiError &e) {
            return e.code() + ": " + e.what();
        }
        return "ok";
    }
    size_t allocated() { return alloc_->allocations().size(); }

    std::shared_ptr<FlakyStore> store_;
    std::unique_ptr<ipam::Allocator> alloc_;
    NodeConfig cfg_;
    FakeController ctl_;
    std::vector<std::string> inspect_diff_;
    std::unique_ptr<CniService> svc_;
};

TEST_F(CniServiceTest, AddDualStackAllocatesAndMakesTheEndpoint) {
    add_pools();
    json r = svc_->call("cni.add", add_args("c1"));
    const json &ep = r["endpoint"];
    EXPECT_EQ(ep["id"], "k8s-pod-network.c1.eth0");
    EXPECT_EQ(r["handle"], "k8s-pod-network.c1");
    auto held = alloc_->addresses("k8s-pod-network.c1");
    ASSERT_EQ(held.size(), 2u);
    EXPECT_EQ(ep["ipv4"], held[0].str());
    EXPECT_EQ(ep["ipv6"], held[1].str());
    EXPECT_EQ(ep["netns"], "/var/run/netns/c1");
    EXPECT_EQ(ep["mtu"], 1500);  // no encapsulation
    EXPECT_EQ(ep["owner"]["handle"], "k8s-pod-network.c1");
    EXPECT_EQ(ep["owner"]["pod"], "pod-c1");
    // The allocation carries the pod's identity, as Calico's does.
    auto all = alloc_->allocations();
    ASSERT_EQ(all.size(), 2u);
    EXPECT_EQ(all[0].attrs.ns, "default");
    EXPECT_EQ(all[0].attrs.pod, "pod-c1");
    EXPECT_EQ(all[0].attrs.node, "node1");
    EXPECT_EQ(all[0].attrs.container_id, "c1");
}

// After a restart: the pods that went while the daemon was down give their
// addresses back; the sweep takes CNI handles no record keeps (an ADD cut
// between IPAM and the endpoint), never a kept one or another shape of handle.
TEST_F(CniServiceTest, ReconcileReleasesGonePodsAndUnrecordedHandles) {
    add_pools();
    svc_->call("cni.add", add_args("gone"));
    svc_->call("cni.add", add_args("kept"));
    svc_->call("cni.add", add_args("cut"));
    ipam::AssignRequest other;  // not CNI's: no container id
    other.handle = "operator-handle";
    other.node = "node1";
    other.attrs.node = "node1";
    other.num4 = 1;
    alloc_->assign(other);
    ASSERT_EQ(allocated(), 7u);

    const json gone_owner = {{"network", "k8s-pod-network"},
                             {"container_id", "gone"},
                             {"handle", "k8s-pod-network.gone"},
                             {"namespace", "default"},
                             {"pod", "pod-gone"}};
    const json tun_owner = json::object();  // a pod made without CNI: nothing to release
    json r =
        svc_->reconcile({{"release", json::array({gone_owner, tun_owner})},
                         {"keep", json::array({"k8s-pod-network.kept", "k8s-pod-network.cut"})},
                         {"sweep", false}});
    EXPECT_EQ(r, (json{{"pods_released", 1}, {"handles_released", 1}}));
    EXPECT_TRUE(alloc_->addresses("k8s-pod-network.gone").empty());
    EXPECT_EQ(allocated(), 5u);

    r = svc_->reconcile({{"release", json::array()},
                         {"keep", json::array({"k8s-pod-network.kept"})},
                         {"sweep", true}});
    EXPECT_EQ(r, (json{{"pods_released", 0}, {"handles_released", 1}}));
    EXPECT_TRUE(alloc_->addresses("k8s-pod-network.cut").empty());
    EXPECT_EQ(alloc_->addresses("k8s-pod-network.kept").size(), 2u);
    EXPECT_EQ(alloc_->addresses("operator-handle").size(), 1u);
}

TEST_F(CniServiceTest, AddOneFamilyOnly) {
    add_pools();
    json r4 = svc_->call("cni.add", add_args("v4only", true, false));
    EXPECT_TRUE(r4["endpoint"]["ipv4"].is_string());
    EXPECT_TRUE(r4["endpoint"]["ipv6"].is_null());
    json r6 = svc_->call("cni.add", add_args("v6only", false, true));
    EXPECT_TRUE(r6["endpoint"]["ipv4"].is_null());
    EXPECT_TRUE(r6["endpoint"]["ipv6"].is_string());
    EXPECT_EQ(allocated(), 2u);
    EXPECT_NE(code_of("cni.add", add_args("none", false, false)).find("invalid_argument"),
              std::string::npos);
}

TEST_F(CniServiceTest, MtuFollowsThePoolEncapsulation) {
    add_pools(true, true, true);  // IPv4 pool with VXLAN: 50 bytes
    EXPECT_EQ(svc_->call("cni.add", add_args("c1"))["mtu"], 1450);
    EXPECT_EQ(svc_->call("cni.add", add_args("c2", false, true))["mtu"], 1500);
    json a = add_args("c3");
    a["mtu"] = 1400;  // the network config's mtu wins
    EXPECT_EQ(svc_->call("cni.add", a)["mtu"], 1400);
}

TEST_F(CniServiceTest, AddFailureGivesTheAddressesBack) {
    add_pools();
    ctl_.fail_add = ApiError("invalid_argument", "move fwdp1 into netns: No such file");
    EXPECT_EQ(code_of("cni.add", add_args("c1")),
              "invalid_argument: move fwdp1 into netns: No such file");
    EXPECT_EQ(allocated(), 0u);
    EXPECT_TRUE(alloc_->addresses("k8s-pod-network.c1").empty());
    EXPECT_TRUE(ctl_.endpoints.empty());
    // and the next ADD of the same container works
    svc_->call("cni.add", add_args("c1"));
    EXPECT_EQ(allocated(), 2u);
}

TEST_F(CniServiceTest, ExhaustedPoolTakesNothing) {
    alloc_->add_pool(pool("tiny4", "10.9.0.0/30", 30));
    alloc_->add_pool(pool("default-ipv6-ippool", "fd00:244::/120", 122));
    for (int i = 0; i < 4; i++) {
        svc_->call("cni.add", add_args("c" + std::to_string(i), true, false));
    }
    EXPECT_NE(code_of("cni.add", add_args("c9")).find("exhausted: "), std::string::npos);
    EXPECT_EQ(allocated(), 4u);  // the dual-stack one got no IPv6 address either
    EXPECT_EQ(ctl_.endpoints.size(), 4u);
}

TEST_F(CniServiceTest, UnknownPoolIsAnInvalidArgument) {
    add_pools();
    json a = add_args("c1");
    a["ipv4_pools"] = {"no-such-pool"};
    EXPECT_NE(code_of("cni.add", a).find("invalid_argument"), std::string::npos);
    EXPECT_EQ(allocated(), 0u);
}

TEST_F(CniServiceTest, FixedAddresses) {
    add_pools();
    json a = add_args("c1");
    a["ips"] = {"10.244.0.7/32", "fd00:244::7"};
    json r = svc_->call("cni.add", a);
    EXPECT_EQ(r["endpoint"]["ipv4"], "10.244.0.7");
    EXPECT_EQ(r["endpoint"]["ipv6"], "fd00:244::7");
    json b = add_args("c2");
    b["ips"] = {"10.244.0.7"};  // taken
    EXPECT_NE(code_of("cni.add", b), "ok");
    EXPECT_EQ(allocated(), 2u);
}

TEST_F(CniServiceTest, RepeatedAddReturnsTheAttachmentAndAnotherIfnameIsRefused) {
    add_pools();
    json first = svc_->call("cni.add", add_args("c1"));
    json again = svc_->call("cni.add", add_args("c1"));
    EXPECT_EQ(again["endpoint"]["ipv4"], first["endpoint"]["ipv4"]);
    EXPECT_EQ(allocated(), 2u);
    json net1 = add_args("c1");
    net1["ifname"] = "net1";
    EXPECT_NE(code_of("cni.add", net1).find("already_exists"), std::string::npos);
    json moved = add_args("c1");
    moved["netns"] = "/var/run/netns/other";
    EXPECT_NE(code_of("cni.add", moved).find("already_exists"), std::string::npos);
    EXPECT_EQ(allocated(), 2u);
}

TEST_F(CniServiceTest, StaleAllocationOfACrashedAddIsReplaced) {
    add_pools();
    ipam::AssignRequest req;
    req.handle = "k8s-pod-network.c1";
    req.node = "node1";
    req.num4 = 1;
    alloc_->assign(req);  // left by an ADD that died before its endpoint
    svc_->call("cni.add", add_args("c1"));
    EXPECT_EQ(alloc_->addresses("k8s-pod-network.c1").size(), 2u);
    EXPECT_EQ(allocated(), 2u);
}

TEST_F(CniServiceTest, DelIsIdempotent) {
    add_pools();
    svc_->call("cni.add", add_args("c1"));
    json r = svc_->call("cni.del", attachment("c1"));
    EXPECT_EQ(r["endpoint_removed"], true);
    EXPECT_EQ(r["released"], 2);
    EXPECT_EQ(allocated(), 0u);
    EXPECT_TRUE(ctl_.endpoints.empty());
    r = svc_->call("cni.del", attachment("c1"));
    EXPECT_EQ(r["endpoint_removed"], false);
    EXPECT_EQ(r["released"], 0);
    EXPECT_EQ(code_of("cni.del", attachment("never-added")), "ok");
}

TEST_F(CniServiceTest, DelWhenOnlyTheAllocationIsLeft) {
    add_pools();
    svc_->call("cni.add", add_args("c1"));
    ctl_.endpoints.clear();  // the daemon restarted: its endpoints are gone
    EXPECT_EQ(svc_->call("cni.del", attachment("c1"))["released"], 2);
    EXPECT_EQ(allocated(), 0u);
}

TEST_F(CniServiceTest, StoreDownIsUnavailableAndKeepsTheEndpointUntouched) {
    add_pools();
    svc_->call("cni.add", add_args("c1"));
    store_->down = true;
    std::string err = code_of("cni.add", add_args("c2"));
    EXPECT_EQ(err.rfind("unavailable: ", 0), 0u) << err;
    EXPECT_NE(err.find("IPAM store: memory: connection refused"), std::string::npos) << err;
    EXPECT_EQ(ctl_.endpoints.size(), 1u);
    // DEL removes the endpoint, cannot release, says so; a retry once the store is back
    // finishes the job.
    EXPECT_NE(code_of("cni.del", attachment("c1")).find("unavailable"), std::string::npos);
    store_->down = false;
    EXPECT_EQ(svc_->call("cni.del", attachment("c1"))["released"], 2);
    EXPECT_EQ(allocated(), 0u);
}

TEST_F(CniServiceTest, CheckFindsEveryDifference) {
    add_pools();
    json r = svc_->call("cni.add", add_args("c1"));
    const json &ep = r["endpoint"];
    json c = attachment("c1");
    c["netns"] = "/var/run/netns/c1";
    c["ips"] = {ep["ipv4"].get<std::string>() + "/32", ep["ipv6"].get<std::string>() + "/128"};
    c["mac"] = ep["mac"];
    c["mtu"] = ep["mtu"];
    EXPECT_EQ(svc_->call("cni.check", c)["differences"], json::array());

    json wrong = c;
    wrong["ips"] = {"10.244.0.99/32"};
    wrong["mtu"] = 9000;
    auto d = svc_->call("cni.check", wrong)["differences"];
    ASSERT_EQ(d.size(), 2u) << d.dump();
    EXPECT_NE(d[0].get<std::string>().find("the previous result has 10.244.0.99/32"),
              std::string::npos);
    EXPECT_NE(d[1].get<std::string>().find("MTU"), std::string::npos);

    alloc_->release_address(*net::IpAddr::parse(ep["ipv4"].get<std::string>()));
    inspect_diff_ = {"address x missing on eth0"};
    d = svc_->call("cni.check", c)["differences"];
    ASSERT_EQ(d.size(), 2u) << d.dump();
    EXPECT_NE(d[0].get<std::string>().find("IPAM handle k8s-pod-network.c1 holds"),
              std::string::npos);
    EXPECT_EQ(d[1], "address x missing on eth0");

    EXPECT_NE(code_of("cni.check", attachment("unknown")).find("not_found"), std::string::npos);

    // The endpoint lost (a daemon restart) while IPAM still holds an address: a difference,
    // not an unknown container, or the runtime would skip the DEL that frees it.
    ctl_.endpoints.clear();
    d = svc_->call("cni.check", c)["differences"];
    ASSERT_EQ(d.size(), 1u) << d.dump();
    EXPECT_NE(d[0].get<std::string>().find("no endpoint k8s-pod-network.c1.eth0"),
              std::string::npos);
    EXPECT_NE(d[0].get<std::string>().find(ep["ipv6"].get<std::string>()), std::string::npos);
}

TEST_F(CniServiceTest, CheckLeavesThePodMtuToThePreviousResult) {
    add_pools();
    json ep = svc_->call("cni.add", add_args("c1"))["endpoint"];
    json inspected;
    auto svc = std::make_unique<CniService>(
        cfg_, store_,
        CniDeps{[this](const std::string &op, const json &a) { return ctl_.call(op, a); },
                [&](const json &want) {
                    inspected = want;
                    return std::vector<std::string>{};
                }});
    json c = attachment("c1");
    c["netns"] = "/var/run/netns/c1";
    svc->call("cni.check", c);  // no MTU stated (a chained tuning's 1.0.0 result)
    EXPECT_TRUE(inspected["mtu"].is_null());
    c["mtu"] = ep["mtu"];
    svc->call("cni.check", c);
    EXPECT_EQ(inspected["mtu"], ep["mtu"]);
}

TEST_F(CniServiceTest, StatusNeedsAPoolWithRoomForEveryFamilyAsked) {
    json both{{"assign_ipv4", true}, {"assign_ipv6", true}};
    json r = svc_->call("cni.status", both);
    EXPECT_FALSE(r["ready"]);
    EXPECT_NE(r["reason"].get<std::string>().find("IPv4"), std::string::npos);
    add_pools(true, false);
    r = svc_->call("cni.status", both);
    EXPECT_FALSE(r["ready"]);
    EXPECT_EQ(r["reason"], "no enabled IPv6 pool for workloads with a free address");
    EXPECT_TRUE(svc_->call("cni.status", {{"assign_ipv4", true}})["ready"]);
    add_pools(false, true);
    EXPECT_TRUE(svc_->call("cni.status", both)["ready"]);
    // a named pool that does not exist cannot serve
    EXPECT_FALSE(svc_->call("cni.status", {{"ipv4_pools", {"nope"}}})["ready"]);
    // a disabled pool cannot serve
    auto p = *alloc_->pool("default-ipv6-ippool");
    p.disabled = true;
    alloc_->update_pool(p);
    EXPECT_FALSE(svc_->call("cni.status", both)["ready"]);
    // a full pool cannot serve
    alloc_->add_pool(pool("tiny6", "fd00:9::/126", 126));
    json tiny{{"assign_ipv4", false}, {"assign_ipv6", true}, {"ipv6_pools", {"tiny6"}}};
    EXPECT_TRUE(svc_->call("cni.status", tiny)["ready"]);
    for (int i = 0; i < 4; i++) {
        json a = add_args("t" + std::to_string(i), false, true);
        a["ipv6_pools"] = {"tiny6"};
        svc_->call("cni.add", a);
    }
    EXPECT_FALSE(svc_->call("cni.status", tiny)["ready"]);
    store_->down = true;
    r = svc_->call("cni.status", both);
    EXPECT_FALSE(r["ready"]);
    EXPECT_NE(r["reason"].get<std::string>().find("IPAM store"), std::string::npos);
}

TEST_F(CniServiceTest, GcReleasesWhatNoValidAttachmentNames) {
    add_pools();
    for (const char *c : {"keep", "gone1", "gone2"}) {
        svc_->call("cni.add", add_args(c));
    }
    ctl_.endpoints.erase("k8s-pod-network.gone2.eth0");  // endpoint lost, allocation left
    // Another network's pod and another node's pod are not this GC's business.
    json other = add_args("x");
    other["network"] = "other-net";
    svc_->call("cni.add", other);
    FakeController node2;
    make("node2", node2)->call("cni.add", add_args("remote"));
    json r = svc_->call("cni.gc", {{"network", "k8s-pod-network"},
                                   {"valid", {{{"container_id", "keep"}, {"ifname", "eth0"}}}}});
    EXPECT_EQ(r["endpoints_removed"], 1);
    EXPECT_EQ(r["handles_released"], 2);
    EXPECT_EQ(alloc_->addresses("k8s-pod-network.keep").size(), 2u);
    EXPECT_TRUE(alloc_->addresses("k8s-pod-network.gone1").empty());
    EXPECT_TRUE(alloc_->addresses("k8s-pod-network.gone2").empty());
    EXPECT_EQ(alloc_->addresses("other-net.x").size(), 2u);
    EXPECT_EQ(alloc_->addresses("k8s-pod-network.remote").size(), 2u);
    EXPECT_EQ(ctl_.endpoints.count("k8s-pod-network.keep.eth0"), 1u);
    EXPECT_EQ(ctl_.endpoints.count("k8s-pod-network.gone1.eth0"), 0u);
    EXPECT_NE(code_of("cni.gc", {{"network", "k8s-pod-network"}}).find("valid"), std::string::npos);
}

TEST_F(CniServiceTest, ThePodRecordChoosesAddressesAndGetsTheAttachment) {
    add_pools();
    alloc_->add_pool(pool("production-pods-ipv6", "fd00:9::/120", 122));
    alloc_->add_pool(pool("other-ipv4", "10.9.0.0/24", 26));
    policy::PolicyRegistry reg(*store_);
    // The pod of ../shared/examples/pod-ipv6-pool-annotation.yaml, labelled, in a namespace
    // whose annotation picks the IPv4 pool by CIDR.
    policy::Pod pod;
    pod.ns = "production";
    pod.name = "production-app";
    pod.labels = {{"app", "web"}};
    pod.annotations = {{policy::kIpv6PoolsAnnotation, R"(["production-pods-ipv6"])"}};
    policy::Namespace ns;
    ns.name = "production";
    ns.annotations = {{policy::kIpv4PoolsAnnotation, R"(["10.9.0.0/24"])"}};
    reg.apply({pod, ns});
    json a = add_args("c1");
    a["k8s"] = {{"namespace", "production"}, {"pod", "production-app"}};
    a["ipv6_pools"] = {"default-ipv6-ippool"};  // the network config's: the annotation wins
    json ep = svc_->call("cni.add", a)["endpoint"];
    EXPECT_EQ(ep["ipv4"].get<std::string>().rfind("10.9.0.", 0), 0u) << ep;
    EXPECT_EQ(ep["ipv6"].get<std::string>().rfind("fd00:9::", 0), 0u) << ep;
    auto rec = reg.get_pod("production", "production-app");
    ASSERT_TRUE(rec);
    EXPECT_EQ(rec->labels, pod.labels);
    EXPECT_EQ(rec->node, "node1");
    ASSERT_EQ(rec->ips.size(), 2u);
    EXPECT_EQ(rec->ips[0].str(), ep["ipv4"]);
    EXPECT_EQ(rec->ips[1].str(), ep["ipv6"]);
    EXPECT_EQ(rec->annotations.at(policy::kContainerIdAnnotation), "c1");

    // DEL (without the runtime's pod arguments: the endpoint's owner names the pod)
    svc_->call("cni.del", attachment("c1"));
    rec = reg.get_pod("production", "production-app");
    ASSERT_TRUE(rec);
    EXPECT_TRUE(rec->ips.empty());
    EXPECT_EQ(rec->labels, pod.labels);
    EXPECT_FALSE(rec->annotations.contains(policy::kContainerIdAnnotation));

    // A pod with no record gets a bare one, gone again with its DEL (given the pod this time,
    // after its endpoint was lost).
    json b = add_args("c2");
    svc_->call("cni.add", b);
    EXPECT_TRUE(reg.get_pod("default", "pod-c2"));
    ctl_.endpoints.erase("k8s-pod-network.c2.eth0");
    json del = attachment("c2");
    del["k8s"] = b["k8s"];
    svc_->call("cni.del", del);
    EXPECT_FALSE(reg.get_pod("default", "pod-c2"));
}

TEST_F(CniServiceTest, FixedAddressesAndFamiliesFromAnnotations) {
    add_pools();
    policy::PolicyRegistry reg(*store_);
    policy::Pod fixed;
    fixed.name = "fixed";
    fixed.annotations = {{policy::kIpAddrsAnnotation, R"(["10.244.0.9", "fd00:244::9"])"}};
    policy::Pod v6only;
    v6only.name = "v6only";
    v6only.annotations = {{policy::kIpFamiliesAnnotation, R"(["IPv6"])"}};
    reg.apply({fixed, v6only});
    json a = add_args("c1");
    a["k8s"]["pod"] = "fixed";
    json ep = svc_->call("cni.add", a)["endpoint"];
    EXPECT_EQ(ep["ipv4"], "10.244.0.9");
    EXPECT_EQ(ep["ipv6"], "fd00:244::9");
    json b = add_args("c2");
    b["k8s"]["pod"] = "v6only";
    ep = svc_->call("cni.add", b)["endpoint"];
    EXPECT_TRUE(ep["ipv4"].is_null());
    EXPECT_TRUE(ep["ipv6"].is_string());
    // ipAddrs and the runtime's IP argument together: refused, nothing taken
    fixed.name = "twice";
    reg.apply({fixed});
    json c = add_args("c3");
    c["k8s"]["pod"] = "twice";
    c["ips"] = {"10.244.0.10"};
    EXPECT_NE(code_of("cni.add", c).find("both ask for addresses"), std::string::npos);
    EXPECT_EQ(allocated(), 3u);
}

TEST_F(CniServiceTest, ABadAnnotationRefusesTheAddNamingIt) {
    add_pools();
    policy::Pod p;
    p.name = "bad";
    p.annotations = {{policy::kIpv4PoolsAnnotation, "default-ipv4-ippool"}};  // not JSON
    policy::PolicyRegistry(*store_).apply({p});
    json a = add_args("c1");
    a["k8s"]["pod"] = "bad";
    const std::string e = code_of("cni.add", a);
    EXPECT_EQ(e.rfind("invalid_argument: Pod 'default/bad': metadata.annotations."
                      "cni.projectcalico.org/ipv4pools: failed to parse 'default-ipv4-ippool' "
                      "as JSON",
                      0),
              0u)
        << e;
    EXPECT_EQ(allocated(), 0u);
    EXPECT_TRUE(ctl_.endpoints.empty());
}

TEST_F(CniServiceTest, VhostUserQueuesReachThePortKind) {
    add_pools();
    json a = add_args("vm2");
    a.erase("netns");
    a["vhost_user"] = {{"queues", 2}};
    svc_->call("cni.add", a);
    EXPECT_EQ(ctl_.added.back()["vhost_queues"], 2);
    EXPECT_EQ(ctl_.added.back()["vhost_mode"], "server");
}

TEST_F(CniServiceTest, VhostUserPodsGetASocketAndAStableMac) {
    add_pools();
    json a = add_args("vm1");
    a.erase("netns");
    a["vhost_user"] = {{"client", true}};
    json r = svc_->call("cni.add", a);
    const json req = ctl_.added.back();  // a copy: later ADDs grow the vector
    EXPECT_EQ(req["kind"], "vhost-user");
    EXPECT_EQ(req["vhost_mode"], "client");
    EXPECT_FALSE(req.contains("vhost_queues"));  // the port kind's default
    std::string sock = req["vhost_socket"];
    EXPECT_EQ(sock.rfind("/run/test/vm1-", 0), 0u) << sock;
    EXPECT_EQ(sock.size(), std::string("/run/test/vm1-0123456789abcdef.sock").size()) << sock;
    // a container id of 64 characters still makes a socket path well under 108 bytes
    json long_id = a;
    long_id["container_id"] = std::string(64, 'f');
    svc_->call("cni.add", long_id);
    std::string long_sock = ctl_.added.back()["vhost_socket"];
    EXPECT_EQ(long_sock.size(), std::string("/run/test/ffffffffffff-0123456789abcdef.sock").size());
    EXPECT_NE(long_sock, sock);
    std::string mac = req["mac"];
    svc_->call("cni.del", attachment("vm1"));
    svc_->call("cni.add", a);
    EXPECT_EQ(ctl_.added.back()["mac"], mac);
    // a kernel pod without a netns is refused before anything is allocated
    json k = add_args("k1");
    k.erase("netns");
    EXPECT_NE(code_of("cni.add", k).find("netns"), std::string::npos);
}

TEST_F(CniServiceTest, BadRequestsNameTheField) {
    add_pools();
    json a = add_args("c1");
    a["bogus"] = 1;
    EXPECT_NE(code_of("cni.add", a).find("unknown field 'bogus'"), std::string::npos);
    json b = add_args("c/1");
    EXPECT_NE(code_of("cni.add", b).find("endpoint id"), std::string::npos);
    json c = add_args("c1");
    c["ipv4_pools"] = "default";
    EXPECT_NE(code_of("cni.add", c).find("ipv4_pools"), std::string::npos);
    EXPECT_EQ(allocated(), 0u);
}

}  // namespace
}  // namespace fwd::control
