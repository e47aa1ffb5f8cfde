// The daemon's log: the text and JSON line formats, levels set at run time,
// the log config section.
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <string>

#include "fwd/control/config.hpp"
#include "fwd/control/log.hpp"
#include "minimal_config.hpp"

namespace fwd::control {
namespace {

using nlohmann::json;

class LogTest : public ::testing::Test {
  protected:
    void use(const std::string &level, const std::string &format) {
        LogConfig c;
        c.level = level;
        c.format = format;
        out_.str("");
        log::init(c, std::make_shared<spdlog::sinks::ostream_sink_mt>(out_));
    }
    void TearDown() override { log::init(LogConfig{}); }
    std::ostringstream out_;
};

TEST_F(LogTest, TextLine) {
    use("info", "text");
    log::info("metrics: /metrics on {}", "127.0.0.1:9091");
    log::debug("not shown at info");
    EXPECT_TRUE(std::regex_match(
        out_.str(),
        std::regex(
            R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z info metrics: /metrics on 127\.0\.0\.1:9091\n)")))
        << out_.str();
}

TEST_F(LogTest, JsonLineEscapesTheMessage) {
    use("debug", "json");
    log::warn("a \"quoted\" word\tand a tab");
    const std::string line = out_.str();
    ASSERT_FALSE(line.empty());
    EXPECT_EQ(line.back(), '\n');
    const json j = json::parse(line);
    EXPECT_EQ(j["level"], "warning");
    EXPECT_EQ(j["msg"], "a \"quoted\" word\tand a tab");
    EXPECT_TRUE(std::regex_match(j["time"].get<std::string>(),
                                 std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)")));
    EXPECT_EQ(log::format(), "json");
}

TEST_F(LogTest, LevelAtRunTime) {
    use("warn", "text");
    EXPECT_EQ(log::level(), "warn");
    log::info("hidden");
    EXPECT_EQ(out_.str(), "");
    log::set_level("debug");
    EXPECT_EQ(log::level(), "debug");
    log::debug("shown");
    EXPECT_NE(out_.str().find(" debug shown"), std::string::npos) << out_.str();
    try {
        log::set_level("verbose");
        FAIL() << "accepted";
    } catch (const std::invalid_argument &e) {
        EXPECT_NE(std::string(e.what()).find("\"verbose\" is not a log level; expected one of "
                                             "trace, debug, info, warn, error, critical, off"),
                  std::string::npos)
            << e.what();
    }
    EXPECT_EQ(log::level(), "debug");  // unchanged
}

TEST(LogConfigSection, DefaultsAndErrors) {
    const NodeConfig cfg = parse_with(json::object());
    const auto &d = cfg.section<LogConfig>("log");
    EXPECT_EQ(d.level, "info");
    EXPECT_EQ(d.format, "text");
    const auto c = parse_with({{"log", {{"level", "debug"}, {"format", "json"}}}});
    EXPECT_EQ(c.section<LogConfig>("log").format, "json");
    auto error_of = [](const json &extra) -> std::string {
        try {
            parse_with(extra);
        } catch (const ConfigError &e) {
            return e.what();
        }
        return "(accepted)";
    };
    EXPECT_NE(
        error_of({{"log", {{"level", "loud"}}}}).find("log.level: \"loud\" is not a log level"),
        std::string::npos);
    EXPECT_NE(
        error_of({{"log", {{"format", "xml"}}}}).find("log.format: \"xml\" is not a log format"),
        std::string::npos);
}

}  // namespace
}  // namespace fwd::control
