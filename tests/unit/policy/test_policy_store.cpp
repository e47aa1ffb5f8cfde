// Policies, namespaces and pods in the cluster store: the registry (apply, re-apply, delete, a
// lost race, label edits, the addresses IPAM gave a pod), then fwdctl itself on an embedded
// store: apply -f / delete -f of multi-document files that fail half way and leave nothing
// written, label, policy list / show / trace.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

#include "fwd/ipam/mem_store.hpp"
#include "fwd/policy/store.hpp"
#include "temp_dir.hpp"

namespace fwd::policy {
namespace {

std::vector<Object> objects(const std::string &yaml) {
    std::vector<Object> out;
    for (auto &r : parse_policy_resources(yaml, "t.yaml")) {
        out.push_back(std::move(r.value));
    }
    return out;
}

const char *kFile = R"(apiVersion: v1
kind: Namespace
metadata: {name: prod, labels: {env: prod}}
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: prod, labels: {app: web}}
spec:
  containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]
status: {podIP: 10.0.0.2}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: web, namespace: prod}
spec:
  selector: app == 'web'
  ingress: [{action: Allow, protocol: TCP, destination: {ports: [http]}}]
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata: {name: web, namespace: prod}
spec: {podSelector: {}}
---
apiVersion: crd.projectcalico.org/v1
kind: GlobalNetworkPolicy
metadata: {name: deny-egress}
spec: {selector: has(locked), egress: [{action: Deny}]}
)";

std::vector<PolicyRegistry::Action> actions(const std::vector<PolicyRegistry::Change> &c) {
    std::vector<PolicyRegistry::Action> out;
    for (const auto &x : c) {
        out.push_back(x.action);
    }
    return out;
}

using A = PolicyRegistry::Action;

TEST(PolicyStore, ApplyReapplyUpdateDelete) {
    ipam::MemStore store;
    PolicyRegistry reg(store);
    EXPECT_EQ(actions(reg.apply(objects(kFile))),
              (std::vector<A>{A::kCreate, A::kCreate, A::kCreate, A::kCreate, A::kCreate}));
    auto l = reg.list();
    EXPECT_EQ(l.policies.size(), 3u);
    EXPECT_EQ(l.namespaces.size(), 1u);
    ASSERT_EQ(l.pods.size(), 1u);
    EXPECT_TRUE(l.refused.empty());
    EXPECT_EQ(l.policies[0].key(), "deny-egress");
    EXPECT_TRUE(store.get("/dpdk-fwd/policy/v1/k8snetworkpolicies/prod/web"));
    EXPECT_TRUE(store.get("/dpdk-fwd/policy/v1/networkpolicies/prod/web"));
    EXPECT_TRUE(store.get("/dpdk-fwd/policy/v1/globalnetworkpolicies/deny-egress"));
    // The same file again: nothing changes, nothing is written.
    const int64_t rev = store.revision();
    EXPECT_EQ(actions(reg.apply(objects(kFile))),
              (std::vector<A>{A::kUnchanged, A::kUnchanged, A::kUnchanged, A::kUnchanged,
                              A::kUnchanged}));
    EXPECT_EQ(store.revision(), rev);
    // The pod again without status: it keeps its recorded address (status is the cluster's).
    const auto again = reg.apply(objects(
        "apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: prod, labels: {app: web2}}\n"
        "spec: {containers: [{name: c, ports: [{name: http, containerPort: 8080}]}]}\n"));
    EXPECT_EQ(again[0].action, A::kUpdate);
    l = reg.list();
    ASSERT_EQ(l.pods[0].ips.size(), 1u);
    EXPECT_EQ(l.pods[0].ips[0].str(), "10.0.0.2");
    EXPECT_EQ(l.pods[0].labels.at("app"), "web2");
    // Delete needs every object stored; one missing: nothing goes.
    auto gone = objects(kFile);
    gone.push_back(objects("apiVersion: v1\nkind: Namespace\nmetadata: {name: nope}\n")[0]);
    try {
        reg.remove(gone);
        FAIL() << "deleted with a missing object";
    } catch (const PolicyError &e) {
        EXPECT_STREQ(e.what(), "Namespace 'nope': not found");
    }
    EXPECT_EQ(reg.list().policies.size(), 3u);
    gone.pop_back();
    EXPECT_EQ(actions(reg.remove(gone)),
              (std::vector<A>{A::kDelete, A::kDelete, A::kDelete, A::kDelete, A::kDelete}));
    EXPECT_TRUE(store.list("/dpdk-fwd/policy/v1/").empty());
}

TEST(PolicyStore, APlanLosesARaceAndWritesNothing) {
    ipam::MemStore store;
    PolicyRegistry reg(store);
    const auto plan = reg.plan_apply(objects(kFile));
    // Another writer creates one of the keys meanwhile.
    PolicyRegistry(store).apply(
        objects("apiVersion: v1\nkind: Namespace\nmetadata: {name: prod}\n"));
    EXPECT_FALSE(reg.commit(plan));
    EXPECT_EQ(reg.list().policies.size(), 0u);
    EXPECT_EQ(actions(reg.apply(objects(kFile)))[0], A::kUpdate);  // planned again
}

TEST(PolicyStore, RefusedRecordsAreListedNotUsed) {
    ipam::MemStore store;
    PolicyRegistry reg(store);
    reg.apply(objects(kFile));
    store.txn({}, {{ipam::Operation::Kind::kPut, "/dpdk-fwd/policy/v1/namespaces/bad", "{oops"},
                   {ipam::Operation::Kind::kPut, "/dpdk-fwd/policy/v1/namespaces/other",
                    R"({"apiVersion":"v1","kind":"Namespace","metadata":{"name":"prod"}})"}});
    const auto l = reg.list();
    EXPECT_EQ(l.namespaces.size(), 1u);
    ASSERT_EQ(l.refused.size(), 2u);
    EXPECT_EQ(l.refused[0].first, "/dpdk-fwd/policy/v1/namespaces/bad");
    EXPECT_EQ(l.refused[1].second,
              "holds Namespace 'prod', whose key is /dpdk-fwd/policy/v1/namespaces/prod");
}

// list(&cache): a record whose mod revision is unchanged comes from the cache (not decoded
// again: an entry doctored in the cache shows through), a written one is decoded afresh, a
// deleted one leaves listing and cache, refused records stay refused; the listing equals one
// without a cache.
TEST(PolicyStore, ListingWithACacheDecodesOnlyWhatWasWritten) {
    ipam::MemStore store;
    PolicyRegistry reg(store);
    reg.apply(objects(kFile));
    store.txn({}, {{ipam::Operation::Kind::kPut, "/dpdk-fwd/policy/v1/namespaces/bad", "{oops"}});
    PolicyRegistry::ListCache cache;
    const auto first = reg.list(&cache);
    const auto plain = reg.list();
    EXPECT_EQ(first.policies, plain.policies);
    EXPECT_EQ(first.pods, plain.pods);
    EXPECT_EQ(first.refused, plain.refused);
    ASSERT_EQ(cache.records.size(), 6u);
    const std::string web = "/dpdk-fwd/policy/v1/pods/prod/web";
    const std::string deny = "/dpdk-fwd/policy/v1/globalnetworkpolicies/deny-egress";
    ASSERT_TRUE(cache.records.count(web) && cache.records.count(deny));
    std::get<Pod>(std::get<Object>(cache.records[web].second)).labels["cached"] = "yes";
    // The Calico policy written again (its order changed), the global one deleted.
    reg.apply(
        objects("apiVersion: projectcalico.org/v3\nkind: NetworkPolicy\nmetadata: "
                "{name: web, namespace: prod}\nspec:\n  order: 7\n  selector: app == "
                "'web'\n"));
    reg.remove(
        objects("apiVersion: projectcalico.org/v3\nkind: GlobalNetworkPolicy\n"
                "metadata: {name: deny-egress}\nspec: {selector: has(locked)}\n"));
    const auto second = reg.list(&cache);
    ASSERT_EQ(second.pods.size(), 1u);
    EXPECT_EQ(second.pods[0].labels.at("cached"), "yes");  // from the cache
    ASSERT_EQ(second.policies.size(), 2u);                 // k8s web and Calico web
    bool seen = false;
    for (const auto &p : second.policies) {
        if (p.kind == PolicyKind::kCalico) {
            ASSERT_TRUE(p.order.has_value());  // decoded afresh
            EXPECT_EQ(*p.order, 7.0);
            seen = true;
        }
    }
    EXPECT_TRUE(seen);
    EXPECT_EQ(cache.records.count(deny), 0u);
    EXPECT_EQ(cache.records.size(), 5u);
    ASSERT_EQ(second.refused.size(), 1u);
    EXPECT_EQ(second.refused[0].first, "/dpdk-fwd/policy/v1/namespaces/bad");
    EXPECT_EQ(second.revision, store.revision());
}

TEST(PolicyStore, LabelEdits) {
    ipam::MemStore store;
    PolicyRegistry reg(store);
    // A pod the CNI attached before any manifest: the record is created.
    auto [pod, lines] = reg.label_pod("prod", "client", parse_label_args({"app=client"}, false));
    EXPECT_EQ(pod.labels.at("app"), "client");
    EXPECT_EQ(lines, (std::vector<std::string>{"record created", "app=client"}));
    // Changing a value needs overwrite, as kubectl label.
    try {
        reg.label_pod("prod", "client", parse_label_args({"app=web"}, false));
        FAIL();
    } catch (const PolicyError &e) {
        EXPECT_STREQ(e.what(),
                     "Pod 'prod/client': metadata.labels.app: already has a value "
                     "(client), and overwrite was not asked for (--overwrite)");
    }
    std::tie(pod, lines) =
        reg.label_pod("prod", "client", parse_label_args({"app=web", "tier-", "x=y"}, true));
    EXPECT_EQ(pod.labels, (Labels{{"app", "web"}, {"x", "y"}}));
    EXPECT_EQ(lines, (std::vector<std::string>{"app=web (was client)", "x=y", "tier not present"}));
    std::tie(pod, lines) = reg.label_pod("prod", "client", parse_label_args({"x-"}, false));
    EXPECT_EQ(pod.labels, (Labels{{"app", "web"}}));
    // Bad keys and values are Kubernetes' refusals.
    EXPECT_THROW(reg.label_pod("prod", "client", parse_label_args({"a b=c"}, false)), PolicyError);
    EXPECT_THROW(reg.label_pod("prod", "client", parse_label_args({"a=b c"}, false)), PolicyError);
    EXPECT_THROW(parse_label_args({"novalue"}, false), PolicyError);
    EXPECT_THROW(reg.label_pod("Prod", "client", parse_label_args({"a=b"}, false)), PolicyError);
    auto [ns, ns_lines] = reg.label_namespace("prod", parse_label_args({"env=prod"}, false));
    EXPECT_EQ(ns.labels.at("env"), "prod");
    const auto l = reg.list();
    EXPECT_EQ(l.pods.size(), 1u);
    EXPECT_EQ(l.namespaces.size(), 1u);
}

TEST(PolicyStore, PodsTakeTheirAddressesFromIpam) {
    Pod recorded;
    recorded.ns = "prod";
    recorded.name = "web";
    ipam::AllocationInfo a{*net::IpAddr::parse("10.0.0.2"), {}, {}, false};
    a.attrs.ns = "prod";
    a.attrs.pod = "web";
    ipam::AllocationInfo b{*net::IpAddr::parse("fd00::9"), {}, {}, false};
    b.attrs.ns = "dev";
    b.attrs.pod = "bare";
    const auto pods = with_allocations({recorded}, {a, b});
    ASSERT_EQ(pods.size(), 2u);
    EXPECT_EQ(pods[0].ips, std::vector<net::IpAddr>{*net::IpAddr::parse("10.0.0.2")});
    EXPECT_EQ(pods[1].key(), "dev/bare");
    EXPECT_TRUE(pods[1].labels.empty());
}

// ---- fwdctl, the built binary, on an embedded store ----

struct CliRun {
    int status = -1;
    std::string out, err;
};

class FwdctlPolicy : public ::testing::Test {
  protected:
    test::TempDir dir_{"fwd-policy"};
    std::string store_ = "embedded:" + dir_.path() + "/store";

    std::string file(const std::string &name, const std::string &text) {
        const std::string path = dir_.path() + "/" + name;
        std::ofstream(path) << text;
        return path;
    }
    static std::string slurp(const std::string &path) {
        std::ifstream in(path);
        std::stringstream ss;
        ss << in.rdbuf();
        return ss.str();
    }
    CliRun fwdctl(const std::vector<std::string> &args) {
        std::string cmd = FWDCTL_PATH;
        for (const auto &a : args) {
            cmd += " '" + a + "'";
        }
        cmd += " --store '" + store_ + "' >" + dir_.path() + "/out 2>" + dir_.path() + "/err";
        const int rc = std::system(cmd.c_str());
        return {WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, slurp(dir_.path() + "/out"),
                slurp(dir_.path() + "/err")};
    }
    size_t stored() {
        const auto r = fwdctl({"policy", "list", "--json"});
        return nlohmann::json::parse(r.out)["policies"].size();
    }
};

TEST_F(FwdctlPolicy, AFileThatFailsHalfWayWritesNothing) {
    // Documents 1, 2 and 4 are good; document 3 is refused: none of them is written, nor the
    // IPPool of another kind's entry.
    const std::string bad = file("bad.yaml", std::string(R"(apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: pool-a}
spec: {cidr: 10.0.0.0/16}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: one, namespace: prod}
spec: {selector: all(), ingress: [{action: Allow}]}
---
apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: two, namespace: prod}
spec:
  ingress:
  - action: Allow
    destination: {ports: [80]}
---
apiVersion: v1
kind: Namespace
metadata: {name: prod}
)"));
    const auto r = fwdctl({"apply", "-f", bad});
    EXPECT_EQ(r.status, 1);
    EXPECT_EQ(r.err,
              "fwdctl: " + bad +
                  ":11: document 3, NetworkPolicy 'two': spec.ingress[0].destination.ports: rules "
                  "that specify ports must set protocol to TCP or UDP or SCTP\nfwdctl: nothing was "
                  "written\n");
    EXPECT_EQ(stored(), 0u);
    EXPECT_EQ(fwdctl({"ipam", "show", "--json"}).out.find("pool-a"), std::string::npos);

    // Fixed, it applies whole; deleting it with one object that does not exist deletes nothing.
    const std::string good =
        file("good.yaml",
             slurp(bad).replace(slurp(bad).find("    destination"), 0, "    protocol: TCP\n"));
    const auto ok = fwdctl({"apply", "-f", good});
    ASSERT_EQ(ok.status, 0) << ok.err;
    EXPECT_NE(ok.out.find("NetworkPolicy 'prod/two' created"), std::string::npos) << ok.out;
    EXPECT_EQ(stored(), 2u);
    const std::string extra = file("extra.yaml", std::string(R"(apiVersion: projectcalico.org/v3
kind: NetworkPolicy
metadata: {name: one, namespace: prod}
---
apiVersion: projectcalico.org/v3
kind: GlobalNetworkPolicy
metadata: {name: never-applied}
)"));
    const auto del = fwdctl({"delete", "-f", extra});
    EXPECT_EQ(del.status, 1);
    EXPECT_EQ(del.err, "fwdctl: " + extra +
                           ":5: document 2, GlobalNetworkPolicy 'never-applied': not found\n"
                           "fwdctl: nothing was written\n");
    EXPECT_EQ(stored(), 2u);
    const auto del_ok = fwdctl({"delete", "-f", good});
    EXPECT_EQ(del_ok.status, 0) << del_ok.err;
    EXPECT_EQ(stored(), 0u);
}

TEST_F(FwdctlPolicy, LabelAndTraceFollowEachOther) {
    const std::string f = file("p.yaml", kFile);
    ASSERT_EQ(fwdctl({"apply", "-f", f}).status, 0);
    ASSERT_EQ(fwdctl({"label", "pod", "prod/client", "app=client"}).status, 0);
    // The client has no address yet: a pod record, unreachable by address.
    auto r = fwdctl(
        {"policy", "trace", "--src", "10.0.0.3", "--dst", "10.0.0.2", "--dport", "8080", "--json"});
    ASSERT_EQ(r.status, 0) << r.err;
    auto j = nlohmann::json::parse(r.out);
    ASSERT_EQ(j["verdicts"].size(), 1u);
    EXPECT_EQ(j["verdicts"][0]["policy"], "prod/web");
    EXPECT_TRUE(j["allowed"]);
    r = fwdctl({"policy", "trace", "--src", "10.0.0.3", "--dst", "10.0.0.2", "--dport", "80"});
    EXPECT_EQ(r.out,
              "10.0.0.3:0 -> 10.0.0.2:80 TCP\nIngress of prod/web: DENY\n  2 policies apply to "
              "prod/web for ingress and no rule allowed it: denied at the end of the default "
              "tier\n  policies applied, in order: prod/knp.default.web, prod/web\n"
              "DENIED\n");
    // A label moves the pod under the GlobalNetworkPolicy's egress deny.
    ASSERT_EQ(fwdctl({"label", "pod", "prod/web", "locked=yes"}).status, 0);
    r = fwdctl(
        {"policy", "trace", "--src", "10.0.0.2", "--dst", "192.0.2.1", "--dport", "443", "--json"});
    j = nlohmann::json::parse(r.out);
    EXPECT_FALSE(j["allowed"]);
    EXPECT_EQ(j["verdicts"][0]["policy"], "deny-egress");
    const auto refused = fwdctl({"label", "pod", "prod/web", "locked=no"});
    EXPECT_EQ(refused.status, 1);
    EXPECT_EQ(refused.err,
              "fwdctl: Pod 'prod/web': metadata.labels.locked: already has a value "
              "(yes), and overwrite was not asked for (--overwrite)\n");
    ASSERT_EQ(fwdctl({"label", "pod", "prod/web", "locked-"}).status, 0);
    j = nlohmann::json::parse(fwdctl({"policy", "trace", "--src", "10.0.0.2", "--dst", "192.0.2.1",
                                      "--dport", "443", "--json"})
                                  .out);
    EXPECT_TRUE(j["allowed"]);
    // show: a Kubernetes policy with Calico's rules, and the endpoints it selects.
    r = fwdctl({"policy", "show", "prod/web", "--json"});
    j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["endpoints"], nlohmann::json::array({"prod/client", "prod/web"}));
    r = fwdctl({"policy", "show", "prod/knp.default.web", "--json"});
    j = nlohmann::json::parse(r.out);
    EXPECT_EQ(j["policy"]["as Calico"]["metadata"]["name"], "knp.default.web");
    EXPECT_EQ(fwdctl({"policy", "show", "nope"}).status, 1);
    r = fwdctl({"policy", "list"});
    EXPECT_NE(r.out.find("prod/knp.default.web  k8s      1000"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace fwd::policy
