// What the decoders of Kubernetes-shaped resources share; see k8s_decode.hpp.
#include "k8s_decode.hpp"

#include <cctype>

#include "fwd/ipam/model.hpp"

namespace fwd::k8s {

// ---- the API server's ways of saying what is wrong ----

std::string json_quoted(const std::string &s) {
    return json(s).dump();
}

std::string invalid(const std::string &value, const std::string &detail) {
    return "Invalid value: " + value + ": " + detail;
}

std::string required(const std::string &detail) {
    return detail.empty() ? "Required value" : "Required value: " + detail;
}

std::string unsupported(const std::string &value, std::initializer_list<const char *> supported) {
    std::string s = "Unsupported value: " + json_quoted(value) + ": supported values: ";
    bool first = true;
    for (const char *v : supported) {
        s += (first ? "" : ", ") + json_quoted(v);
        first = false;
    }
    return s;
}

std::string duplicate(const std::string &value) {
    return "Duplicate value: " + value;
}

std::string forbidden(const std::string &detail) {
    return "Forbidden: " + detail;
}

std::string too_many(size_t n, size_t max) {
    return "Too many: " + std::to_string(n) + ": must have at most " + std::to_string(max) +
           " items";
}

// ---- names ----

bool lower_alnum(char c) {
    return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

// "" when s is a DNS-1123 label (RFC 1123), else why not.
std::string dns1123_label_error(std::string_view s) {
    if (s.size() > 63) {
        return "must be no more than 63 characters";
    }
    if (s.empty() || !lower_alnum(s.front()) || !lower_alnum(s.back()) ||
        !std::all_of(s.begin(), s.end(), [](char c) { return lower_alnum(c) || c == '-'; })) {
        return "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or "
               "'-', and must start and end with an alphanumeric character";
    }
    return "";
}

// A Service's name: a DNS-1035 label (an RFC 1123 label starting with a letter).
std::string dns1035_label_error(std::string_view s) {
    if (s.size() > 63) {
        return "must be no more than 63 characters";
    }
    if (s.empty() || !(s.front() >= 'a' && s.front() <= 'z') || !lower_alnum(s.back()) ||
        !std::all_of(s.begin(), s.end(), [](char c) { return lower_alnum(c) || c == '-'; })) {
        return "a DNS-1035 label must consist of lower case alphanumeric characters or '-', "
               "start with an alphabetic character, and end with an alphanumeric character";
    }
    return "";
}

std::string dns1123_subdomain_error(std::string_view s) {
    if (!ipam::is_dns1123_subdomain(s)) {
        return "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric "
               "characters, '-' or '.', and must start and end with an alphanumeric character";
    }
    return "";
}

// A named port (IANA_SVC_NAME, RFC 6335).
std::string port_name_error(std::string_view s) {
    if (s.size() > 15) {
        return "must be no more than 15 characters";
    }
    if (!std::all_of(s.begin(), s.end(), [](char c) { return lower_alnum(c) || c == '-'; })) {
        return "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)";
    }
    if (s.find("--") != std::string_view::npos) {
        return "must not contain consecutive hyphens";
    }
    if (std::none_of(s.begin(), s.end(), [](char c) { return c >= 'a' && c <= 'z'; })) {
        return "must contain at least one letter (a-z)";
    }
    if (s.front() == '-' || s.back() == '-') {
        return "must not begin or end with a hyphen";
    }
    return "";
}

// A label key ([prefix/]name) or value, as Kubernetes checks them.
bool label_part_ok(std::string_view s) {
    auto alnum = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; };
    return s.size() <= 63 && (s.empty() || (alnum(s.front()) && alnum(s.back()))) &&
           std::all_of(s.begin(), s.end(),
                       [&](char c) { return alnum(c) || c == '-' || c == '_' || c == '.'; });
}

std::string label_key_error(const std::string &key) {
    const auto slash = key.find('/');
    const std::string name = slash == std::string::npos ? key : key.substr(slash + 1);
    if (slash != std::string::npos && !ipam::is_dns1123_subdomain(key.substr(0, slash))) {
        return "prefix part " + dns1123_subdomain_error(key.substr(0, slash));
    }
    if (name.empty() || !label_part_ok(name)) {
        return "name part must consist of alphanumeric characters, '-', '_' or '.', and must "
               "start and end with an alphanumeric character (at most 63 characters)";
    }
    return "";
}

std::optional<FieldError> labels_error(const std::map<std::string, std::string> &labels,
                                       const std::string &path, bool check_values) {
    for (const auto &[k, v] : labels) {
        if (auto e = label_key_error(k); !e.empty()) {
            return FieldError{path, invalid(json_quoted(k), e)};
        }
        if (check_values && !label_part_ok(v)) {
            return FieldError{path + "." + k,
                              invalid(json_quoted(v),
                                      "a valid label must be an empty string or consist of "
                                      "alphanumeric characters, '-', '_' or '.', and must start "
                                      "and end with an alphanumeric character (at most 63)")};
        }
    }
    return std::nullopt;
}

std::string at(const std::string &path, size_t i) {
    return path + "[" + std::to_string(i) + "]";
}

void decode_metadata(Decoder &d, const json &obj, std::string &name, std::string *ns,
                     std::map<std::string, std::string> &labels,
                     std::map<std::string, std::string> *annotations) {
    if (!obj.contains("metadata") || obj["metadata"].is_null()) {
        d.fail("metadata", required());
    }
    const json meta = d.object(
        obj["metadata"], "metadata", {"name", "namespace", "labels", "annotations"},
        {"uid", "resourceVersion", "generation", "creationTimestamp", "deletionTimestamp",
         "deletionGracePeriodSeconds", "managedFields", "selfLink"},
        {{"generateName", "give metadata.name"},
         {"ownerReferences", "no garbage collector runs here: delete it with fwdctl delete -f"},
         {"finalizers", "no controller runs here to finalize it"}});
    const auto n = d.str(meta, "name", "metadata");
    if (!n || n->empty()) {
        d.fail("metadata.name", required("name or generateName is required"));
    }
    name = *n;
    d.set_name(name);
    if (auto s = d.str(meta, "namespace", "metadata"); s && !s->empty()) {
        if (ns != nullptr) {
            *ns = *s;
        } else {
            d.warn("metadata.namespace", "ignored: " + d.origin().kind + " is cluster-scoped");
        }
    }
    labels = d.string_map(meta, "labels", "metadata");
    if (annotations != nullptr) {
        *annotations = d.string_map(meta, "annotations", "metadata");
    }
}

void check_api(const Decoder &d, const json &obj, std::initializer_list<const char *> apis) {
    const auto v = d.str(obj, "apiVersion", "");
    if (!v) {
        d.fail("apiVersion", required());
    }
    if (std::none_of(apis.begin(), apis.end(), [&](const char *a) { return *v == a; })) {
        std::string want;
        for (const char *a : apis) {
            want += (want.empty() ? "" : " or ") + std::string(a);
        }
        d.fail("apiVersion",
               "unknown apiVersion '" + *v + "' for " + d.origin().kind + " (want " + want + ")");
    }
}

void check_kind(const Decoder &d, const json &obj, const char *api) {
    const auto v = d.str(obj, "apiVersion", "");
    if (!v) {
        d.fail("apiVersion", required());
    }
    if (*v != api) {
        d.fail("apiVersion",
               "unknown apiVersion '" + *v + "' for " + d.origin().kind + " (want " + api + ")");
    }
}

}  // namespace fwd::k8s
