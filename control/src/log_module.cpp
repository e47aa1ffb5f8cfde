// The "log" module: the API op log.level ({"level"}: set it; without: show
// it), on the API thread (spdlog's level is an atomic), and DPDK's log
// captured into ours (log.hpp).
#include <rte_log.h>

#include <cstdio>
#include <string>

#include "api_args.hpp"
#include "fwd/control/log.hpp"
#include "fwd/control/module.hpp"
#include "fwd/util/registry.hpp"

namespace fwd::control {

using nlohmann::json;

namespace {

spdlog::level::level_enum from_dpdk(int level) {
    switch (level) {
        case RTE_LOG_EMERG:
        case RTE_LOG_ALERT:
        case RTE_LOG_CRIT:
            return spdlog::level::critical;
        case RTE_LOG_ERR:
            return spdlog::level::err;
        case RTE_LOG_WARNING:
            return spdlog::level::warn;
        case RTE_LOG_NOTICE:
        case RTE_LOG_INFO:
            return spdlog::level::info;
        default:
            return spdlog::level::debug;
    }
}

// fopencookie's write: DPDK formats a message in one or more writes, ending
// in a newline; each thread collects its own, so lines never interleave.
ssize_t dpdk_write(void *, const char *buf, size_t size) {
    thread_local std::string line;
    line.append(buf, size);
    for (size_t nl; (nl = line.find('\n')) != std::string::npos; line.erase(0, nl + 1)) {
        if (nl > 0) {
            log::write(from_dpdk(rte_log_cur_msg_loglevel()), std::string_view(line).substr(0, nl));
        }
    }
    return static_cast<ssize_t>(size);
}

class LogModule final : public Module {
  public:
    static constexpr const char *kName = "log";

    explicit LogModule(ControlContext &ctx) {
        ctx.add_op({.name = "log.level",
                    .args = {"level"},
                    .fn = [](const json &a) { return level(a); },
                    .thread = OpDef::Thread::kApi});
    }

  private:
    static json level(const json &args) {
        if (auto it = args.find("level"); it != args.end() && !it->is_null()) {
            if (!it->is_string()) {
                bad(std::string("field 'level' must be a string, got ") + it->type_name());
            }
            try {
                log::set_level(it->get<std::string>());
            } catch (const std::invalid_argument &e) {
                bad(e.what());
            }
        }
        return json{{"level", log::level()}, {"format", log::format()}};
    }
};

}  // namespace

void log::capture_dpdk() {
    cookie_io_functions_t io{};
    io.write = dpdk_write;
    if (FILE *f = fopencookie(nullptr, "w", io); f != nullptr) {
        setvbuf(f, nullptr, _IONBF, 0);  // every write reaches dpdk_write at once
        rte_openlog_stream(f);
    }
}

FWD_ON_LOAD(register_module<LogModule>({}));

}  // namespace fwd::control
