#include "fwd/control/ipam_module.hpp"

#include "fwd/ipam/open_store.hpp"
#include "fwd/util/registry.hpp"

namespace fwd::control {

using nlohmann::json;

void IpamModule::start() {
    const NodeConfig &cfg = ctx_.cfg();
    if (!cfg.ipam) {
        return;
    }
    try {
        sync_ =
            std::make_unique<IpamSync>(*cfg.ipam, cfg.node_name, ipam::open_store(cfg.ipam->store),
                                       [this](const std::vector<ipam::Cidr> &prefixes) {
                                           json p = json::array();
                                           for (const auto &c : prefixes) {
                                               p.push_back(c.str());
                                           }
                                           ctx_.call("ipam.routes", {{"prefixes", p}});
                                       });
    } catch (const std::exception &e) {
        throw std::runtime_error("IPAM store " + cfg.ipam->store + ": " + e.what());
    }
}

void IpamModule::online() {
    if (sync_) {
        try {
            sync_->start();
        } catch (const std::exception &e) {
            throw std::runtime_error(std::string("IPAM sync: ") + e.what());
        }
    }
}

FWD_ON_LOAD(register_module<IpamModule>({}));

}  // namespace fwd::control
