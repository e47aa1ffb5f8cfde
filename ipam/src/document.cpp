// Resource files to JSON values with their origin; see the header.
//
// Both syntaxes become one nlohmann::json value per document first (YAML scalars typed the
// way Go's YAML decoder, and so kubectl and calicoctl, types them), so one strict decoder per
// kind reads both.
#include "fwd/ipam/document.hpp"

#include <yaml.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <map>
#include <new>
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

// libyaml's parser, freed on every way out.
class YamlParser {
  public:
    explicit YamlParser(const std::string &text) {
        if (yaml_parser_initialize(&parser_) == 0) {
            throw std::bad_alloc();
        }
        yaml_parser_set_input_string(&parser_, reinterpret_cast<const unsigned char *>(text.data()),
                                     text.size());
    }
    ~YamlParser() { yaml_parser_delete(&parser_); }
    YamlParser(const YamlParser &) = delete;
    YamlParser &operator=(const YamlParser &) = delete;

    yaml_parser_t *get() { return &parser_; }

  private:
    yaml_parser_t parser_{};
};

class YamlEvent {
  public:
    YamlEvent() = default;
    ~YamlEvent() { yaml_event_delete(&event_); }
    YamlEvent(const YamlEvent &) = delete;
    YamlEvent &operator=(const YamlEvent &) = delete;

    yaml_event_t *get() { return &event_; }
    const yaml_event_t &operator*() const { return event_; }

  private:
    yaml_event_t event_{};
};

// Values copied for anchors and aliases in one file, at most: an alias repeats its anchor's
// whole value, so nine nested anchors of ten aliases each ("billion laughs") would build 10^9
// values from a few hundred bytes. Resource files use aliases rarely and small.
constexpr size_t kMaxAliasValues = 100'000;
// Collections nested deeper than this are refused: the decoders and nlohmann's copy recurse.
constexpr size_t kMaxYamlDepth = 256;

// A YAML stream to one JSON value per document, from libyaml's events. Scalars are typed as
// plain_scalar() says unless quoted, block (| >) or tagged !!str or !; anchors and aliases are
// resolved by copying; mapping keys must be scalars and unique.
class YamlToJson {
  public:
    YamlToJson(const std::string &text, const std::string &source)
        : text_(text), source_(source), parser_(text) {}

    std::vector<Document> documents() {
        std::vector<Document> docs;
        for (;;) {
            YamlEvent ev;
            next(ev);
            switch ((*ev).type) {
                case YAML_DOCUMENT_START_EVENT:
                    ++document_;
                    anchors_.clear();  // an anchor's scope is its document
                    break;
                case YAML_DOCUMENT_END_EVENT:
                    docs.push_back({std::move(root_), document_, root_line_});
                    root_ = nullptr;
                    break;
                case YAML_STREAM_END_EVENT:
                    return docs;
                case YAML_SCALAR_EVENT:
                    scalar(*ev);
                    break;
                case YAML_ALIAS_EVENT:
                    alias(*ev);
                    break;
                case YAML_SEQUENCE_START_EVENT:
                case YAML_MAPPING_START_EVENT:
                    open(*ev);
                    break;
                case YAML_SEQUENCE_END_EVENT:
                case YAML_MAPPING_END_EVENT:
                    close();
                    break;
                default:
                    break;  // stream start
            }
        }
    }

  private:
    // A collection being read.
    struct Open {
        json value;  // an object or an array
        std::string path;
        std::string anchor;     // "": none
        size_t values = 1;      // in value, itself included
        yaml_mark_t mark{};     // where it starts
        bool have_key = false;  // a mapping's next event is the value of key
        std::string key;
    };
    struct Anchored {
        json value;
        size_t values = 1;
        bool scalar = false;
        std::string text;  // a scalar's text, for use as a key
    };

    ResourceOrigin origin_at(size_t line) const {
        ResourceOrigin o{source_, document_};
        o.line = static_cast<int>(line) + 1;
        return o;
    }

    [[noreturn]] void bad(const yaml_mark_t &at, const std::string &why) const {
        throw ResourceError(origin_at(at.line), "",
                            "bad YAML (column " + std::to_string(at.column + 1) + "): " + why);
    }

    void next(YamlEvent &ev) {
        yaml_parser_t *p = parser_.get();
        if (yaml_parser_parse(p, ev.get()) != 0) {
            return;
        }
        if (p->error == YAML_MEMORY_ERROR) {
            throw std::bad_alloc();
        }
        yaml_mark_t at = p->problem_mark;
        if (p->error == YAML_READER_ERROR) {
            // The reader (encoding, control characters) gives a byte offset, not a mark.
            at = mark_of(p->problem_offset);
        }
        std::string why = p->problem != nullptr ? p->problem : "unreadable";
        if (p->context != nullptr) {
            why += " (" + std::string(p->context) + " started at line " +
                   std::to_string(p->context_mark.line + 1) + ", column " +
                   std::to_string(p->context_mark.column + 1) + ")";
        }
        bad(at, why);
    }

    yaml_mark_t mark_of(size_t offset) const {
        yaml_mark_t m{};
        offset = std::min(offset, text_.size());
        for (size_t i = 0; i < offset; ++i) {
            if (text_[i] == '\n') {
                ++m.line;
                m.column = 0;
            } else {
                ++m.column;
            }
        }
        return m;
    }

    // The field path of the node about to be added.
    std::string child_path() const {
        if (stack_.empty()) {
            return "";
        }
        const Open &parent = stack_.back();
        if (parent.value.is_array()) {
            return parent.path + "[" + std::to_string(parent.value.size()) + "]";
        }
        return parent.path.empty() ? parent.key : parent.path + "." + parent.key;
    }

    bool expecting_key() const {
        return !stack_.empty() && stack_.back().value.is_object() && !stack_.back().have_key;
    }

    void refuse_collection_key(const yaml_mark_t &at) const {
        throw ResourceError(origin_at(at.line), stack_.back().path,
                            "a mapping key must be a plain value");
    }

    void take_key(const std::string &key, const yaml_mark_t &at) {
        Open &parent = stack_.back();
        if (parent.value.contains(key)) {
            throw ResourceError(origin_at(at.line),
                                parent.path.empty() ? key : parent.path + "." + key,
                                "duplicate key");
        }
        parent.key = key;
        parent.have_key = true;
    }

    // A finished node goes into its parent, or becomes the document's root.
    void add(json value, size_t values, int line) {
        if (stack_.empty()) {
            root_ = std::move(value);
            root_line_ = line;
            return;
        }
        Open &parent = stack_.back();
        parent.values += values;
        if (parent.value.is_array()) {
            parent.value.push_back(std::move(value));
        } else {
            parent.value[parent.key] = std::move(value);
            parent.have_key = false;
        }
    }

    void remember(const unsigned char *anchor, const json &value, size_t values, bool scalar,
                  const std::string &text, const yaml_mark_t &at) {
        if (anchor == nullptr) {
            return;
        }
        spend(values, at);
        anchors_[reinterpret_cast<const char *>(anchor)] = {value, values, scalar, text};
    }

    void spend(size_t values, const yaml_mark_t &at) {
        copied_ += values;
        if (copied_ > kMaxAliasValues) {
            bad(at, "anchors and aliases expand to more than " + std::to_string(kMaxAliasValues) +
                        " values");
        }
    }

    void scalar(const yaml_event_t &ev) {
        const auto &s = ev.data.scalar;
        const std::string text(reinterpret_cast<const char *>(s.value), s.length);
        const std::string_view tag = s.tag != nullptr ? reinterpret_cast<const char *>(s.tag) : "";
        const bool string =
            s.style != YAML_PLAIN_SCALAR_STYLE || tag == "!" || tag == "tag:yaml.org,2002:str";
        json value = string ? json(text) : plain_scalar(text);
        remember(s.anchor, value, 1, true, text, ev.start_mark);
        if (expecting_key()) {
            take_key(text, ev.start_mark);  // a key is its text, however it would be typed
        } else {
            add(std::move(value), 1, static_cast<int>(ev.start_mark.line) + 1);
        }
    }

    void alias(const yaml_event_t &ev) {
        const char *name = reinterpret_cast<const char *>(ev.data.alias.anchor);
        const auto it = anchors_.find(name);
        if (it == anchors_.end()) {
            bad(ev.start_mark, "alias *" + std::string(name) + " names no anchor before it");
        }
        const Anchored &a = it->second;
        if (expecting_key()) {
            if (!a.scalar) {
                refuse_collection_key(ev.start_mark);
            }
            take_key(a.text, ev.start_mark);
            return;
        }
        spend(a.values, ev.start_mark);
        add(a.value, a.values, static_cast<int>(ev.start_mark.line) + 1);
    }

    void open(const yaml_event_t &ev) {
        if (expecting_key()) {
            refuse_collection_key(ev.start_mark);
        }
        if (stack_.size() >= kMaxYamlDepth) {
            bad(ev.start_mark, "nested deeper than " + std::to_string(kMaxYamlDepth) + " levels");
        }
        const bool map = ev.type == YAML_MAPPING_START_EVENT;
        const unsigned char *anchor =
            map ? ev.data.mapping_start.anchor : ev.data.sequence_start.anchor;
        Open o;
        o.value = map ? json::object() : json::array();
        o.path = child_path();
        o.anchor = anchor != nullptr ? reinterpret_cast<const char *>(anchor) : "";
        o.mark = ev.start_mark;
        stack_.push_back(std::move(o));
    }

    void close() {
        Open o = std::move(stack_.back());
        stack_.pop_back();
        if (!o.anchor.empty()) {
            remember(reinterpret_cast<const unsigned char *>(o.anchor.c_str()), o.value, o.values,
                     false, "", o.mark);
        }
        add(std::move(o.value), o.values, static_cast<int>(o.mark.line) + 1);
    }

    const std::string &text_;
    const std::string &source_;
    YamlParser parser_;
    int document_ = 0;
    json root_;
    int root_line_ = 0;
    std::vector<Open> stack_;
    std::map<std::string, Anchored> anchors_;
    size_t copied_ = 0;  // values copied for anchors and aliases so far
};

std::vector<Document> load_yaml(const std::string &text, const std::string &source) {
    return YamlToJson(text, source).documents();
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
