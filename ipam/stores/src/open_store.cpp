#include "fwd/ipam/open_store.hpp"

#include <stdexcept>

#include "fwd/ipam/embedded_store.hpp"
#include "fwd/ipam/etcd_store.hpp"

namespace fwd::ipam {

namespace {

struct EtcdSpec {
    std::vector<std::string> endpoints;
    std::string prefix;
};

EtcdSpec split_etcd(const std::string &rest) {
    EtcdSpec s;
    auto comma = rest.find(',');
    std::string urls = rest.substr(0, comma);
    if (comma != std::string::npos) {
        s.prefix = rest.substr(comma + 1);
    }
    size_t from = 0;
    while (from <= urls.size()) {
        auto semi = urls.find(';', from);
        std::string u =
            urls.substr(from, semi == std::string::npos ? std::string::npos : semi - from);
        if (!u.empty()) {
            s.endpoints.push_back(u);
        }
        if (semi == std::string::npos) {
            break;
        }
        from = semi + 1;
    }
    return s;
}

}  // namespace

std::string check_store_spec(const std::string &spec) {
    if (spec.starts_with("embedded:")) {
        return spec.size() > 9 && spec[9] == '/' ? "" : "embedded: wants an absolute directory";
    }
    if (spec.starts_with("etcd:")) {
        auto s = split_etcd(spec.substr(5));
        if (s.endpoints.empty()) {
            return "etcd: wants at least one http:// or https:// URL";
        }
        for (const auto &u : s.endpoints) {
            if (!u.starts_with("http://") && !u.starts_with("https://")) {
                return "etcd endpoint '" + u + "' is not an http:// or https:// URL";
            }
        }
        return "";
    }
    return "want embedded:<dir> or etcd:<url>[;<url>...][,<key prefix>]";
}

std::unique_ptr<Store> open_store(const std::string &spec) {
    if (auto why = check_store_spec(spec); !why.empty()) {
        throw std::invalid_argument("IPAM store '" + spec + "': " + why);
    }
    if (spec.starts_with("embedded:")) {
        return std::make_unique<EmbeddedStore>(spec.substr(9));
    }
    auto s = split_etcd(spec.substr(5));
    EtcdStore::Options o;
    o.endpoints = s.endpoints;
    o.prefix = s.prefix;
    return std::make_unique<EtcdStore>(o);
}

}  // namespace fwd::ipam
