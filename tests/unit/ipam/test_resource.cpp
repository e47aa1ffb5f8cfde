// Calico resource files: IPPool (v3 and CRD v1), IPAM configuration, lists; YAML and JSON;
// every refusal names the source, the document, the resource and the field.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <iterator>

#include "fwd/ipam/document.hpp"
#include "fwd/ipam/resource.hpp"

namespace fwd::ipam {
namespace {

const char *kV3Pool = R"(apiVersion: projectcalico.org/v3
kind: IPPool
metadata:
  name: default-ipv4-ippool
spec:
  cidr: 10.244.0.0/16
  blockSize: 24
  ipipMode: Never
  vxlanMode: CrossSubnet
  natOutgoing: true
  nodeSelector: kubernetes.io/os == 'linux'
  allowedUses: [Workload]
)";

// What `kubectl get ippool -o yaml` prints for the CRD, server fields and all.
const char *kCrdPool = R"(apiVersion: crd.projectcalico.org/v1
kind: IPPool
metadata:
  annotations:
    projectcalico.org/metadata: '{"creationTimestamp":null}'
  creationTimestamp: "2024-01-02T03:04:05Z"
  generation: 1
  name: default-ipv6-ippool
  resourceVersion: "812"
  uid: 4c0c3c6c-0000-4000-8000-000000000001
spec:
  allowedUses:
  - Workload
  - Tunnel
  blockSize: 122
  cidr: fd00:244::/48
  ipipMode: Never
  natOutgoing: false
  nodeSelector: all()
  vxlanMode: Never
)";

std::vector<Resource> parse(const std::string &text) {
    return parse_resources(text, "pools.yaml");
}

// The error parse() gives; fails the test when there is none.
ResourceError parse_error(const std::string &text) {
    try {
        parse(text);
    } catch (const ResourceError &e) {
        EXPECT_NE(std::string(e.what()).find("pools.yaml"), std::string::npos) << e.what();
        return e;
    }
    ADD_FAILURE() << "no error for:\n" << text;
    return ResourceError(ResourceOrigin{}, "", "none");
}

// An IPPool document with one spec line replaced or added.
std::string pool_with(const std::string &spec_lines, const std::string &name = "p") {
    return "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n  name: " + name +
           "\nspec:\n  cidr: 10.9.0.0/16\n" + spec_lines;
}

TEST(Resource, V3PoolYaml) {
    auto rs = parse(kV3Pool);
    ASSERT_EQ(rs.size(), 1u);
    ASSERT_TRUE(rs[0].is_pool());
    const IpPool &p = rs[0].pool();
    EXPECT_EQ(p.name, "default-ipv4-ippool");
    EXPECT_EQ(p.cidr.str(), "10.244.0.0/16");
    EXPECT_EQ(p.block_size, 24);
    EXPECT_EQ(p.vxlan_mode, EncapMode::kCrossSubnet);
    EXPECT_EQ(p.ipip_mode, EncapMode::kNever);
    EXPECT_TRUE(p.nat_outgoing);
    EXPECT_FALSE(p.disabled);
    EXPECT_EQ(p.node_selector, "kubernetes.io/os == 'linux'");
    EXPECT_EQ(p.allowed_uses, std::vector<AllowedUse>{AllowedUse::kWorkload});
    EXPECT_EQ(rs[0].origin.document, 1);
    EXPECT_EQ(rs[0].origin.kind, "IPPool");
    EXPECT_EQ(rs[0].origin.str(), "pools.yaml:1: document 1, IPPool 'default-ipv4-ippool'");
}

TEST(Resource, CrdV1PoolYamlWithServerFieldsIpv6) {
    auto rs = parse(kCrdPool);
    ASSERT_EQ(rs.size(), 1u);
    const IpPool &p = rs[0].pool();
    EXPECT_EQ(p.name, "default-ipv6-ippool");
    EXPECT_EQ(p.cidr.str(), "fd00:244::/48");
    EXPECT_FALSE(p.cidr.is_v4());
    EXPECT_EQ(p.block_size, 122);
    EXPECT_EQ(p.allowed_uses,
              (std::vector<AllowedUse>{AllowedUse::kWorkload, AllowedUse::kTunnel}));
}

TEST(Resource, DefaultsPerFamily) {
    auto rs = parse(R"(apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: v4}
spec: {cidr: 10.1.0.0/16}
---
apiVersion: projectcalico.org/v3
kind: IPPool
metadata: {name: v6}
spec: {cidr: "fd00:1::/64"}
)");
    ASSERT_EQ(rs.size(), 2u);
    EXPECT_EQ(rs[0].pool().block_size, 26);
    EXPECT_EQ(rs[1].pool().block_size, 122);
    EXPECT_EQ(rs[0].pool().node_selector, "all()");
    EXPECT_FALSE(rs[0].pool().nat_outgoing);
    EXPECT_EQ(rs[0].pool().vxlan_mode, EncapMode::kNever);
    EXPECT_TRUE(rs[0].pool().allows(AllowedUse::kTunnel));
}

TEST(Resource, MultiDocumentKeepsIndexAndLine) {
    std::string text = "# pools\n---\n" + std::string(kV3Pool) + "---\n---\n" + kCrdPool + "---\n";
    auto rs = parse(text);
    ASSERT_EQ(rs.size(), 2u);
    EXPECT_EQ(rs[0].origin.document, 1);
    EXPECT_EQ(rs[0].origin.line, 3);
    // An empty document between them still counts.
    EXPECT_EQ(rs[1].origin.document, 3);
    EXPECT_EQ(rs[1].pool().name, "default-ipv6-ippool");
}

TEST(Resource, JsonSingleAndArray) {
    auto rs = parse_resources(R"({
  "apiVersion": "projectcalico.org/v3",
  "kind": "IPPool",
  "metadata": {"name": "j4"},
  "spec": {"cidr": "10.2.0.0/16", "blockSize": 28, "natOutgoing": true,
           "ipipMode": "Always", "disabled": true}
})",
                              "pools.json");
    ASSERT_EQ(rs.size(), 1u);
    EXPECT_EQ(rs[0].pool().block_size, 28);
    EXPECT_EQ(rs[0].pool().ipip_mode, EncapMode::kAlways);
    EXPECT_TRUE(rs[0].pool().disabled);
    EXPECT_TRUE(rs[0].pool().nat_outgoing);

    rs = parse_resources(R"([
  {"apiVersion": "crd.projectcalico.org/v1", "kind": "IPPool", "metadata": {"name": "a"},
   "spec": {"cidr": "fd00:a::/64", "vxlanMode": "Always"}},
  {"apiVersion": "projectcalico.org/v3", "kind": "IPAMConfiguration",
   "metadata": {"name": "default"}, "spec": {"strictAffinity": true}}
])",
                         "all.json");
    ASSERT_EQ(rs.size(), 2u);
    EXPECT_EQ(rs[0].pool().vxlan_mode, EncapMode::kAlways);
    EXPECT_EQ(rs[1].origin.item, 2);
    EXPECT_TRUE(rs[1].config().strict_affinity);
}

TEST(Resource, Lists) {
    // kubectl's generic List: every item says what it is.
    auto rs = parse(R"(apiVersion: v1
kind: List
items:
- apiVersion: crd.projectcalico.org/v1
  kind: IPPool
  metadata: {name: a}
  spec: {cidr: 10.3.0.0/16}
- apiVersion: crd.projectcalico.org/v1
  kind: IPAMConfig
  metadata: {name: default}
  spec: {strictAffinity: false, autoAllocateBlocks: true, maxBlocksPerHost: 7}
)");
    ASSERT_EQ(rs.size(), 2u);
    EXPECT_EQ(rs[0].origin.item, 1);
    EXPECT_EQ(rs[1].config().max_blocks_per_host, 7);
    EXPECT_EQ(rs[1].origin.str(), "pools.yaml:1: document 1, item 2, IPAMConfig 'default'");

    // calicoctl's typed list: items may leave out kind and apiVersion.
    rs = parse(R"(apiVersion: projectcalico.org/v3
kind: IPPoolList
metadata: {resourceVersion: "9"}
items:
- metadata: {name: b}
  spec: {cidr: 10.4.0.0/16}
- metadata: {name: c}
  spec: {cidr: "fd00:4::/64"}
)");
    ASSERT_EQ(rs.size(), 2u);
    EXPECT_EQ(rs[1].pool().name, "c");
    EXPECT_EQ(rs[1].origin.kind, "IPPool");

    // A plain YAML sequence of resources, as calicoctl takes it.
    rs = parse(R"(- apiVersion: projectcalico.org/v3
  kind: IPPool
  metadata: {name: d}
  spec: {cidr: 10.5.0.0/16}
)");
    ASSERT_EQ(rs.size(), 1u);
    EXPECT_EQ(rs[0].origin.item, 1);
}

TEST(Resource, IpamConfiguration) {
    auto rs = parse(R"(apiVersion: projectcalico.org/v3
kind: IPAMConfiguration
metadata:
  name: default
spec:
  strictAffinity: true
  maxBlocksPerHost: 4
)");
    ASSERT_EQ(rs.size(), 1u);
    ASSERT_FALSE(rs[0].is_pool());
    EXPECT_TRUE(rs[0].config().strict_affinity);
    EXPECT_EQ(rs[0].config().max_blocks_per_host, 4);

    rs = parse(
        "apiVersion: crd.projectcalico.org/v1\nkind: IPAMConfig\nmetadata: {name: default}\n");
    EXPECT_FALSE(rs[0].config().strict_affinity);
    EXPECT_EQ(rs[0].config().max_blocks_per_host, 0);
}

TEST(Resource, YamlScalarsTypedLikeCalicoctl) {
    // YAML 1.1 booleans, as Go's decoder reads them; a null is "not set".
    auto rs =
        parse(pool_with("  natOutgoing: yes\n  disabled: Off\n  blockSize: 0x1c\n"
                        "  nodeSelector:\n"));
    EXPECT_TRUE(rs[0].pool().nat_outgoing);
    EXPECT_FALSE(rs[0].pool().disabled);
    EXPECT_EQ(rs[0].pool().block_size, 28);
    EXPECT_EQ(rs[0].pool().node_selector, "all()");
    // Quoted is a string, whatever it looks like.
    EXPECT_EQ(parse_error(pool_with("  natOutgoing: \"true\"\n")).field(), "spec.natOutgoing");
    EXPECT_EQ(parse_error(pool_with("  blockSize: '26'\n")).field(), "spec.blockSize");
    EXPECT_EQ(parse_error(pool_with("  blockSize: 26.5\n")).field(), "spec.blockSize");
}

TEST(ResourceError, UnknownKindOrApiVersion) {
    auto e = parse_error("apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n");
    EXPECT_EQ(e.field(), "kind");
    EXPECT_NE(std::string(e.what()).find("unknown kind 'Namespace'"), std::string::npos);

    e = parse_error(
        "apiVersion: projectcalico.org/v2\nkind: IPPool\nmetadata: {name: x}\n"
        "spec: {cidr: 10.0.0.0/8}\n");
    EXPECT_EQ(e.field(), "apiVersion");
    EXPECT_NE(std::string(e.what()).find("'projectcalico.org/v2'"), std::string::npos);

    EXPECT_EQ(parse_error("kind: IPPool\nmetadata: {name: x}\n").field(), "apiVersion");
    EXPECT_EQ(parse_error("apiVersion: projectcalico.org/v3\nmetadata: {name: x}\n").field(),
              "kind");
    EXPECT_EQ(parse_error("apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n"
                          "  metadata: {name: x}\n")
                  .origin()
                  .item,
              1);
    EXPECT_EQ(parse_error("apiVersion: v9\nkind: List\nitems: []\n").field(), "apiVersion");
    EXPECT_EQ(parse_error("just a string\n").field(), "");
}

TEST(ResourceError, PoolFieldsNamed) {
    // Missing or malformed cidr.
    auto e = parse_error(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p}\n"
        "spec: {blockSize: 26}\n");
    EXPECT_EQ(e.field(), "spec.cidr");
    EXPECT_EQ(std::string(e.what()), "pools.yaml:1: document 1, IPPool 'p': spec.cidr: missing");
    EXPECT_EQ(parse_error("apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p}\n")
                  .field(),
              "spec.cidr");
    e = parse_error(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: p}\n"
        "spec: {cidr: 10.9.0.1/16}\n");
    EXPECT_EQ(e.field(), "spec.cidr");
    EXPECT_NE(std::string(e.what()).find("host bits"), std::string::npos) << e.what();
    // Block sizes outside the family's range, or shorter than the pool.
    e = parse_error(pool_with("  blockSize: 33\n"));
    EXPECT_EQ(e.field(), "spec.blockSize");
    EXPECT_NE(std::string(e.what()).find("20..32"), std::string::npos) << e.what();
    EXPECT_EQ(parse_error(pool_with("  blockSize: 19\n")).field(), "spec.blockSize");
    EXPECT_EQ(parse_error("apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: q}\n"
                          "spec: {cidr: 'fd00::/64', blockSize: 112}\n")
                  .field(),
              "spec.blockSize");
    EXPECT_EQ(parse_error("apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: q}\n"
                          "spec: {cidr: 'fd00::/64', ipipMode: Always}\n")
                  .field(),
              "spec.ipipMode");
    // Selector, modes, uses, link-local.
    e = parse_error(pool_with("  nodeSelector: \"zone == \"\n"));
    EXPECT_EQ(e.field(), "spec.nodeSelector");
    EXPECT_EQ(parse_error(pool_with("  vxlanMode: Sometimes\n")).field(), "spec.vxlanMode");
    EXPECT_EQ(parse_error(pool_with("  allowedUses: [Workload, Pets]\n")).field(),
              "spec.allowedUses");
    EXPECT_EQ(parse_error(pool_with("  allowedUses: Workload\n")).field(), "spec.allowedUses");
    EXPECT_EQ(parse_error("apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: l}\n"
                          "spec: {cidr: 169.254.0.0/20}\n")
                  .field(),
              "spec.cidr");
    // Strict decoding: unknown and deprecated fields, unsupported non-defaults.
    EXPECT_EQ(parse_error(pool_with("  natOutgoin: true\n")).field(), "spec.natOutgoin");
    EXPECT_EQ(parse_error(pool_with("  nat-outgoing: true\n")).field(), "spec.nat-outgoing");
    EXPECT_EQ(parse_error(pool_with("  disableBGPExport: true\n")).field(),
              "spec.disableBGPExport");
    EXPECT_EQ(parse(pool_with("  disableBGPExport: false\n  assignmentMode: Automatic\n")).size(),
              1u);
    EXPECT_EQ(parse_error(pool_with("  assignmentMode: Manual\n")).field(), "spec.assignmentMode");
    EXPECT_EQ(parse_error(pool_with("") + "status: {}\nextra: 1\n").field(), "extra");
}

TEST(ResourceError, MetadataName) {
    EXPECT_EQ(parse_error("apiVersion: projectcalico.org/v3\nkind: IPPool\n"
                          "spec: {cidr: 10.0.0.0/8}\n")
                  .field(),
              "metadata");
    EXPECT_EQ(parse_error("apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {}\n"
                          "spec: {cidr: 10.0.0.0/8}\n")
                  .field(),
              "metadata.name");
    EXPECT_EQ(parse_error(pool_with("", "Bad_Name")).field(), "metadata.name");
    EXPECT_EQ(parse_error(pool_with("", "p\n  colour: red")).field(), "metadata.colour");
    auto e = parse_error(
        "apiVersion: projectcalico.org/v3\nkind: IPAMConfiguration\n"
        "metadata: {name: other}\n");
    EXPECT_EQ(e.field(), "metadata.name");
    EXPECT_EQ(parse_error("apiVersion: projectcalico.org/v3\nkind: IPAMConfiguration\n"
                          "metadata: {name: default}\nspec: {maxBlocksPerHost: -1}\n")
                  .field(),
              "spec.maxBlocksPerHost");
    EXPECT_EQ(parse_error("apiVersion: projectcalico.org/v3\nkind: IPAMConfiguration\n"
                          "metadata: {name: default}\nspec: {autoAllocateBlocks: false}\n")
                  .field(),
              "spec.autoAllocateBlocks");
}

TEST(ResourceError, DuplicatesInOneFile) {
    auto e = parse_error(pool_with("") + "---\n" + pool_with("  natOutgoing: true\n"));
    EXPECT_EQ(e.field(), "metadata.name");
    EXPECT_EQ(e.origin().document, 2);
    EXPECT_NE(std::string(e.what()).find("also in pools.yaml:1: document 1"), std::string::npos)
        << e.what();
    const std::string cfg =
        "apiVersion: projectcalico.org/v3\nkind: IPAMConfiguration\n"
        "metadata: {name: default}\n";
    EXPECT_EQ(parse_error(cfg + "---\n" + cfg).origin().document, 2);
    // A repeated key is an error too, in YAML and in JSON.
    e = parse_error(pool_with("  blockSize: 26\n  blockSize: 27\n"));
    EXPECT_EQ(e.field(), "spec.blockSize");
    EXPECT_EQ(e.origin().line, 8);
    try {
        parse_resources(R"({"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
                            "kind": "IPPool"})",
                        "x.json");
        ADD_FAILURE() << "duplicate JSON key accepted";
    } catch (const ResourceError &err) {
        EXPECT_EQ(err.field(), "kind");
    }
    // Deeper down too; the same key in sibling objects is no repeat.
    try {
        parse_resources(R"([{"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
                             "metadata": {"name": "a"}, "spec": {"cidr": "10.0.0.0/16"}},
                            {"apiVersion": "projectcalico.org/v3", "kind": "IPPool",
                             "metadata": {"name": "b", "labels": {"x": "1", "x": "2"}}}])",
                        "x.json");
        ADD_FAILURE() << "nested duplicate JSON key accepted";
    } catch (const ResourceError &err) {
        EXPECT_EQ(err.field(), "x");
    }
}

// Malformed YAML the fuzzer found hanging the parser we used before libyaml (yaml-cpp 0.7
// looped without end, allocating, on a document starting with ',' and on the finding's file):
// each must be refused as bad YAML, naming a line, at once.
TEST(ResourceError, FuzzFindingsAreRefusedQuickly) {
    std::vector<std::string> texts = {",x\n", "# c\n\n  ,\n {\"meta\": 3\n", "a: 1\n---\n,x\n",
                                      "--- ,x\n", "%YAML 1.2\n---\n,\n"};
    std::ifstream finding(std::string(FWD_FUZZ_FINDINGS_DIR) + "/fuzz_resources-yaml-cpp-hang");
    ASSERT_TRUE(finding) << "the fuzz finding's input is missing";
    texts.emplace_back(std::istreambuf_iterator<char>(finding), std::istreambuf_iterator<char>());
    for (const std::string &text : texts) {
        const auto start = std::chrono::steady_clock::now();
        auto e = parse_error(text);
        EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1)) << text;
        EXPECT_NE(std::string(e.what()).find("bad YAML (column "), std::string::npos)
            << text << ": " << e.what();
        EXPECT_GT(e.origin().line, 0) << text;
    }
    // libyaml's own message and where the construct it was reading started.
    auto e = parse_error("a: 1\n---\n,x\n");
    EXPECT_EQ(e.origin().line, 3);
    EXPECT_EQ(e.origin().document, 2);
    EXPECT_NE(std::string(e.what()).find("did not find expected node content"), std::string::npos)
        << e.what();
}

// An alias stands for a copy of its anchor's value, typed as there; anchors are per document.
TEST(Resource, AnchorsAndAliases) {
    auto raw = split_resources(
        "apiVersion: projectcalico.org/v3\nkind: IPPoolList\nitems:\n"
        "- metadata: {name: a, labels: &l {&k zone: eu, tier: \"1\"}}\n"
        "  spec: &s\n    cidr: 10.1.0.0/16\n    natOutgoing: yes\n    blockSize: 24\n"
        "- metadata: {name: b, labels: *l}\n  spec: {cidr: fd00:b::/64, *k : west}\n"
        "- metadata: {name: c}\n  spec: *s\n",
        "aliases.yaml");
    ASSERT_EQ(raw.size(), 3u);
    EXPECT_EQ(raw[1].value["metadata"]["labels"], raw[0].value["metadata"]["labels"]);
    EXPECT_EQ(raw[1].value["metadata"]["labels"]["tier"], "1");
    EXPECT_EQ(raw[1].value["spec"]["zone"], "west");  // an anchored scalar as a key
    EXPECT_EQ(raw[2].value["spec"], raw[0].value["spec"]);
    EXPECT_EQ(raw[2].value["spec"]["natOutgoing"], true);
    EXPECT_EQ(raw[2].value["spec"]["blockSize"], 24);
    EXPECT_EQ(raw[2].origin.item, 3);

    auto e = parse_error(pool_with("  nodeSelector: &n all()\n") + "---\n" +
                         pool_with("  nodeSelector: *n\n", "q"));
    EXPECT_EQ(e.origin().document, 2);
    EXPECT_NE(std::string(e.what()).find("alias *n names no anchor"), std::string::npos)
        << e.what();
    // An alias of a mapping is no key; nor is a mapping.
    EXPECT_NE(std::string(parse_error("a: &m {x: 1}\n*m : 2\n").what()).find("plain value"),
              std::string::npos);
    EXPECT_NE(std::string(parse_error("? {x: 1}\n: 2\n").what()).find("plain value"),
              std::string::npos);
    // A repeated key through an alias is still a repeat.
    EXPECT_EQ(parse_error(pool_with("  &c natOutgoing: true\n  *c : false\n")).field(),
              "spec.natOutgoing");
}

// "Billion laughs": nine levels of ten aliases would build 10^9 values from 700 bytes. The
// copies are bounded, and the error says why, at once and without the memory.
TEST(ResourceError, AliasBombIsRefused) {
    std::string text = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
    for (int i = 1; i <= 9; ++i) {
        const std::string prev = "*a" + std::to_string(i - 1);
        text += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
        for (int j = 0; j < 10; ++j) {
            text += prev + (j < 9 ? ", " : "]\n");
        }
    }
    const auto start = std::chrono::steady_clock::now();
    auto e = parse_error(text);
    EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
    EXPECT_NE(std::string(e.what()).find("anchors and aliases expand to more than 100000 values"),
              std::string::npos)
        << e.what();
    EXPECT_EQ(e.origin().line, 5) << e.what();  // a4: the first level past the bound
}

TEST(ResourceError, DeepNestingIsRefused) {
    // (behind a key: a text starting with '[' goes to the JSON reader)
    auto e = parse_error("a: " + std::string(300, '[') + std::string(300, ']') + "\n");
    EXPECT_NE(std::string(e.what()).find("nested deeper than 256 levels"), std::string::npos)
        << e.what();
}

TEST(ResourceError, Syntax) {
    auto e = parse_error(
        "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata:\n"
        "  name: [unclosed\n");
    EXPECT_GT(e.origin().line, 0);
    EXPECT_NE(std::string(e.what()).find("bad YAML"), std::string::npos) << e.what();
    e = parse_error("{\"apiVersion\": \"projectcalico.org/v3\",\n \"kind\": }");
    EXPECT_NE(std::string(e.what()).find("bad JSON"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("line 2"), std::string::npos) << e.what();
    EXPECT_NE(std::string(parse_error("").what()).find("no resources"), std::string::npos);
    EXPECT_NE(std::string(parse_error("# nothing\n---\n").what()).find("no resources"),
              std::string::npos);
}

// ---- plans ----

IpPool existing_pool(const std::string &name, const std::string &cidr) {
    IpPool p;
    p.name = name;
    p.cidr = *Cidr::parse(cidr);
    return p.normalized();
}

std::string pool_doc(const std::string &name, const std::string &cidr,
                     const std::string &extra = "") {
    return "apiVersion: projectcalico.org/v3\nkind: IPPool\nmetadata: {name: " + name +
           "}\nspec:\n  cidr: \"" + cidr + "\"\n" + extra + "---\n";
}

TEST(ResourcePlan, CreateUpdateUnchanged) {
    const std::vector<IpPool> existing{existing_pool("a", "10.1.0.0/16"),
                                       existing_pool("b", "fd00:b::/64")};
    auto rs =
        parse(pool_doc("a", "10.1.0.0/16") + pool_doc("b", "fd00:b::/64", "  natOutgoing: true\n") +
              pool_doc("c", "10.3.0.0/16") +
              "apiVersion: projectcalico.org/v3\nkind: IPAMConfiguration\n"
              "metadata: {name: default}\nspec: {strictAffinity: true}\n");
    auto plan = plan_apply(rs, existing, IpamConfig{});
    ASSERT_EQ(plan.size(), 4u);
    EXPECT_EQ(plan[0].action, PlannedChange::Action::kUnchanged);
    EXPECT_EQ(plan[1].action, PlannedChange::Action::kUpdate);
    ASSERT_TRUE(plan[1].old_pool);
    EXPECT_FALSE(plan[1].old_pool->nat_outgoing);
    EXPECT_EQ(plan[2].action, PlannedChange::Action::kCreate);
    EXPECT_EQ(plan[3].action, PlannedChange::Action::kUpdate);
    EXPECT_EQ(to_string(plan[2].action), "created");

    IpamConfig strict;
    strict.strict_affinity = true;
    EXPECT_EQ(plan_apply(rs, existing, strict)[3].action, PlannedChange::Action::kUnchanged);
}

ResourceError plan_error(const std::string &text, const std::vector<IpPool> &existing) {
    try {
        plan_apply(parse(text), existing, IpamConfig{});
    } catch (const ResourceError &e) {
        return e;
    }
    ADD_FAILURE() << "no error for:\n" << text;
    return ResourceError(ResourceOrigin{}, "", "none");
}

TEST(ResourcePlan, ImmutableFieldsAndOverlaps) {
    const std::vector<IpPool> existing{existing_pool("a", "10.1.0.0/16"),
                                       existing_pool("b", "fd00:b::/64")};
    auto e = plan_error(pool_doc("c", "10.3.0.0/16") + pool_doc("a", "10.2.0.0/16"), existing);
    EXPECT_EQ(e.field(), "spec.cidr");
    EXPECT_EQ(e.origin().document, 2);
    EXPECT_NE(std::string(e.what()).find("cannot change after creation"), std::string::npos);
    e = plan_error(pool_doc("b", "fd00:b::/64", "  blockSize: 120\n"), existing);
    EXPECT_EQ(e.field(), "spec.blockSize");
    // Overlapping an existing pool, or another pool of the same file.
    e = plan_error(pool_doc("c", "10.1.128.0/17"), existing);
    EXPECT_EQ(e.field(), "spec.cidr");
    EXPECT_NE(std::string(e.what()).find("overlaps pool 'a'"), std::string::npos) << e.what();
    e = plan_error(pool_doc("c", "fd00:c::/64") + pool_doc("d", "fd00:c::/80"), {});
    EXPECT_EQ(e.origin().name, "c");
    // Moving a pool away to give its range to another is still a cidr change.
    e = plan_error(pool_doc("a", "10.9.0.0/16") + pool_doc("z", "10.1.0.0/16"), existing);
    EXPECT_EQ(e.origin().name, "a");
}

TEST(ResourcePlan, Delete) {
    const std::vector<IpPool> existing{existing_pool("a", "10.1.0.0/16")};
    auto plan = plan_delete(parse(pool_doc("a", "10.1.0.0/16") +
                                  "apiVersion: projectcalico.org/v3\nkind: IPAMConfiguration\n"
                                  "metadata: {name: default}\n"),
                            existing);
    ASSERT_EQ(plan.size(), 2u);
    EXPECT_EQ(plan[0].action, PlannedChange::Action::kDelete);
    EXPECT_EQ(plan[0].old_pool->name, "a");
    EXPECT_FALSE(plan[1].resource.is_pool());
    try {
        plan_delete(parse(pool_doc("a", "10.1.0.0/16") + pool_doc("nope", "10.2.0.0/16")),
                    existing);
        ADD_FAILURE() << "deleting an unknown pool passed";
    } catch (const ResourceError &e) {
        EXPECT_EQ(e.origin().document, 2);
        EXPECT_EQ(e.field(), "metadata.name");
    }
}

// ---- Node (the node registry's records) ----

// A Node as calicoctl writes one, and as fwdctl apply -f takes it.
std::string node_doc(const std::string &name, const std::string &v4,
                     const std::string &extra = "") {
    return "apiVersion: projectcalico.org/v3\nkind: Node\nmetadata:\n  name: " + name +
           "\n  labels: {zone: a}\nspec:\n  bgp:\n    ipv4Address: " + v4 + "\n" + extra + "---\n";
}

TEST(ResourceNode, YamlJsonAndListsDecodeAsTheRegistryReadsThem) {
    auto rs = parse(node_doc("node1", "10.10.10.11/24",
                             "    ipv6Address: fd00:10:10::11/64\n"
                             "  vxlanTunnelMACAddr: 66:00:00:00:00:11\n") +
                    pool_doc("p", "10.9.0.0/16"));
    ASSERT_EQ(rs.size(), 2u);
    ASSERT_TRUE(rs[0].is_node());
    EXPECT_FALSE(rs[0].is_pool());
    EXPECT_TRUE(rs[1].is_pool());
    const NodeRecord &n = rs[0].node();
    EXPECT_EQ(n.name, "node1");
    EXPECT_EQ(n.ipv4->str(), "10.10.10.11/24");
    EXPECT_EQ(n.ipv6->str(), "fd00:10:10::11/64");
    EXPECT_EQ(n.vtep_mac4->str(), "66:00:00:00:00:11");
    EXPECT_FALSE(n.vtep_mac6);
    EXPECT_EQ(n.labels.at("zone"), "a");
    EXPECT_EQ(rs[0].origin.kind, "Node");
    EXPECT_EQ(rs[0].origin.name, "node1");
    // The registry's own JSON (to_json) is a resource file too.
    auto js = parse_resources(nlohmann::json(n).dump(), "node.json");
    ASSERT_EQ(js.size(), 1u);
    EXPECT_EQ(js[0].node(), n);
    // A NodeList lends its kind and apiVersion to items without them.
    auto l = parse(
        "apiVersion: projectcalico.org/v3\nkind: NodeList\nitems:\n"
        "- metadata: {name: a}\n  spec: {bgp: {ipv4Address: 10.0.0.1/24}}\n"
        "- metadata: {name: b}\n  spec: {bgp: {ipv6Address: fd00::2/64}}\n");
    ASSERT_EQ(l.size(), 2u);
    EXPECT_EQ(l[1].node().ipv6->str(), "fd00::2/64");
    EXPECT_EQ(l[1].origin.item, 2);
}

TEST(ResourceNode, RefusalsNameTheDocumentTheNodeAndTheField) {
    auto e = parse_error(pool_doc("p", "10.9.0.0/16") +
                         node_doc("node1", "10.10.10.11/40"));  // length out of range
    EXPECT_EQ(e.field(), "spec.bgp.ipv4Address");
    EXPECT_EQ(e.origin().document, 2);
    EXPECT_EQ(e.origin().name, "node1");
    EXPECT_EQ(std::string(e.what()),
              "pools.yaml:7: document 2, Node 'node1': spec.bgp.ipv4Address: "
              "'10.10.10.11/40': prefix length out of range 0..32");
    e = parse_error(node_doc("node1", "fd00::1/64"));
    EXPECT_NE(std::string(e.what()).find("is not an IPv4 address"), std::string::npos) << e.what();
    EXPECT_EQ(parse_error(node_doc("node1", "10.0.0.1/24", "  asNumber: 64512\n")).field(),
              "spec.asNumber");
    EXPECT_EQ(
        parse_error(node_doc("node1", "10.0.0.1/24", "  vxlanTunnelMACAddr: 01:00:5e:00:00:01\n"))
            .field(),
        "spec.vxlanTunnelMACAddr");
    EXPECT_EQ(parse_error(node_doc("Node_1", "10.0.0.1/24")).field(), "metadata.name");
    // Calico's v3 Node only: the CRD group has no Node, Kubernetes' v1 Node is another thing.
    e = parse_error("apiVersion: crd.projectcalico.org/v1\nkind: Node\nmetadata: {name: a}\n");
    EXPECT_EQ(e.field(), "apiVersion");
    EXPECT_NE(std::string(e.what()).find("for Node (want projectcalico.org/v3)"), std::string::npos)
        << e.what();
    // One node twice in a file; a node and a pool may share a name.
    e = parse_error(node_doc("a", "10.0.0.1/24") + node_doc("a", "10.0.0.2/24"));
    EXPECT_EQ(e.field(), "metadata.name");
    EXPECT_EQ(e.origin().document, 2);
    EXPECT_EQ(parse(node_doc("a", "10.0.0.1/24") + pool_doc("a", "10.9.0.0/16")).size(), 2u);
}

TEST(ResourcePlan, NodesCreatedUpdatedUnchangedDeleted) {
    NodeRecord stored_a;
    stored_a.name = "a";
    stored_a.ipv4 = IfAddr::parse("10.0.0.1/24");
    stored_a.labels["zone"] = "a";
    NodeRecord stored_b = stored_a;
    stored_b.name = "b";
    stored_b.ipv4 = IfAddr::parse("10.0.0.2/24");
    auto rs = parse(node_doc("a", "10.0.0.1/24") + node_doc("b", "10.0.0.9/24") +
                    node_doc("c", "10.0.0.3/24") + pool_doc("p", "10.9.0.0/16"));
    auto plan = plan_apply(rs, {}, IpamConfig{}, {stored_a, stored_b});
    ASSERT_EQ(plan.size(), 4u);
    EXPECT_EQ(plan[0].action, PlannedChange::Action::kUnchanged);
    EXPECT_EQ(plan[1].action, PlannedChange::Action::kUpdate);
    ASSERT_TRUE(plan[1].old_node);
    EXPECT_EQ(plan[1].old_node->ipv4->str(), "10.0.0.2/24");
    EXPECT_EQ(plan[2].action, PlannedChange::Action::kCreate);
    EXPECT_FALSE(plan[2].old_node);
    EXPECT_EQ(plan[3].action, PlannedChange::Action::kCreate);
    // Without the stored records every node is new.
    EXPECT_EQ(plan_apply(rs, {}, IpamConfig{})[0].action, PlannedChange::Action::kCreate);

    auto del = plan_delete(parse(node_doc("a", "10.0.0.1/24")), {}, {"a", "b"});
    ASSERT_EQ(del.size(), 1u);
    EXPECT_EQ(del[0].action, PlannedChange::Action::kDelete);
    EXPECT_TRUE(del[0].resource.is_node());
    try {
        plan_delete(parse(node_doc("a", "10.0.0.1/24") + node_doc("z", "10.0.0.26/24")), {}, {"a"});
        ADD_FAILURE() << "deleting an unknown node passed";
    } catch (const ResourceError &e) {
        EXPECT_EQ(e.origin().document, 2);
        EXPECT_EQ(e.field(), "metadata.name");
        EXPECT_NE(std::string(e.what()).find("no node named 'z'"), std::string::npos);
    }
}

}  // namespace
}  // namespace fwd::ipam
