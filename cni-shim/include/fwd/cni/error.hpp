// CNI errors: the exception the protocol layer and the plugin's handlers throw, and the error
// JSON the plugin prints on stdout before exiting non-zero (CNI spec 1.1.0, section 5 "Error").
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace fwd::cni {

// The spec's well-known codes. 0-99 are reserved for the spec; 100 and up are free for plugins.
enum class ErrorCode : unsigned {
    kIncompatibleVersion = 1,   // cniVersion missing, unknown or too old for the verb
    kUnsupportedField = 2,      // a field we understand but cannot honour; msg names key and value
    kUnknownContainer = 3,      // the container does not exist: the runtime need not clean up
    kInvalidEnvironment = 4,    // a CNI_* variable missing or malformed; msg names the variables
    kIoFailure = 5,             // e.g. stdin could not be read
    kDecodeFailure = 6,         // stdin is not JSON, or a field has the wrong JSON type
    kInvalidConfig = 7,         // a field decodes but breaks a rule (range, syntax, missing key)
    kTryAgainLater = 11,        // transient: the runtime should retry (the daemon is down)
    kNotAvailable = 50,         // STATUS: the plugin cannot serve ADD
    kLimitedConnectivity = 51,  // STATUS: cannot serve ADD, existing pods may be cut off too
    // dpdk-fwd's own (100 and up):
    kAddressesExhausted = 100,  // ADD: no free address in the pools the pod may use
    kCheckFailed = 101,         // CHECK: the attachment differs from its result; details list it
    kInternal = 999,            // libcni's code for anything else (a plugin-specific code)
};

// `msg` is short and names the problem ("invalid ipam.assign_ipv4"); `details` says what was
// found and what is allowed. what() is "msg: details", as runtimes log it.
class Error : public std::runtime_error {
  public:
    Error(ErrorCode code, std::string msg, std::string details = {});
    ErrorCode code() const { return code_; }
    const std::string &msg() const { return msg_; }
    const std::string &details() const { return details_; }

  private:
    ErrorCode code_;
    std::string msg_;
    std::string details_;
};

// {"cniVersion", "code", "msg", "details"}. cni_version is the config's own value (the spec
// asks for "the same value as provided by the configuration").
nlohmann::json error_json(const Error &e, std::string_view cni_version);

}  // namespace fwd::cni
