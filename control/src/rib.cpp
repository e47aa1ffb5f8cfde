#include "fwd/control/rib.hpp"

#include <algorithm>

namespace fwd::control {

std::optional<AnyPrefix> parse_any_prefix(const std::string &s) {
    if (s.find(':') != std::string::npos) {
        if (auto p = net::Prefix6::parse(s)) {
            return AnyPrefix(*p);
        }
        return std::nullopt;
    }
    if (auto p = net::Prefix4::parse(s)) {
        return AnyPrefix(*p);
    }
    return std::nullopt;
}

namespace {
net::Family family_of(const AnyPrefix &p) {
    return std::holds_alternative<net::Prefix4>(p) ? net::Family::kIp4 : net::Family::kIp6;
}
}  // namespace

const char *route_source_name(RouteSource s) {
    return kRouteSourceNames[static_cast<size_t>(s)];
}

std::optional<RouteSource> parse_route_source(const std::string &s) {
    for (size_t i = 0; i < kRouteSourceCount; i++) {
        if (s == kRouteSourceNames[i]) {
            return static_cast<RouteSource>(i);
        }
    }
    return std::nullopt;
}

RouteTarget RouteTarget::owned(uint32_t nh, std::string owner, std::string ref_key,
                               std::string ref) {
    RouteTarget t;
    t.kind = Kind::kOwned;
    t.nh = nh;
    t.owner = std::move(owner);
    t.ref_key = std::move(ref_key);
    t.ref = std::move(ref);
    return t;
}

RouteTarget RouteTarget::pod(uint32_t nh, std::string endpoint) {
    return owned(nh, "pod", "endpoint", std::move(endpoint));
}

RouteTarget RouteTarget::via(std::vector<net::IpAddr> vias, std::optional<net::MacAddr> mac) {
    RouteTarget t;
    t.kind = Kind::kVia;
    std::sort(vias.begin(), vias.end());
    vias.erase(std::unique(vias.begin(), vias.end()), vias.end());
    t.vias = std::move(vias);
    t.mac = mac;
    return t;
}

RouteTarget RouteTarget::blackhole() {
    RouteTarget t;
    t.kind = Kind::kBlackhole;
    return t;
}

RouteTarget RouteTarget::unreachable() {
    return RouteTarget{};
}

const char *RouteTarget::kind_name() const {
    switch (kind) {
        case Kind::kOwned:
            return owner.c_str();
        case Kind::kVia:
            return "via";
        case Kind::kBlackhole:
            return "blackhole";
        case Kind::kUnreachable:
            return "unreachable";
    }
    return "?";
}

void Rib::touch(const AnyPrefix &p, Slot &slot) {
    if (!slot.dirty) {
        slot.dirty = true;
        dirty_.push_back(p);
    }
}

bool Rib::set(const AnyPrefix &p, RouteSource s, RouteTarget t) {
    auto &st = stale_[static_cast<size_t>(s)];
    if (st) {
        st->erase(p);
    }
    Slot &slot = slots_[p];
    auto &cur = slot.by_source[static_cast<size_t>(s)];
    if (cur && *cur == t) {
        return false;
    }
    if (!cur) {
        counts_[static_cast<size_t>(s)]++;
    }
    cur = std::move(t);
    touch(p, slot);
    return true;
}

bool Rib::remove(const AnyPrefix &p, RouteSource s) {
    auto it = slots_.find(p);
    if (it == slots_.end() || !it->second.by_source[static_cast<size_t>(s)]) {
        return false;
    }
    it->second.by_source[static_cast<size_t>(s)].reset();
    counts_[static_cast<size_t>(s)]--;
    touch(p, it->second);
    return true;
}

void Rib::begin_resync(RouteSource s) {
    auto &st = stale_[static_cast<size_t>(s)];
    st.emplace();
    for (const auto &[p, slot] : slots_) {
        if (slot.by_source[static_cast<size_t>(s)]) {
            st->insert(p);
        }
    }
}

size_t Rib::end_resync(RouteSource s) {
    auto &st = stale_[static_cast<size_t>(s)];
    if (!st) {
        return 0;
    }
    std::set<AnyPrefix> gone = std::move(*st);
    st.reset();
    for (const auto &p : gone) {
        remove(p, s);
    }
    return gone.size();
}

std::vector<RibChange> Rib::flush() {
    std::vector<RibChange> out;
    for (const auto &p : dirty_) {
        auto it = slots_.find(p);
        if (it == slots_.end()) {
            continue;
        }
        Slot &slot = it->second;
        slot.dirty = false;
        std::optional<RouteTarget> winner;
        std::optional<RouteSource> wsrc;
        for (size_t i = 0; i < kRouteSourceCount; i++) {
            if (slot.by_source[i]) {
                winner = slot.by_source[i];
                wsrc = static_cast<RouteSource>(i);
                break;
            }
        }
        if (winner != slot.installed) {
            RibChange c{p, winner, slot.installed, wsrc.value_or(RouteSource::kStatic)};
            size_t &n = family_of(p) == net::Family::kIp4 ? installed4_ : installed6_;
            n = n + (winner ? 1 : 0) - (slot.installed ? 1 : 0);
            slot.installed = winner;
            out.push_back(std::move(c));
        }
        slot.installed_source = wsrc;
        if (!winner) {
            slots_.erase(it);
        }
    }
    dirty_.clear();
    return out;
}

void Rib::mark_not_installed(const AnyPrefix &p) {
    auto it = slots_.find(p);
    if (it != slots_.end() && it->second.installed) {
        size_t &n = family_of(p) == net::Family::kIp4 ? installed4_ : installed6_;
        n--;
        it->second.installed.reset();
        it->second.installed_source.reset();
    }
}

std::vector<Rib::Route> Rib::list(std::optional<RouteSource> source,
                                  std::optional<net::Family> family) const {
    std::vector<Route> out;
    for (const auto &[p, slot] : slots_) {
        if (family && family_of(p) != *family) {
            continue;
        }
        for (size_t i = 0; i < kRouteSourceCount; i++) {
            auto s = static_cast<RouteSource>(i);
            if (!slot.by_source[i] || (source && *source != s)) {
                continue;
            }
            bool active = slot.installed && slot.installed_source == s;
            out.push_back(Route{p, s, *slot.by_source[i], active});
        }
    }
    return out;
}

const RouteTarget *Rib::get(const AnyPrefix &p, RouteSource s) const {
    auto it = slots_.find(p);
    if (it == slots_.end() || !it->second.by_source[static_cast<size_t>(s)]) {
        return nullptr;
    }
    return &*it->second.by_source[static_cast<size_t>(s)];
}

}  // namespace fwd::control
