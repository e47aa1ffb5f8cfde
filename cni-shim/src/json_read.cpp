#include "json_read.hpp"

#include <utility>

#include "fwd/cni/error.hpp"

namespace fwd::cni::detail {

std::string join_path(const std::string &parent, std::string_view key) {
    return parent.empty() ? std::string(key) : parent + "." + std::string(key);
}

void wrong_type(const std::string &path, std::string_view want, const Json &got) {
    throw Error(ErrorCode::kDecodeFailure, "cannot decode " + path,
                path + " must be " + std::string(want) + ", not " + got.type_name());
}

void invalid(const std::string &path, const std::string &why) {
    throw Error(ErrorCode::kInvalidConfig, "invalid " + path, why);
}

Fields::Fields(const Json &j, std::string path) : j_(&j), path_(std::move(path)) {
    if (!j.is_object()) {
        wrong_type(path_.empty() ? "the network config" : path_, "an object", j);
    }
}

const Json *Fields::get(std::string_view key) const {
    auto it = j_->find(std::string(key));
    if (it == j_->end() || it->is_null()) {
        return nullptr;
    }
    return &*it;
}

std::optional<std::string> Fields::str(std::string_view key) const {
    const Json *v = get(key);
    if (v == nullptr) {
        return std::nullopt;
    }
    if (!v->is_string()) {
        wrong_type(path(key), "a string", *v);
    }
    return v->get<std::string>();
}

std::optional<bool> Fields::boolean(std::string_view key) const {
    const Json *v = get(key);
    if (v == nullptr) {
        return std::nullopt;
    }
    if (!v->is_boolean()) {
        wrong_type(path(key), "true or false", *v);
    }
    return v->get<bool>();
}

std::optional<uint64_t> Fields::uint(std::string_view key, uint64_t max) const {
    const Json *v = get(key);
    if (v == nullptr) {
        return std::nullopt;
    }
    if (!v->is_number_integer()) {
        wrong_type(path(key), "an integer", *v);
    }
    if (v->is_number_unsigned() && v->get<uint64_t>() <= max) {
        return v->get<uint64_t>();
    }
    invalid(key, "must be between 0 and " + std::to_string(max) + ", not " + v->dump());
}

std::vector<std::string> Fields::strings(std::string_view key) const {
    std::vector<std::string> out;
    for (const auto &[e, p] : array(key)) {
        if (!e->is_string()) {
            wrong_type(p, "a string", *e);
        }
        out.push_back(e->get<std::string>());
    }
    return out;
}

std::optional<Fields> Fields::object(std::string_view key) const {
    const Json *v = get(key);
    if (v == nullptr) {
        return std::nullopt;
    }
    return Fields(*v, path(key));
}

std::vector<std::pair<const Json *, std::string>> Fields::array(std::string_view key) const {
    std::vector<std::pair<const Json *, std::string>> out;
    const Json *v = get(key);
    if (v == nullptr) {
        return out;
    }
    if (!v->is_array()) {
        wrong_type(path(key), "an array", *v);
    }
    for (size_t i = 0; i < v->size(); i++) {
        out.emplace_back(&(*v)[i], path(key) + "[" + std::to_string(i) + "]");
    }
    return out;
}

std::string Fields::required_str(std::string_view key) const {
    auto s = str(key);
    if (!s) {
        throw Error(ErrorCode::kInvalidConfig, "missing " + path(key), path(key) + " is required");
    }
    return *s;
}

void Fields::invalid(std::string_view key, const std::string &why) const {
    detail::invalid(path(key), why);
}

}  // namespace fwd::cni::detail
