// What the decoders of Kubernetes-shaped resources share (Services, EndpointSlices, Calico and
// Kubernetes policies, Namespaces, Pods): the API server's ways of saying what is wrong, its
// name and label rules, and a strict decoder of JSON that names every bad field.
//
// Internal to the policy library (not installed). Control code only: allocates and throws.
#pragma once

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "fwd/ipam/resource.hpp"
#include "fwd/svc/service.hpp"

namespace fwd::k8s {

using nlohmann::json;
using Warning = svc::Warning;

// ---- the API server's ways of saying what is wrong ----

std::string json_quoted(const std::string &s);
std::string invalid(const std::string &value, const std::string &detail);
std::string required(const std::string &detail = "");
std::string unsupported(const std::string &value, std::initializer_list<const char *> supported);
std::string duplicate(const std::string &value);
std::string forbidden(const std::string &detail);
std::string too_many(size_t n, size_t max);

// ---- names and labels: "" when good, else why not ----

bool lower_alnum(char c);
std::string dns1123_label_error(std::string_view s);
// A Service's name: a DNS-1035 label (an RFC 1123 label starting with a letter).
std::string dns1035_label_error(std::string_view s);
std::string dns1123_subdomain_error(std::string_view s);
// A named port (IANA_SVC_NAME, RFC 6335).
std::string port_name_error(std::string_view s);
// A label key ([prefix/]name) or value, as Kubernetes checks them.
bool label_part_ok(std::string_view s);
std::string label_key_error(const std::string &key);

struct FieldError {
    std::string field;
    std::string why;
};
// The first bad key (field `path`) or, with check_values, bad value (field `path.key`).
std::optional<FieldError> labels_error(const std::map<std::string, std::string> &labels,
                                       const std::string &path, bool check_values);

// "path[i]"
std::string at(const std::string &path, size_t i);

// ---- decoding ----

class Decoder {
  public:
    Decoder(ipam::ResourceOrigin o, std::vector<Warning> *warnings)
        : o_(std::move(o)), warnings_(warnings) {}

    const ipam::ResourceOrigin &origin() const { return o_; }
    void set_name(const std::string &name) { o_.name = name; }

    [[noreturn]] void fail(const std::string &field, const std::string &why) const {
        throw ipam::ResourceError(o_, field, why);
    }
    void warn(const std::string &field, const std::string &what) const {
        if (warnings_ != nullptr) {
            warnings_->push_back({o_, field, what});
        }
    }

    // obj as a mapping (null: an empty one) whose keys are all known, dropped (set by the API
    // server: accepted and forgotten) or not implemented (accepted, forgotten and warned of).
    json object(
        const json &obj, const std::string &path, std::initializer_list<const char *> known,
        std::initializer_list<const char *> dropped = {},
        std::initializer_list<std::pair<const char *, const char *>> not_implemented = {}) const {
        if (obj.is_null()) {
            return json::object();
        }
        if (!obj.is_object()) {
            fail(path, "want a mapping, got " + obj.dump());
        }
        json out = json::object();
        for (const auto &[key, v] : obj.items()) {
            const std::string field = path.empty() ? key : path + "." + key;
            auto is = [&](const char *k) { return key == k; };
            if (std::any_of(known.begin(), known.end(), is)) {
                if (!v.is_null()) {
                    out[key] = v;
                }
                continue;
            }
            if (std::any_of(dropped.begin(), dropped.end(), is)) {
                continue;
            }
            auto ni = std::find_if(not_implemented.begin(), not_implemented.end(),
                                   [&](const auto &p) { return key == p.first; });
            if (ni == not_implemented.end()) {
                fail(field, "unknown field");
            }
            if (!v.is_null()) {
                warn(field, std::string("not implemented: ") + ni->second);
            }
        }
        return out;
    }

    // object()'s checks without its copy where there is nothing to filter out: obj itself when
    // no known key is null and no dropped or not implemented key is there (a 10,000-rule spec
    // is then not copied), else object()'s result, kept in scratch.
    const json &fields(
        const json &obj, json &scratch, const std::string &path,
        std::initializer_list<const char *> known, std::initializer_list<const char *> dropped = {},
        std::initializer_list<std::pair<const char *, const char *>> not_implemented = {}) const {
        bool clean = obj.is_object();
        if (clean) {
            for (const auto &[key, v] : obj.items()) {
                auto is = [&](const char *k) { return key == k; };
                if (v.is_null() || !std::any_of(known.begin(), known.end(), is)) {
                    clean = false;
                    break;
                }
            }
        }
        if (clean) {
            return obj;
        }
        scratch = object(obj, path, known, dropped, not_implemented);
        return scratch;
    }

    std::optional<std::string> str(const json &obj, const char *key,
                                   const std::string &path) const {
        if (!obj.contains(key)) {
            return std::nullopt;
        }
        if (!obj[key].is_string()) {
            fail(join(path, key), "want a string, got " + obj[key].dump());
        }
        return obj[key].get<std::string>();
    }
    std::optional<int64_t> integer(const json &obj, const char *key,
                                   const std::string &path) const {
        if (!obj.contains(key)) {
            return std::nullopt;
        }
        if (!obj[key].is_number_integer()) {
            fail(join(path, key), "want an integer, got " + obj[key].dump());
        }
        return obj[key].get<int64_t>();
    }
    std::optional<bool> boolean(const json &obj, const char *key, const std::string &path) const {
        if (!obj.contains(key)) {
            return std::nullopt;
        }
        if (!obj[key].is_boolean()) {
            fail(join(path, key), "want true or false, got " + obj[key].dump());
        }
        return obj[key].get<bool>();
    }
    // obj[key] (not a copy: a policy's rule list may be long); an empty list when absent.
    const json &list(const json &obj, const char *key, const std::string &path) const {
        static const json kEmpty = json::array();
        if (!obj.contains(key)) {
            return kEmpty;
        }
        if (!obj[key].is_array()) {
            fail(join(path, key), "want a list, got " + obj[key].dump());
        }
        return obj[key];
    }
    std::vector<std::string> strings(const json &obj, const char *key,
                                     const std::string &path) const {
        std::vector<std::string> out;
        const json &l = list(obj, key, path);
        for (size_t i = 0; i < l.size(); ++i) {
            if (!l[i].is_string()) {
                fail(join(path, key) + "[" + std::to_string(i) + "]",
                     "want a string, got " + l[i].dump());
            }
            out.push_back(l[i].get<std::string>());
        }
        return out;
    }
    std::map<std::string, std::string> string_map(const json &obj, const char *key,
                                                  const std::string &path) const {
        std::map<std::string, std::string> out;
        if (!obj.contains(key)) {
            return out;
        }
        if (!obj[key].is_object()) {
            fail(join(path, key), "want a mapping, got " + obj[key].dump());
        }
        for (const auto &[k, v] : obj[key].items()) {
            if (!v.is_string()) {
                fail(join(path, key) + "." + k, "want a string, got " + v.dump());
            }
            out[k] = v.get<std::string>();
        }
        return out;
    }

    static std::string join(const std::string &path, const std::string &key) {
        return path.empty() ? key : path + "." + key;
    }

  private:
    ipam::ResourceOrigin o_;
    std::vector<Warning> *warnings_;
};

// The metadata of a resource: name, namespace (ns null: a cluster-scoped kind, whose
// metadata.namespace is ignored with a warning, as kubectl ignores it), labels and, when
// annotations is given, annotations. Sets the decoder's name.
void decode_metadata(Decoder &d, const json &obj, std::string &name, std::string *ns,
                     std::map<std::string, std::string> &labels,
                     std::map<std::string, std::string> *annotations);

// apiVersion must be `api`.
void check_kind(const Decoder &d, const json &obj, const char *api);
// apiVersion must be one of `apis` (Calico kinds: projectcalico.org/v3 or the CRD's
// crd.projectcalico.org/v1).
void check_api(const Decoder &d, const json &obj, std::initializer_list<const char *> apis);

// Decodes every resource of a file into R {value, origin, warnings}: each must be a mapping
// of a kind is_kind takes (else "unknown kind 'X' (want <kinds>)"); decode(json, Decoder &)
// gives its value; its warnings name it. Then no two may share key(R) = {key, what to call
// it} ("<what> is defined twice (also in <origin>)"). Throws ipam::ResourceError.
template <typename R, typename Decode, typename Key>
std::vector<R> decode_each(const std::vector<ipam::RawResource> &raw,
                           bool (*is_kind)(std::string_view), const std::string &kinds,
                           Decode &&decode, Key &&key) {
    std::vector<R> out;
    for (const auto &r : raw) {
        ipam::ResourceOrigin o = r.origin;
        o.name.clear();
        if (!r.value.is_object()) {
            throw ipam::ResourceError(o, "",
                                      "not a resource (want a mapping with apiVersion and kind)");
        }
        if (!is_kind(o.kind)) {
            throw ipam::ResourceError(o, "kind",
                                      "unknown kind '" + o.kind + "' (want " + kinds + ")");
        }
        R res{{}, o, {}};
        Decoder d(o, &res.warnings);
        res.value = decode(r.value, d);
        res.origin = d.origin();
        for (auto &w : res.warnings) {
            w.origin.name = res.origin.name;
        }
        out.push_back(std::move(res));
    }
    std::map<std::string, const R *> seen;
    for (const auto &r : out) {
        const auto [k, what] = key(r);
        auto [it, fresh] = seen.emplace(k, &r);
        if (!fresh) {
            throw ipam::ResourceError(
                r.origin, "metadata.name",
                what + " is defined twice (also in " + it->second->origin.str() + ")");
        }
    }
    return out;
}

}  // namespace fwd::k8s
