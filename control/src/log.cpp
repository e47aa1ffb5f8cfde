// The daemon's log (log.hpp) and its config section. No DPDK.
#include "fwd/control/log.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>

#include <array>
#include <atomic>
#include <memory>
#include <nlohmann/json.hpp>
#include <stdexcept>

#include "fwd/control/config_sections.hpp"

namespace fwd::control {

namespace {

constexpr std::array<std::pair<std::string_view, spdlog::level::level_enum>, 8> kLevels{{
    {"trace", spdlog::level::trace},
    {"debug", spdlog::level::debug},
    {"info", spdlog::level::info},
    {"warn", spdlog::level::warn},
    {"warning", spdlog::level::warn},
    {"error", spdlog::level::err},
    {"critical", spdlog::level::critical},
    {"off", spdlog::level::off},
}};
constexpr const char *kLevelNames = "trace, debug, info, warn, error, critical, off";

// Times in UTC with milliseconds, as log shippers parse them.
constexpr const char *kTextPattern = "%Y-%m-%dT%H:%M:%S.%eZ %l %v";
// %v is the message as a JSON string (write() quotes and escapes it).
constexpr const char *kJsonPattern = R"({"time":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l","msg":%v})";

struct Log {
    std::shared_ptr<spdlog::logger> logger;
    bool json = false;  // set by init() only, before other threads log
};

Log make(const LogConfig &c, spdlog::sink_ptr sink) {
    if (!sink) {
        sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
    }
    Log l{std::make_shared<spdlog::logger>("dpdk-fwd", std::move(sink)), c.format == "json"};
    l.logger->set_formatter(std::make_unique<spdlog::pattern_formatter>(
        l.json ? kJsonPattern : kTextPattern, spdlog::pattern_time_type::utc));
    l.logger->set_level(log::parse_level(c.level));
    l.logger->flush_on(spdlog::level::trace);  // a line is out before the next event
    return l;
}

Log &current() {
    static Log l = make(LogConfig{}, nullptr);
    return l;
}

LogConfig parse_log(const config::Object &o, const NodeConfig &) {
    LogConfig c;
    if (auto f = o.get("level")) {
        c.level = f->string(kLevelNames);
        try {
            log::parse_level(c.level);
        } catch (const std::invalid_argument &e) {
            f->fail(e.what());
        }
    }
    if (auto f = o.get("format")) {
        c.format = f->string("\"text\" or \"json\"");
        if (c.format != "text" && c.format != "json") {
            f->fail("\"" + c.format + "\" is not a log format; expected \"text\" or \"json\"");
        }
    }
    return c;
}

}  // namespace

namespace log {

spdlog::level::level_enum parse_level(std::string_view name) {
    for (const auto &[n, l] : kLevels) {
        if (n == name) {
            return l;
        }
    }
    throw std::invalid_argument("\"" + std::string(name) +
                                "\" is not a log level; expected one of " + kLevelNames);
}

void init(const LogConfig &c, spdlog::sink_ptr sink) {
    current() = make(c, std::move(sink));
}

void set_level(std::string_view name) {
    current().logger->set_level(parse_level(name));
}

std::string level() {
    const auto l = current().logger->level();
    if (l == spdlog::level::warn) {
        return "warn";  // spdlog's name is "warning"; ours is what set_level takes
    }
    const auto name = spdlog::level::to_string_view(l);
    return std::string(name.data(), name.size());
}

std::string format() {
    return current().json ? "json" : "text";
}

void write(spdlog::level::level_enum lvl, std::string_view msg) {
    Log &l = current();
    if (!l.logger->should_log(lvl)) {
        return;
    }
    if (l.json) {
        l.logger->log(lvl, "{}",
                      nlohmann::json(std::string(msg))
                          .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    } else {
        l.logger->log(lvl, "{}", msg);
    }
}

}  // namespace log

FWD_ON_LOAD(register_config_section<LogConfig>("log", {"level", "format"}, parse_log));

}  // namespace fwd::control
