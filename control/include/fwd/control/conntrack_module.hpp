// The "conntrack" module: the connection table (fwd/dp/conntrack.hpp) when a
// feature needs one, its configuration (the "conntrack" section), the
// tracker's counters per worker, and the API ops conntrack.list /
// conntrack.count / conntrack.flush (fwdctl conntrack).
//
// The table exists only once a feature asks for it (require(), from the
// feature's start(): the nat module with an ipam section, for natOutgoing
// and service DNAT alike); a node without one
// allocates nothing and its stages skip with one load per burst. Ageing runs
// in the workers' housekeeping (ct_age, src/nat.cpp), a slice at a time.
#pragma once

#include <memory>
#include <vector>

#include "fwd/control/module.hpp"
#include "fwd/dp/conntrack.hpp"

namespace fwd::control {

class ConntrackModule final : public Module {
  public:
    static constexpr const char *kName = "conntrack";
    explicit ConntrackModule(ControlContext &ctx);
    ~ConntrackModule() override;

    // The table, made on the first call (main thread, before the workers
    // run: from a feature's start()). Throws when memory runs out.
    dp::ct::ConnTable &require();
    // nullptr until a feature required it.
    dp::ct::ConnTable *table() const { return table_.get(); }
    // Worker i's counters of the tracker's results ([W] worker i, [R] us).
    dp::ct::Counters &counters(unsigned i) { return counters_[i]; }

    void counters(nlohmann::json &out) const override;
    void describe_tables(nlohmann::json &out) const override;

  private:
    nlohmann::json list(const nlohmann::json &args);
    nlohmann::json count(const nlohmann::json &args);
    nlohmann::json flush(const nlohmann::json &args);

    ControlContext &ctx_;
    const dp::ct::Config cfg_;
    std::unique_ptr<dp::ct::ConnTable> table_;
    std::unique_ptr<dp::ct::Counters[]> counters_;  // by worker index
};

}  // namespace fwd::control
