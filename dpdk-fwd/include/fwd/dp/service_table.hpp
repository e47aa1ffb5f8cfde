// Kubernetes Services, the datapath side: the frontends this node answers
// for (ClusterIP, NodePort, externalIPs, LoadBalancer ingress; one entry per
// address, protocol and port) and their backends, as the NAT stage reads
// them for a new flow. Built on the control side from the node's compiled
// table (fwd::svc::ServiceTable, policy/include/fwd/svc/table.hpp) and
// published whole: immutable once published, replaced by a new one, the old
// freed after a grace period.
//
// Lookup: open addressing on (family, protocol, port, address), a power of
// two of slots at most half full, linear probing: one or two probes, no
// allocation, noexcept. A miss costs the probe of one empty slot.
//
// Backends: each frontend lists all of its backends (an existing flow keeps
// its backend while it is listed, whatever its conditions) and, apart, the
// indexes of those a new flow may take (ready, and allowed by the traffic
// policy). pick() chooses among the latter by a flow hash, so the
// connections of one client spread over them; a frontend with none says
// what a new flow gets instead (reject: ICMP port unreachable, as
// kube-proxy; drop).
//
// Backend addresses: the set of every backend address of every frontend
// (is_backend4 / is_backend6), built with the table, so the NAT stage looks
// up the connection table only for packets that may be a backend's replies:
// route-only traffic pays one probe of this set (open addressing, at most
// half full: one or two probes).
#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace fwd::dp::svc {

inline constexpr uint32_t kNoFrontend = UINT32_MAX;

enum FrontendFlags : uint8_t {
    kFeAffinity = 1,    // sessionAffinity ClientIP (affinity_timeout_s)
    kFeLocalOnly = 2,   // only local backends (traffic policy Local)
    kFeKeepSource = 4,  // externalTrafficPolicy Local: never SNAT the client
    kFeReject = 8,      // no backend for new flows: ICMP / ICMPv6 port unreachable
    kFeDrop = 16,       // no backend for new flows here: dropped
    kFeExternal = 32,   // NodePort, externalIP, LoadBalancer (not a ClusterIP)
};

enum BackendFlags : uint8_t {
    kBeLocal = 1,  // on this node
    kBeReady = 2,
    kBeServing = 4,
    kBeTerminating = 8,
};

struct Backend {
    std::array<uint8_t, 16> addr;  // IPv4: the first 4 bytes, network order
    uint16_t port_be;
    uint8_t flags;
};

// What the control side gives for one frontend.
struct FrontendSpec {
    bool v6 = false;
    std::array<uint8_t, 16> addr{};  // IPv4: the first 4 bytes, network order
    uint8_t proto = 0;               // IPPROTO_TCP, _UDP, _SCTP
    uint16_t port = 0;               // host order
    uint8_t flags = 0;               // FrontendFlags
    uint32_t affinity_timeout_s = 0;
    std::vector<Backend> backends;  // all of them; port_be in network order
    std::vector<bool> for_new;      // per backend: a new flow may take it
};

struct Frontend {
    std::array<uint8_t, 16> addr;
    uint16_t port_be;
    uint8_t proto;
    bool v6;
    uint8_t flags;
    uint32_t affinity_timeout_s;
    uint32_t first_backend, n_backends;  // into backends()
    uint32_t first_new, n_new;           // into the new-flow index list
};

class ServiceTable {
  public:
    // Control side. Frontends with the same key: the first wins (the
    // compiled table already resolved such conflicts and noted them).
    explicit ServiceTable(const std::vector<FrontendSpec> &specs);

    // Workers (noexcept, no allocation). kNoFrontend on a miss.
    uint32_t find4(uint32_t addr_be, uint8_t proto, uint16_t port_be) const noexcept;
    uint32_t find6(const uint8_t *addr, uint8_t proto, uint16_t port_be) const noexcept;
    const Frontend &frontend(uint32_t i) const { return frontends_[i]; }
    const Backend &backend(uint32_t i) const { return backends_[i]; }
    // A backend index for a new flow of that hash; UINT32_MAX when the
    // frontend has none (then kFeReject or kFeDrop says what to do).
    uint32_t pick(const Frontend &f, uint32_t flow_hash) const noexcept;
    // Whether an existing flow's backend (its address and port) is still one
    // of the frontend's: a flow whose backend went is ended by the caller.
    bool has_backend(const Frontend &f, const uint8_t *addr, uint16_t port_be) const noexcept;
    // The index of that backend when a new flow may still take it (ready,
    // allowed by the traffic policy), else UINT32_MAX: session affinity
    // keeps a client on its backend only while it is one of those.
    uint32_t new_flow_backend(const Frontend &f, const uint8_t *addr,
                              uint16_t port_be) const noexcept;

    // Whether some frontend lists a backend at this address (any port).
    bool is_backend4(uint32_t addr_be) const noexcept;
    bool is_backend6(const uint8_t *addr) const noexcept;
    // Whether the table has a frontend of the family (the NAT stage skips a
    // family that has none and no natOutgoing pool).
    bool has_family(bool v6) const { return n_frontends_[v6 ? 1 : 0] != 0; }

    size_t size() const { return frontends_.size(); }

  private:
    uint32_t find(bool v6, const uint8_t *addr, uint8_t proto, uint16_t port_be) const noexcept;
    void add_backend_addr(bool v6, const std::array<uint8_t, 16> &a);

    std::vector<Frontend> frontends_;
    std::vector<Backend> backends_;
    std::vector<uint32_t> new_;    // backend indexes, per frontend a run
    std::vector<uint32_t> slots_;  // frontend index + 1; 0 empty
    uint32_t mask_ = 0;
    std::array<size_t, 2> n_frontends_{};  // by family: [0] IPv4, [1] IPv6
    // Backend address sets, open addressing, all zeros empty (neither
    // 0.0.0.0 nor :: is a backend); sizes a power of two, at most half full.
    std::vector<uint32_t> be4_;
    std::vector<std::array<uint8_t, 16>> be6_;
};

// What the worker slot "services" (worker_slot()) holds: the published
// table, or nullptr when the node serves no service. [C] swap() with a
// release store, the old table deleted after a grace period; [W] get() once
// per burst.
class ServiceTables {
  public:
    const ServiceTable *get() const { return cur_.load(std::memory_order_acquire); }
    const ServiceTable *swap(const ServiceTable *next) {
        return cur_.exchange(next, std::memory_order_acq_rel);
    }

  private:
    std::atomic<const ServiceTable *> cur_{nullptr};
};

uint16_t worker_slot();

}  // namespace fwd::dp::svc
