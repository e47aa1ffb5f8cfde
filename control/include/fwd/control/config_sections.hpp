// Feature sections of the node config: a feature that needs a boot setting
// adds a top-level key from its own file, at load time, instead of editing
// config.cpp and config.hpp:
//
//   struct ConntrackConfig {
//       uint32_t capacity = 262144;
//       uint32_t tcp_established_s = 7440;
//   };
//
//   ConntrackConfig parse_conntrack(const config::Object &o, const NodeConfig &cfg) {
//       ConntrackConfig c;
//       if (auto f = o.get("capacity")) {
//           c.capacity = f->integer<uint32_t>(1024, 1 << 26);
//       }
//       ...
//       return c;
//   }
//
//   FWD_ON_LOAD(fwd::control::register_config_section<ConntrackConfig>(
//       "conntrack", {"capacity", "tcp_established_s"}, parse_conntrack));
//
//   // later, anywhere the NodeConfig is at hand:
//   const ConntrackConfig &ct = cfg.section<ConntrackConfig>("conntrack");
//
// The contract:
// - The key's value must be an object with the listed fields; anything else,
//   and any other field, is rejected like a built-in key's (JSON path and the
//   known fields). The root's "unknown field" message lists registered keys.
// - Sections are parsed after every built-in key, in key order. A parser may
//   read the NodeConfig's built-in fields (e.g. the node's addresses) but not
//   other sections, which may not be parsed yet: settings that depend on each
//   other belong in one section. It rejects through Field / Object or by
//   throwing ConfigError.
// - A file without the key gives T{}; the parser is not called. The defaults
//   live in T's member initializers, as for the built-in structs, so a hand-built
//   NodeConfig (tests) and a file that leaves the section out agree; they must
//   be valid on every node.
// - A key registered twice, a built-in key, or a key that is not [a-z][a-z0-9_]*
//   is a std::logic_error at registration (before main for FWD_ON_LOAD).
// - The file registering must be in a library linked whole (link_whole), or
//   the linker leaves it out (fwd/util/registry.hpp).
#pragma once

#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <type_traits>
#include <typeinfo>
#include <vector>

#include "fwd/control/config.hpp"
#include "fwd/control/config_reader.hpp"
#include "fwd/util/registry.hpp"

namespace fwd::control {

// Top-level keys features added, with their parsers. global() is filled before
// main() and only read after; a test may fill its own instance and pass it to
// parse_config. Not synchronised: add only before other threads read it.
class ConfigSections {
  public:
    template <typename T>
    using Parser = std::function<T(const config::Object &o, const NodeConfig &cfg)>;

    struct Section {
        std::string key;
        std::vector<std::string> fields;  // the keys the section's object may hold
        const std::type_info *type;       // the T it was registered with
        // Stores the section's value in cfg: parsed from o, or T{} when o is
        // null (the file has no such key).
        std::function<void(const config::Object *o, NodeConfig &cfg)> load;
    };

    // Where register_config_section adds; what parse_config reads by default.
    static ConfigSections &global();

    // Throws std::logic_error on a bad, built-in or already registered key.
    template <typename T>
    void add(std::string key, std::vector<std::string> fields,
             std::type_identity_t<Parser<T>> parse) {
        static_assert(std::is_default_constructible_v<T>, "a missing section is T{}");
        static_assert(std::is_copy_constructible_v<T>, "a NodeConfig is copied, so are sections");
        add_section(
            Section{key, std::move(fields), &typeid(T),
                    [key, parse = std::move(parse)](const config::Object *o, NodeConfig &cfg) {
                        cfg.sections.set<T>(key, o ? parse(*o, cfg) : T{});
                    }});
    }

    // Ordered by key, so parsing and messages do not depend on link order.
    const std::map<std::string, Section, std::less<>> &sections() const { return sections_; }
    const Section *find(std::string_view key) const;

  private:
    void add_section(Section s);

    std::map<std::string, Section, std::less<>> sections_;
};

// Adds a section to ConfigSections::global(); call it from FWD_ON_LOAD.
template <typename T>
void register_config_section(std::string key, std::vector<std::string> fields,
                             std::type_identity_t<ConfigSections::Parser<T>> parse) {
    ConfigSections::global().add<T>(std::move(key), std::move(fields), std::move(parse));
}

}  // namespace fwd::control
