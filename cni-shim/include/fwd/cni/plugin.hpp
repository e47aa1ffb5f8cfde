// One plugin run from end to end, minus the work: environment and stdin in, the exit code and
// stdout out. The verbs' work is a Handler's (the dpdk-fwd-cni binary's talks to the daemon;
// tests use a fake), so everything the spec says about parameters, versions, outputs and errors
// is decided here once.
//
//   ADD      -> the handler's Result, rendered for the config's cniVersion
//   DEL, CHECK, STATUS, GC -> nothing on stdout when the handler returns
//   VERSION  -> {"cniVersion", "supportedVersions"}; stdin is optional
//   failure  -> the error JSON on stdout, exit code 1. A handler throws cni::Error to pick the
//               code (11 when the daemon is down, 50 / 51 from STATUS, 3 for an unknown
//               container); any other exception becomes 999 with its message.
// CNI_COMMAND unset is a person at a shell, not a runtime: a line about the plugin on stderr and
// exit 0, as libcni's plugins do.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fwd/cni/error.hpp"
#include "fwd/cni/invocation.hpp"
#include "fwd/cni/netconf.hpp"
#include "fwd/cni/result.hpp"

namespace fwd::cni {

struct Request {
    Invocation inv;
    NetConf conf;  // for VERSION only conf.cni_version (possibly empty) is set

    // Calico's IPAM handle: "<network name>.<container id>".
    std::string handle() const;
    // runtimeConfig.vhost_user, else args.cni.vhost_user, else the network's vhost_user.
    bool wants_vhost_user() const;
    // runtimeConfig.mac, else args.cni.mac.
    std::optional<net::MacAddr> requested_mac() const;
    // runtimeConfig.ips, else args.cni.ips, else CNI_ARGS IP; empty: IPAM chooses.
    std::vector<IfAddr> requested_ips() const;
};

// Environment first (code 4 before any stdin error), then stdin.
Request parse_request(const Env &env, std::string_view stdin_text);

class Handler {
  public:
    virtual ~Handler() = default;
    virtual Result add(const Request &req) = 0;
    virtual void del(const Request &req) = 0;
    virtual void check(const Request &req) = 0;
    virtual void status(const Request &req) = 0;
    virtual void gc(const Request &req) = 0;
};

struct Reply {
    int exit_code = 0;
    std::string out;  // for stdout
    std::string err;  // for stderr
};

Reply run(const Env &env, std::string_view stdin_text, Handler &handler);

// The cniVersion an error reply carries: the config's own when stdin has one as a string,
// else kLatestVersion.
std::string error_version(std::string_view stdin_text);

}  // namespace fwd::cni
