// The IPAM model: pools, blocks, block affinities, handles, the IPAM
// configuration and reservations, as Calico has them (../shared/CALICO.md,
// "Address pools and IPAM"), with their JSON encoding for the store.
// Control code only: everything here allocates and may throw.
#pragma once

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "fwd/net/addr.hpp"

namespace fwd::ipam {

using U128 = unsigned __int128;

// Any IPAM failure; what() says what and where.
class IpamError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// A named object (a pool, a node) that breaks a rule; names the object and the field.
// what(): "<kind> '<name>': <field>: <why>" (no field part when field is empty).
class FieldError : public IpamError {
  public:
    FieldError(std::string_view kind, std::string name, std::string field, const std::string &why);
    const std::string &name() const { return name_; }
    const std::string &field() const { return field_; }

  private:
    std::string name_;
    std::string field_;
};

// A pool that breaks a rule; names the pool and the field.
class PoolError : public FieldError {
  public:
    PoolError(std::string pool, std::string field, const std::string &why)
        : FieldError("IP pool", std::move(pool), std::move(field), why) {}
    const std::string &pool() const { return name(); }
};

// An IPv4 or IPv6 prefix (the two strong prefix types behind one value).
class Cidr {
  public:
    Cidr() = default;
    Cidr(net::Prefix4 p) : v_(p) {}
    Cidr(net::Prefix6 p) : v_(p) {}
    // "a/len"; host bits set are an error unless allow_host_bits.
    static std::optional<Cidr> parse(std::string_view s, bool allow_host_bits = false);
    net::Family family() const {
        return std::holds_alternative<net::Prefix4>(v_) ? net::Family::kIp4 : net::Family::kIp6;
    }
    bool is_v4() const { return family() == net::Family::kIp4; }
    const net::Prefix4 &v4() const { return std::get<net::Prefix4>(v_); }
    const net::Prefix6 &v6() const { return std::get<net::Prefix6>(v_); }
    int len() const;
    int bits() const { return is_v4() ? 32 : 128; }
    net::IpAddr addr() const;
    bool contains(const net::IpAddr &a) const;
    bool contains(const Cidr &c) const;
    bool overlaps(const Cidr &c) const;
    // Number of addresses, saturated at 2^64 (enough for any count we loop over).
    uint64_t size() const;
    // The i-th address and the index of an address inside this prefix.
    net::IpAddr nth(U128 i) const;
    U128 index_of(const net::IpAddr &a) const;
    // The i-th subnet of length sub_len.
    Cidr subnet(int sub_len, U128 i) const;
    // The subnet of length sub_len holding a.
    static Cidr containing(const net::IpAddr &a, int sub_len);
    std::string str() const;
    // str() with '/' replaced by '-', for store keys.
    std::string key() const;
    auto operator<=>(const Cidr &) const = default;

  private:
    std::variant<net::Prefix4, net::Prefix6> v_;
};

U128 to_u128(const net::IpAddr &a);
net::IpAddr from_u128(net::Family f, U128 v);
std::string family_name(net::Family f);  // "IPv4" / "IPv6"

// A Kubernetes resource name (pools, nodes): at most 253 characters, dot-separated labels of
// lower-case letters, digits and '-', each starting and ending with a letter or digit.
bool is_dns1123_subdomain(std::string_view name);

// vxlanMode / ipipMode. Operator names (None, VXLAN, VXLANCrossSubnet) are
// accepted on input as `encapsulation`.
enum class EncapMode { kNever, kAlways, kCrossSubnet };
std::string_view to_string(EncapMode m);
std::optional<EncapMode> parse_encap_mode(std::string_view s);

enum class AllowedUse { kWorkload, kTunnel, kLoadBalancer };
std::string_view to_string(AllowedUse u);
std::optional<AllowedUse> parse_allowed_use(std::string_view s);

inline constexpr int kDefaultBlockSize4 = 26;
inline constexpr int kDefaultBlockSize6 = 122;
inline constexpr int kMinBlockSize4 = 20;
inline constexpr int kMaxBlockSize4 = 32;
inline constexpr int kMinBlockSize6 = 116;
inline constexpr int kMaxBlockSize6 = 128;

struct IpPool {
    std::string name;
    Cidr cidr;
    int block_size = 0;  // 0: the family default (26 / 122), filled by normalize()
    EncapMode vxlan_mode = EncapMode::kNever;
    EncapMode ipip_mode = EncapMode::kNever;  // IPv4 only
    bool nat_outgoing = false;
    std::string node_selector = "all()";
    bool disabled = false;
    std::vector<AllowedUse> allowed_uses{AllowedUse::kWorkload, AllowedUse::kTunnel};

    bool allows(AllowedUse u) const;
    // Defaults filled in (block size, selector, allowed uses).
    IpPool normalized() const;
    bool operator==(const IpPool &) const = default;
};

// Throws PoolError unless `p` (normalized) is a valid pool that overlaps none
// of `others` (pools with p's name are skipped: that is p itself).
void validate_pool(const IpPool &p, const std::vector<IpPool> &others = {});
// Also: cidr and blockSize unchanged.
void validate_pool_update(const IpPool &old_pool, const IpPool &new_pool,
                          const std::vector<IpPool> &others = {});

// Attributes written beside each allocation.
struct Attributes {
    std::string handle;
    std::string ns;  // namespace
    std::string pod;
    std::string node;
    std::string container_id;
    bool operator==(const Attributes &) const = default;
};

// A block of a pool: one allocation slot per address.
struct Block {
    Cidr cidr;
    std::optional<std::string> affinity;  // the node that claimed it
    std::vector<std::optional<Attributes>> allocations;
    // Free ordinals in reuse order: a released address goes to the back.
    std::vector<uint32_t> unallocated;
    int64_t empty_since_ms = 0;  // when it last became empty (0: in use)

    static Block make(const Cidr &cidr, std::optional<std::string> node, int64_t now_ms);
    int used() const { return static_cast<int>(allocations.size() - unallocated.size()); }
    int free() const { return static_cast<int>(unallocated.size()); }
    bool empty() const { return unallocated.size() == allocations.size(); }
};

enum class AffinityState { kPending, kConfirmed, kPendingDeletion };
std::string_view to_string(AffinityState s);

struct Affinity {
    std::string node;
    Cidr cidr;
    AffinityState state = AffinityState::kPending;
    int64_t claimed_at_ms = 0;
};

// A handle counts its addresses per block (block cidr -> count).
struct Handle {
    std::string id;
    std::map<std::string, int> blocks;
};

struct IpamConfig {
    bool strict_affinity = false;
    int max_blocks_per_host = 0;  // 0: 20
    int effective_max_blocks() const { return max_blocks_per_host == 0 ? 20 : max_blocks_per_host; }
};

// Like Calico's IPReservation: addresses never handed out.
struct Reservation {
    std::string name;
    std::vector<Cidr> cidrs;
};

void to_json(nlohmann::json &j, const Cidr &c);
void from_json(const nlohmann::json &j, Cidr &c);
void to_json(nlohmann::json &j, const IpPool &p);
// Accepts our encoding and Calico's spec field names (cidr, blockSize,
// vxlanMode or encapsulation, ipipMode, natOutgoing, nodeSelector, disabled,
// allowedUses); throws PoolError on a bad field.
void from_json(const nlohmann::json &j, IpPool &p);
void to_json(nlohmann::json &j, const Attributes &a);
void from_json(const nlohmann::json &j, Attributes &a);
void to_json(nlohmann::json &j, const Block &b);
void from_json(const nlohmann::json &j, Block &b);
void to_json(nlohmann::json &j, const Affinity &a);
void from_json(const nlohmann::json &j, Affinity &a);
void to_json(nlohmann::json &j, const Handle &h);
void from_json(const nlohmann::json &j, Handle &h);
void to_json(nlohmann::json &j, const IpamConfig &c);
void from_json(const nlohmann::json &j, IpamConfig &c);
void to_json(nlohmann::json &j, const Reservation &r);
void from_json(const nlohmann::json &j, Reservation &r);

// `k8s-pod-network.<containerID>`.
std::string pod_handle(std::string_view container_id, std::string_view network = "k8s-pod-network");
// `vxlan-tunnel-addr-<node>` / `vxlan-v6-tunnel-addr-<node>`.
std::string tunnel_handle(std::string_view node, net::Family f);

}  // namespace fwd::ipam
