// EtcdStore: etcd v3 over the JSON gateway with libcurl; see the header.
#include "fwd/ipam/etcd_store.hpp"

#include <curl/curl.h>

#include <charconv>

#include <nlohmann/json.hpp>

namespace fwd::ipam {

namespace {

using nlohmann::json;

constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

std::string b64_encode(const std::string &in) {
    std::string out;
    out.reserve((in.size() + 2) / 3 * 4);
    std::size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        uint32_t v = static_cast<uint32_t>(static_cast<unsigned char>(in[i])) << 16 |
                     static_cast<uint32_t>(static_cast<unsigned char>(in[i + 1])) << 8 |
                     static_cast<unsigned char>(in[i + 2]);
        for (int s = 18; s >= 0; s -= 6)
            out.push_back(kB64[(v >> s) & 63]);
    }
    std::size_t rest = in.size() - i;
    if (rest > 0) {
        uint32_t v = static_cast<uint32_t>(static_cast<unsigned char>(in[i])) << 16;
        if (rest == 2)
            v |= static_cast<uint32_t>(static_cast<unsigned char>(in[i + 1])) << 8;
        out.push_back(kB64[(v >> 18) & 63]);
        out.push_back(kB64[(v >> 12) & 63]);
        out.push_back(rest == 2 ? kB64[(v >> 6) & 63] : '=');
        out.push_back('=');
    }
    return out;
}

// Returns false on a character outside the alphabet.
bool b64_decode(const std::string &in, std::string &out) {
    out.clear();
    uint32_t acc = 0;
    int bits = 0;
    for (char c : in) {
        if (c == '=')
            break;
        const char *p = std::char_traits<char>::find(kB64, 64, c);
        if (p == nullptr)
            return false;
        acc = (acc << 6) | static_cast<uint32_t>(p - kB64);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<char>((acc >> bits) & 0xFF));
        }
    }
    return true;
}

// etcd's range_end for "every key starting with prefix".
std::string prefix_end(std::string p) {
    while (!p.empty()) {
        auto last = static_cast<unsigned char>(p.back());
        if (last < 0xFF) {
            p.back() = static_cast<char>(last + 1);
            return p;
        }
        p.pop_back();
    }
    return std::string(1, '\0');  // whole key space
}

// grpc-gateway writes int64 as strings and omits zero values.
int64_t as_i64(const json &j, const char *field) {
    auto it = j.find(field);
    if (it == j.end())
        return 0;
    if (it->is_number_integer())
        return it->get<int64_t>();
    int64_t v = 0;
    if (it->is_string()) {
        const auto &str = it->get_ref<const std::string &>();
        auto [end, ec] = std::from_chars(str.data(), str.data() + str.size(), v);
        if (ec == std::errc() && end == str.data() + str.size())
            return v;
    }
    throw StoreError(std::string("etcd: malformed ") + field + " in reply: " + it->dump());
}

size_t on_body(char *data, size_t size, size_t n, void *user) {
    static_cast<std::string *>(user)->append(data, size * n);
    return size * n;
}

struct CurlInit {
    CurlInit() { curl_global_init(CURL_GLOBAL_DEFAULT); }
};

}  // namespace

EtcdStore::EtcdStore(std::vector<std::string> endpoints)
    : EtcdStore(Options{std::move(endpoints),
                        {},
                        std::chrono::milliseconds(2000),
                        std::chrono::milliseconds(10000)}) {}

EtcdStore::EtcdStore(Options opts) : opts_(std::move(opts)) {
    static CurlInit init;  // thread-safe once, before any handle
    if (opts_.endpoints.empty())
        throw StoreError("etcd: no endpoint given");
    for (auto &e : opts_.endpoints)
        while (!e.empty() && e.back() == '/')
            e.pop_back();
}

EtcdStore::~EtcdStore() {
    for (void *h : idle_)
        curl_easy_cleanup(static_cast<CURL *>(h));
}

std::string EtcdStore::describe() const {
    std::string s = "etcd";
    for (std::size_t i = 0; i < opts_.endpoints.size(); ++i)
        s += (i ? "," : " ") + opts_.endpoints[i];
    if (!opts_.prefix.empty())
        s += " prefix " + opts_.prefix;
    return s;
}

std::string EtcdStore::post(const std::string &path, const std::string &body) {
    CURL *h = nullptr;
    std::size_t first = 0;
    {
        std::lock_guard g(mu_);
        if (!idle_.empty()) {
            h = static_cast<CURL *>(idle_.back());
            idle_.pop_back();
        }
        first = current_;
    }
    if (h == nullptr)
        h = curl_easy_init();
    if (h == nullptr)
        throw StoreError(describe() + ": curl_easy_init failed");
    struct Give {
        EtcdStore &s;
        CURL *h;
        ~Give() {
            std::lock_guard g(s.mu_);
            s.idle_.push_back(h);
        }
    } give{*this, h};

    curl_slist *headers = curl_slist_append(nullptr, "Content-Type: application/json");
    std::string errors;
    const std::size_t n = opts_.endpoints.size();
    for (std::size_t k = 0; k < n; ++k) {
        std::size_t idx = (first + k) % n;
        const std::string &ep = opts_.endpoints[idx];
        std::string url = ep + path, reply;
        char errbuf[CURL_ERROR_SIZE] = {0};
        curl_easy_reset(h);
        curl_easy_setopt(h, CURLOPT_URL, url.c_str());
        curl_easy_setopt(h, CURLOPT_POST, 1L);
        curl_easy_setopt(h, CURLOPT_POSTFIELDS, body.data());
        curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
        curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(h, CURLOPT_WRITEDATA, &reply);
        curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
        curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                         static_cast<long>(opts_.connect_timeout.count()));
        curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(opts_.request_timeout.count()));
        CURLcode rc = curl_easy_perform(h);
        if (rc != CURLE_OK) {
            // Not reached, or no answer: try the next endpoint. A txn whose
            // answer was lost may have been applied; callers re-read and
            // compare, as revisions make the retry safe.
            errors += (errors.empty() ? "" : "; ") + ep + ": " +
                      (errbuf[0] ? errbuf : curl_easy_strerror(rc));
            continue;
        }
        long status = 0;
        curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
        curl_slist_free_all(headers);
        if (status != 200) {
            std::string msg = reply;
            auto j = json::parse(reply, nullptr, false);
            if (!j.is_discarded() && j.is_object() && j.contains("message"))
                msg = j["message"].is_string() ? j["message"].get<std::string>() : j.dump();
            throw StoreError(describe() + ": " + ep + path + ": HTTP " + std::to_string(status) +
                             ": " + msg);
        }
        {
            std::lock_guard g(mu_);
            current_ = idx;
        }
        return reply;
    }
    curl_slist_free_all(headers);
    throw StoreError(describe() + ": no endpoint answered: " + errors);
}

namespace {

json parse_reply(const std::string &who, const std::string &reply) {
    auto j = json::parse(reply, nullptr, false);
    if (j.is_discarded() || !j.is_object())
        throw StoreError(who + ": malformed reply: " + reply);
    return j;
}

KeyValue to_kv(const std::string &who, const json &kv, std::size_t strip) {
    KeyValue out;
    std::string key;
    if (!b64_decode(kv.value("key", ""), key) || !b64_decode(kv.value("value", ""), out.value) ||
        key.size() < strip)
        throw StoreError(who + ": malformed key-value in reply");
    out.key = key.substr(strip);
    out.mod_revision = as_i64(kv, "mod_revision");
    return out;
}

}  // namespace

std::optional<KeyValue> EtcdStore::get(const std::string &key) {
    json req = {{"key", b64_encode(opts_.prefix + key)}};
    json rep = parse_reply(describe(), post("/v3/kv/range", req.dump()));
    auto kvs = rep.find("kvs");
    if (kvs == rep.end() || kvs->empty())
        return std::nullopt;
    return to_kv(describe(), kvs->at(0), opts_.prefix.size());
}

std::vector<KeyValue> EtcdStore::list(const std::string &prefix) {
    return range(prefix, false);
}

std::vector<KeyValue> EtcdStore::list_keys(const std::string &prefix) {
    return range(prefix, true);
}

int64_t EtcdStore::revision() {
    // Any key answers with the store's header; etcd refuses an empty one (no prefix).
    const std::string key = opts_.prefix.empty() ? std::string(1, '\0') : opts_.prefix;
    json req = {{"key", b64_encode(key)}, {"count_only", true}};
    json rep = parse_reply(describe(), post("/v3/kv/range", req.dump()));
    if (!rep.contains("header"))
        throw StoreError(describe() + ": range reply without a header");
    return as_i64(rep["header"], "revision");
}

std::vector<KeyValue> EtcdStore::range(const std::string &prefix, bool keys_only) {
    constexpr int64_t kPage = 1000;
    const std::string full = opts_.prefix + prefix;
    const std::string end = b64_encode(prefix_end(full));
    std::vector<KeyValue> out;
    std::string from = full.empty() ? std::string(1, '\0') : full;
    int64_t at_revision = 0;  // every page from the first page's revision
    for (;;) {
        json req = {{"key", b64_encode(from)}, {"range_end", end}, {"limit", kPage}};
        if (keys_only)
            req["keys_only"] = true;
        if (at_revision)
            req["revision"] = at_revision;
        json rep = parse_reply(describe(), post("/v3/kv/range", req.dump()));
        if (!at_revision && rep.contains("header"))
            at_revision = as_i64(rep["header"], "revision");
        auto kvs = rep.find("kvs");
        if (kvs == rep.end() || kvs->empty())
            break;
        for (const auto &kv : *kvs)
            out.push_back(to_kv(describe(), kv, opts_.prefix.size()));
        if (!rep.value("more", false))
            break;
        from = opts_.prefix + out.back().key + std::string(1, '\0');
    }
    return out;
}

bool EtcdStore::txn(const std::vector<Compare> &cmps, const std::vector<Operation> &ops) {
    json compare = json::array();
    for (const auto &c : cmps) {
        json one = {{"key", b64_encode(opts_.prefix + c.key)}, {"result", "EQUAL"}};
        if (c.mod_revision == 0) {
            one["target"] = "CREATE";
            one["create_revision"] = "0";
        } else {
            one["target"] = "MOD";
            one["mod_revision"] = std::to_string(c.mod_revision);
        }
        compare.push_back(std::move(one));
    }
    json success = json::array();
    for (const auto &op : ops) {
        json key = b64_encode(opts_.prefix + op.key);
        if (op.kind == Operation::Kind::kPut)
            success.push_back({{"request_put", {{"key", key}, {"value", b64_encode(op.value)}}}});
        else
            success.push_back({{"request_delete_range", {{"key", key}}}});
    }
    json req = {{"compare", compare}, {"success", success}};
    json rep = parse_reply(describe(), post("/v3/kv/txn", req.dump()));
    return rep.value("succeeded", false);
}

}  // namespace fwd::ipam
