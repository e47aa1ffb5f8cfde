// Reading the node config: every value is read through a Field that knows its
// JSON path, so each rejection names exactly what to fix. Shared by the
// built-in keys (config.cpp) and the sections features register from their own
// files (config_sections.hpp), so both reject in the same words:
//
//   conntrack.capacity: expected an integer from 1024 to 67108864, got 10
//   conntrack.capcity: unknown field "capcity"; known fields: capacity, tcp_established_s
//
// Internal to the control plane: for config parsers, not for the code that uses
// the parsed NodeConfig.
#pragma once

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "fwd/control/config.hpp"

namespace fwd::control::config {

using Json = nlohmann::json;

inline std::string child_path(const std::string &parent, std::string_view key) {
    return parent.empty() ? std::string(key) : parent + "." + std::string(key);
}

inline std::string index_path(const std::string &parent, size_t i) {
    return parent + "[" + std::to_string(i) + "]";
}

// How a rejected value is shown back to the user: scalars as JSON text (so a
// string "1500" is told apart from the number 1500), containers by kind only.
inline std::string describe(const Json &j) {
    constexpr size_t kMaxShown = 64;
    if (j.is_object()) {
        return "an object";
    }
    if (j.is_array()) {
        return "an array";
    }
    std::string s = j.dump();
    if (s.size() > kMaxShown) {
        s = s.substr(0, kMaxShown - 3) + "...";
    }
    return s;
}

inline std::string json_quote(std::string_view s) {
    return Json(s).dump();
}

inline std::string join(const std::vector<std::string_view> &items) {
    std::string out;
    for (auto item : items) {
        out += out.empty() ? "" : ", ";
        out += item;
    }
    return out;
}

// A JSON value and where it sits in the document. Borrows the value: a Field
// never outlives the document parse_config parsed.
class Field {
  public:
    Field(const Json &value, std::string path) : value_(value), path_(std::move(path)) {}

    const Json &json() const { return value_; }
    const std::string &path() const { return path_; }

    [[noreturn]] void fail(const std::string &reason) const {
        throw ConfigError(path_.empty() ? "(root)" : path_, reason);
    }
    [[noreturn]] void fail_expected(std::string_view expected) const {
        fail("expected " + std::string(expected) + ", got " + describe(value_));
    }

    std::string string(std::string_view expected) const {
        if (!value_.is_string()) {
            fail_expected(expected);
        }
        return value_.get<std::string>();
    }

    bool boolean() const {
        if (!value_.is_boolean()) {
            fail_expected("true or false");
        }
        return value_.get<bool>();
    }

    template <typename T>
    T integer(T lo, T hi) const {
        // Negative numbers and fractions fall out here too: they are never
        // unsigned integers in nlohmann's model.
        if (!value_.is_number_unsigned() || value_.get<uint64_t>() < lo ||
            value_.get<uint64_t>() > hi) {
            fail_expected("an integer from " + std::to_string(lo) + " to " + std::to_string(hi));
        }
        return static_cast<T>(value_.get<uint64_t>());
    }

    std::vector<Field> array(size_t min_size, size_t max_size, std::string_view what) const {
        std::string expected = "an array of " + std::to_string(min_size) + " to " +
                               std::to_string(max_size) + " " + std::string(what);
        if (!value_.is_array()) {
            fail_expected(expected);
        }
        if (value_.size() < min_size || value_.size() > max_size) {
            fail("expected " + expected + ", got " + std::to_string(value_.size()) + " " +
                 std::string(what));
        }
        std::vector<Field> out;
        for (size_t i = 0; i < value_.size(); i++) {
            out.emplace_back(value_[i], index_path(path_, i));
        }
        return out;
    }

  private:
    const Json &value_;
    std::string path_;
};

// A JSON object with a closed set of keys. Unknown keys are reported before
// anything else in the object, since a typo is usually why a required field
// looks missing. The key names are borrowed: they must outlive the Object.
class Object {
  public:
    Object(const Field &field, std::initializer_list<std::string_view> known)
        : Object(field, std::vector<std::string_view>(known)) {}

    Object(const Field &field, std::vector<std::string_view> known)
        : field_(field), known_(std::move(known)) {
        if (!field_.json().is_object()) {
            field_.fail_expected("an object with fields " + join(known_));
        }
        for (const auto &[key, value] : field_.json().items()) {
            if (std::find(known_.begin(), known_.end(), key) == known_.end()) {
                throw ConfigError(
                    child_path(field_.path(), key),
                    "unknown field " + json_quote(key) + "; known fields: " + join(known_));
            }
        }
    }

    const Field &field() const { return field_; }

    std::optional<Field> get(std::string_view key) const {
        check_known(key);
        auto it = field_.json().find(key);
        if (it == field_.json().end()) {
            return std::nullopt;
        }
        return Field(*it, child_path(field_.path(), key));
    }

    Field need(std::string_view key, std::string_view expected) const {
        if (auto f = get(key)) {
            return *f;
        }
        throw ConfigError(child_path(field_.path(), key),
                          "required field is missing; expected " + std::string(expected));
    }

  private:
    // Reading a key that was not declared would make it impossible to set.
    void check_known(std::string_view key) const {
        if (std::find(known_.begin(), known_.end(), key) == known_.end()) {
            throw std::logic_error("config field " + child_path(field_.path(), key) +
                                   " read but not declared");
        }
    }

    Field field_;
    std::vector<std::string_view> known_;
};

}  // namespace fwd::control::config
