// Argument checks shared by the control thread's API handlers (internal).
#pragma once

#include <initializer_list>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "fwd/control/api.hpp"

namespace fwd::control {

// {result name: its count summed over the workers} for a per-worker table of
// result counters (conntrack's, the affinity table's): info is the result
// list (each with a .name), count(w, r) worker w's count of result r.
template <class Info, size_t N, class Count>
nlohmann::json sum_results(const Info (&info)[N], size_t workers, Count count) {
    nlohmann::json out = nlohmann::json::object();
    for (size_t r = 0; r < N; r++) {
        uint64_t sum = 0;
        for (size_t w = 0; w < workers; w++) {
            sum += count(w, r);
        }
        out[std::string(info[r].name)] = sum;
    }
    return out;
}

[[noreturn]] inline void bad(const std::string &msg) {
    throw ApiError("invalid_argument", msg);
}

inline std::string get_str(const nlohmann::json &args, const char *key, bool required,
                           const std::string &def = {}) {
    auto it = args.find(key);
    if (it == args.end() || it->is_null()) {
        if (required) {
            bad(std::string("missing field '") + key + "'");
        }
        return def;
    }
    if (!it->is_string()) {
        bad(std::string("field '") + key + "' must be a string, got " + it->type_name());
    }
    return it->get<std::string>();
}

// A boolean field, def when absent or null.
inline bool get_bool(const nlohmann::json &args, const char *key, bool def) {
    auto it = args.find(key);
    if (it == args.end() || it->is_null()) {
        return def;
    }
    if (!it->is_boolean()) {
        bad(std::string("field '") + key + "' must be a boolean, got " + it->type_name());
    }
    return it->get<bool>();
}

// Rejects fields outside known, naming the field and the known ones.
template <typename Names>
void check_known_in(const nlohmann::json &args, const Names &known) {
    if (!args.is_object()) {
        bad(std::string("arguments must be a JSON object, got ") + args.type_name());
    }
    for (auto it = args.begin(); it != args.end(); ++it) {
        bool ok = false;
        std::string list;
        for (const auto &k : known) {
            ok = ok || it.key() == k;
            list += list.empty() ? std::string(k) : std::string(", ") + k;
        }
        if (!ok) {
            bad("unknown field '" + it.key() + "'; known fields: " + list);
        }
    }
}

inline void check_known(const nlohmann::json &args, std::initializer_list<const char *> known) {
    check_known_in(args, known);
}

inline void check_known(const nlohmann::json &args, const std::vector<std::string> &known) {
    check_known_in(args, known);
}

}  // namespace fwd::control
