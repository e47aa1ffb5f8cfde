// Resource files to JSON values with their origin; see the header.
//
// Both syntaxes become one nlohmann::json value per document first (YAML scalars typed the
// way Go's YAML decoder, and so kubectl and calicoctl, types them), so one strict decoder per
// kind reads both.
#include "fwd/ipam/document.hpp"

#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cstdlib>
#include <set>

namespace fwd::ipam {

using nlohmann::json;

namespace {

// ---- text to JSON values ----

struct Document {
    json value;
    int index = 0;  // 1-based
    int line = 0;   // 1-based; 0: unknown
};

std::string trim_left(std::string_view s) {
    size_t i = s.find_first_not_of(" \t\r\n");
    return i == std::string_view::npos ? std::string() : std::string(s.substr(i));
}

// A plain YAML scalar typed as YAML 1.1 (Go's gopkg.in/yaml.v2, behind calicoctl) types it.
json plain_scalar(const std::string &s) {
    static const std::set<std::string> kNull{"", "~", "null", "Null", "NULL"};
    static const std::set<std::string> kTrue{"true", "True", "TRUE", "yes", "Yes", "YES",
                                             "y",    "Y",    "on",   "On",  "ON"};
    static const std::set<std::string> kFalse{"false", "False", "FALSE", "no",  "No", "NO",
                                              "n",     "N",     "off",   "Off", "OFF"};
    if (kNull.contains(s)) {
        return nullptr;
    }
    if (kTrue.contains(s)) {
        return true;
    }
    if (kFalse.contains(s)) {
        return false;
    }
    const char *begin = s.c_str();
    char *end = nullptr;
    errno = 0;
    // Base 0: decimal, 0x hex and 0 octal, as YAML 1.1.
    const long long i = std::strtoll(begin, &end, 0);
    if (end != begin && *end == '\0' && errno == 0) {
        return i;
    }
    if (s.find_first_of("0123456789") != std::string::npos &&
        s.find_first_not_of("0123456789+-.eE") == std::string::npos) {
        errno = 0;
        const double d = std::strtod(begin, &end);
        if (end != begin && *end == '\0' && errno == 0) {
            return d;
        }
    }
    return s;
}

json yaml_to_json(const YAML::Node &n, const ResourceOrigin &origin, const std::string &path) {
    switch (n.Type()) {
        case YAML::NodeType::Null:
        case YAML::NodeType::Undefined:
            return nullptr;
        case YAML::NodeType::Scalar:
            // "!" is a quoted scalar: always a string, as is an explicit !!str.
            if (n.Tag() == "!" || n.Tag() == "tag:yaml.org,2002:str") {
                return n.Scalar();
            }
            return plain_scalar(n.Scalar());
        case YAML::NodeType::Sequence: {
            json out = json::array();
            for (size_t i = 0; i < n.size(); ++i) {
                out.push_back(yaml_to_json(n[i], origin, path + "[" + std::to_string(i) + "]"));
            }
            return out;
        }
        case YAML::NodeType::Map: {
            json out = json::object();
            for (const auto &kv : n) {
                const std::string key = kv.first.IsScalar() ? kv.first.Scalar() : "";
                const std::string field = path.empty() ? key : path + "." + key;
                if (!kv.first.IsScalar()) {
                    ResourceOrigin o = origin;
                    o.line = kv.first.Mark().line + 1;
                    throw ResourceError(o, path, "a mapping key must be a plain value");
                }
                if (out.contains(key)) {
                    ResourceOrigin o = origin;
                    o.line = kv.first.Mark().line + 1;
                    throw ResourceError(o, field, "duplicate key");
                }
                out[key] = yaml_to_json(kv.second, origin, field);
            }
            return out;
        }
    }
    return nullptr;
}

// yaml-cpp 0.7 (Debian 12's) never returns from a document whose first token is ',' (found
// by tests/fuzz/fuzz_resources: ",x" alone hangs it, allocating without end). No YAML document
// starts with ',' (an indicator), so such a file is refused here, by line, before the parser.
void refuse_leading_comma(std::string_view text, const std::string &source) {
    bool at_start = true;  // no content yet in the current document
    int line_no = 0;
    for (size_t at = 0; at < text.size();) {
        size_t nl = text.find('\n', at);
        if (nl == std::string_view::npos) {
            nl = text.size();
        }
        std::string_view line = text.substr(at, nl - at);
        at = nl + 1;
        ++line_no;
        if (line.starts_with("---") &&
            (line.size() == 3 || line[3] == ' ' || line[3] == '\t' || line[3] == '\r')) {
            at_start = true;
            line.remove_prefix(3);  // the document may begin on the marker's line
        } else if (line.starts_with("...") || (at_start && line.starts_with("%"))) {
            continue;
        }
        if (!at_start) {
            continue;
        }
        const size_t first = line.find_first_not_of(" \t\r");
        if (first == std::string_view::npos || line[first] == '#') {
            continue;
        }
        if (line[first] == ',') {
            ResourceOrigin o{source};
            o.line = line_no;
            throw ResourceError(o, "",
                                "bad YAML (column " + std::to_string(first + 1) +
                                    "): a document cannot start with ','");
        }
        at_start = false;
    }
}

std::vector<Document> load_yaml(const std::string &text, const std::string &source) {
    refuse_leading_comma(text, source);
    std::vector<YAML::Node> nodes;
    try {
        nodes = YAML::LoadAll(text);
    } catch (const YAML::Exception &e) {
        ResourceOrigin o{source};
        o.line = e.mark.is_null() ? 0 : e.mark.line + 1;
        throw ResourceError(
            o, "",
            "bad YAML" +
                (e.mark.is_null() ? std::string()
                                  : " (column " + std::to_string(e.mark.column + 1) + ")") +
                ": " + e.msg);
    }
    std::vector<Document> docs;
    for (size_t i = 0; i < nodes.size(); ++i) {
        ResourceOrigin o{source, static_cast<int>(i + 1)};
        o.line = nodes[i].Mark().is_null() ? 0 : nodes[i].Mark().line + 1;
        docs.push_back({yaml_to_json(nodes[i], o, ""), o.document, o.line});
    }
    return docs;
}

// A repeated key is an error, as in YAML. A SAX pass that only tracks keys: nlohmann's
// parse callback would do it in one pass, but its parser rescans the enclosing array's
// elements at every object's end (quadratic: 27% of `fwdctl apply` of a 10,000-rule policy).
class DuplicateKeys final : public json::json_sax_t {
  public:
    std::string duplicate;  // the first repeated key; empty: none

    bool null() override { return true; }
    bool boolean(bool) override { return true; }
    bool number_integer(number_integer_t) override { return true; }
    bool number_unsigned(number_unsigned_t) override { return true; }
    bool number_float(number_float_t, const string_t &) override { return true; }
    bool string(string_t &) override { return true; }
    bool binary(binary_t &) override { return true; }
    bool start_object(std::size_t) override {
        keys_.emplace_back();
        return true;
    }
    bool key(string_t &k) override {
        if (!keys_.back().insert(k).second) {
            duplicate = k;
            return false;  // stops the pass
        }
        return true;
    }
    bool end_object() override {
        keys_.pop_back();
        return true;
    }
    bool start_array(std::size_t) override { return true; }
    bool end_array() override { return true; }
    bool parse_error(std::size_t, const std::string &,
                     const nlohmann::detail::exception &) override {
        return false;  // json::parse reports it with its message
    }

  private:
    std::vector<std::set<std::string>> keys_;  // per open object
};

// JSON through nlohmann for JSON's own error messages.
std::vector<Document> load_json(const std::string &text, const std::string &source) {
    try {
        json value = json::parse(text);
        DuplicateKeys dup;
        json::sax_parse(text, &dup);
        if (!dup.duplicate.empty()) {
            throw ResourceError(ResourceOrigin{source, 1}, dup.duplicate, "duplicate key");
        }
        return {{std::move(value), 1, 1}};
    } catch (const json::parse_error &e) {
        std::string why = e.what();
        if (auto p = why.find("] "); why.starts_with("[json.exception") && p != std::string::npos) {
            why = why.substr(p + 2);
        }
        throw ResourceError(ResourceOrigin{source}, "", "bad JSON: " + why);
    }
}

// The name and kind as written, for origins; decoders say what is wrong with them.
void name_origin(const json &obj, ResourceOrigin &o) {
    if (!obj.is_object()) {
        return;
    }
    if (obj.contains("kind") && obj["kind"].is_string()) {
        o.kind = obj["kind"].get<std::string>();
    }
    if (obj.contains("metadata") && obj["metadata"].is_object() &&
        obj["metadata"].contains("name") && obj["metadata"]["name"].is_string()) {
        o.name = obj["metadata"]["name"].get<std::string>();
    }
}

bool is_list_kind(const json &obj) {
    if (!obj.is_object() || !obj.contains("kind") || !obj["kind"].is_string()) {
        return false;
    }
    const auto kind = obj["kind"].get<std::string>();
    return kind.ends_with("List");
}

std::string string_field(const json &obj, const char *key, const ResourceOrigin &o) {
    if (!obj.contains(key) || obj[key].is_null()) {
        throw ResourceError(o, key, "missing");
    }
    if (!obj[key].is_string()) {
        throw ResourceError(o, key, "want a string, got " + obj[key].dump());
    }
    return obj[key].get<std::string>();
}

// A list's items; a typed list (IPPoolList) lends its kind and apiVersion to items without them.
// The items are moved out of list.
void split_list(json &list, ResourceOrigin o, std::vector<RawResource> &out) {
    o.kind = list["kind"].get<std::string>();
    const std::string api = string_field(list, "apiVersion", o);
    const bool generic = o.kind == "List";
    if (generic && api != "v1" && api != "projectcalico.org/v3" &&
        api != "crd.projectcalico.org/v1") {
        throw ResourceError(o, "apiVersion", "unknown apiVersion '" + api + "' for List");
    }
    for (const auto &[key, v] : list.items()) {
        if (key != "apiVersion" && key != "kind" && key != "metadata" && key != "items") {
            throw ResourceError(o, key, "unknown field");
        }
    }
    json items = list.contains("items") ? std::move(list["items"]) : json::array();
    if (!items.is_array() && !items.is_null()) {
        throw ResourceError(o, "items", "want a list of resources");
    }
    const std::string item_kind = o.kind.substr(0, o.kind.size() - 4);
    int i = 0;
    if (items.is_null()) {
        items = json::array();
    }
    for (auto &item : items) {
        ResourceOrigin io = o;
        io.kind.clear();
        io.item = ++i;
        json typed = std::move(item);
        if (!generic && typed.is_object()) {
            if (!typed.contains("kind")) {
                typed["kind"] = item_kind;
            }
            if (!typed.contains("apiVersion")) {
                typed["apiVersion"] = api;
            }
        }
        name_origin(typed, io);
        out.push_back({std::move(typed), std::move(io)});
    }
}

}  // namespace

std::vector<RawResource> split_resources(std::string_view text, const std::string &source_name) {
    const std::string body(text);
    const std::string start = trim_left(body);
    const bool is_json = start.starts_with("{") || start.starts_with("[");
    std::vector<Document> docs =
        is_json ? load_json(body, source_name) : load_yaml(body, source_name);
    std::vector<RawResource> out;
    for (Document &d : docs) {
        ResourceOrigin o{source_name, d.index, 0, d.line};
        if (d.value.is_null()) {
            continue;  // an empty document, e.g. after a trailing `---`
        }
        if (d.value.is_array()) {
            int i = 0;
            for (auto &item : d.value) {
                ResourceOrigin io = o;
                io.item = ++i;
                name_origin(item, io);
                out.push_back({std::move(item), std::move(io)});
            }
        } else if (is_list_kind(d.value)) {
            split_list(d.value, o, out);
        } else {
            name_origin(d.value, o);
            out.push_back({std::move(d.value), std::move(o)});
        }
    }
    if (out.empty()) {
        throw ResourceError(ResourceOrigin{source_name}, "", "no resources found");
    }
    return out;
}

}  // namespace fwd::ipam
