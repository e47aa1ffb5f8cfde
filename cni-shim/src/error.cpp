#include "fwd/cni/error.hpp"

#include <utility>

namespace fwd::cni {

Error::Error(ErrorCode code, std::string msg, std::string details)
    : std::runtime_error(details.empty() ? msg : msg + ": " + details),
      code_(code),
      msg_(std::move(msg)),
      details_(std::move(details)) {}

nlohmann::json error_json(const Error &e, std::string_view cni_version) {
    return {{"cniVersion", cni_version},
            {"code", static_cast<unsigned>(e.code())},
            {"msg", e.msg()},
            {"details", e.details()}};
}

}  // namespace fwd::cni
