// Typed reads of JSON object fields that name the field's path in every error, so a runtime's
// log says which key is wrong. Two codes, one rule: a field of the wrong JSON type is a decode
// failure (6, as a typed unmarshal fails in libcni); a field of the right type whose value
// breaks a rule is an invalid network config (7). A JSON null reads as absent.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace fwd::cni::detail {

using Json = nlohmann::json;

// "ipam" + "type" -> "ipam.type"; "" + "name" -> "name".
std::string join_path(const std::string &parent, std::string_view key);

[[noreturn]] void wrong_type(const std::string &path, std::string_view want, const Json &got);
[[noreturn]] void invalid(const std::string &path, const std::string &why);

// A view of one JSON object. Borrows the document: it must outlive the Fields.
class Fields {
  public:
    // Throws a decode failure naming `path` if j is not an object.
    Fields(const Json &j, std::string path);

    const std::string &path() const { return path_; }
    std::string path(std::string_view key) const { return join_path(path_, key); }
    // nullptr when the key is absent or null.
    const Json *get(std::string_view key) const;

    std::optional<std::string> str(std::string_view key) const;
    std::optional<bool> boolean(std::string_view key) const;
    // An integer in [0, max].
    std::optional<uint64_t> uint(std::string_view key, uint64_t max) const;
    // A list of strings; absent is empty.
    std::vector<std::string> strings(std::string_view key) const;
    std::optional<Fields> object(std::string_view key) const;
    // The elements of an array field, each with its path ("ips[2]"); absent is empty.
    std::vector<std::pair<const Json *, std::string>> array(std::string_view key) const;

    // A string that must be present.
    std::string required_str(std::string_view key) const;
    [[noreturn]] void invalid(std::string_view key, const std::string &why) const;

  private:
    const Json *j_;
    std::string path_;
};

// A string field parsed by `parse`; a value it rejects is an invalid config naming the field.
template <typename Parse>
auto parsed_field(const Fields &f, std::string_view key, Parse parse, const char *what)
    -> decltype(parse(std::string_view())) {
    auto s = f.str(key);
    if (!s) {
        return std::nullopt;
    }
    auto v = parse(*s);
    if (!v) {
        f.invalid(key, "\"" + *s + "\" is not " + what);
    }
    return v;
}

// The same for a field that must be there.
template <typename Parse>
auto required_field(const Fields &f, std::string_view key, Parse parse, const char *what) {
    f.required_str(key);
    return *parsed_field(f, key, parse, what);
}

}  // namespace fwd::cni::detail
