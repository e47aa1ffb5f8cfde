// The daemon's log (issue 18): spdlog, one line per event on stderr, as text
// or JSON for a log shipper, its level changeable at run time (API op
// log.level, `fwdctl log level debug`). DPDK's own log goes to the same sink
// (capture_dpdk in log_module.cpp), so an EAL or PMD message is a line of
// the same shape.
//
// Config: "log": {"level": "info", "format": "text"}
//   level   trace, debug, info, warn, error, critical, off
//   format  "text": 2026-12-06T18:00:00.123Z info <message>
//           "json": {"time":"2026-12-06T18:00:00.123Z","level":"info","msg":"<message>"}
//
// Not for the packet path: a worker never logs (a packet that could cause a
// line is counted instead).
#pragma once

#include <spdlog/spdlog.h>

#include <string>
#include <string_view>
#include <utility>

namespace fwd::control {

struct LogConfig {
    std::string level = "info";
    std::string format = "text";
};

namespace log {

// The level names, in order; a name outside them is std::invalid_argument
// naming them.
spdlog::level::level_enum parse_level(std::string_view name);
// Main thread, before other threads log. sink: stderr unless given (tests).
void init(const LogConfig &c, spdlog::sink_ptr sink = nullptr);
// Any thread (the level is an atomic in spdlog).
void set_level(std::string_view name);
std::string level();
std::string format();

void write(spdlog::level::level_enum lvl, std::string_view msg);

// DPDK's log (rte_log) into this one, at DPDK's level of each message: main
// calls it before EAL init. In log_module.cpp (it needs DPDK).
void capture_dpdk();

template <typename... Args>
void info(fmt::format_string<Args...> f, Args &&...a) {
    write(spdlog::level::info, fmt::format(f, std::forward<Args>(a)...));
}
template <typename... Args>
void warn(fmt::format_string<Args...> f, Args &&...a) {
    write(spdlog::level::warn, fmt::format(f, std::forward<Args>(a)...));
}
template <typename... Args>
void error(fmt::format_string<Args...> f, Args &&...a) {
    write(spdlog::level::err, fmt::format(f, std::forward<Args>(a)...));
}
template <typename... Args>
void debug(fmt::format_string<Args...> f, Args &&...a) {
    write(spdlog::level::debug, fmt::format(f, std::forward<Args>(a)...));
}

}  // namespace log
}  // namespace fwd::control
