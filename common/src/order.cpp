#include "fwd/util/order.hpp"

#include <map>
#include <set>
#include <stdexcept>

namespace fwd::util {

std::vector<size_t> order_by_constraints(const std::vector<OrderItem> &items, bool unknown_ok) {
    std::map<std::string, size_t> index;
    for (size_t i = 0; i < items.size(); i++) {
        if (!index.emplace(items[i].name, i).second) {
            throw std::invalid_argument("'" + items[i].name + "' is registered twice");
        }
    }
    // edges[a] holds b for every "a before b".
    std::vector<std::set<size_t>> edges(items.size());
    std::vector<size_t> incoming(items.size(), 0);
    auto edge = [&](size_t a, size_t b) {
        if (edges[a].insert(b).second) {
            incoming[b]++;
        }
    };
    for (size_t i = 0; i < items.size(); i++) {
        auto resolve = [&](const std::string &name, const char *rel) -> long {
            auto it = index.find(name);
            if (it != index.end()) {
                return static_cast<long>(it->second);
            }
            if (!unknown_ok) {
                throw std::invalid_argument("'" + items[i].name + "' must run " + rel + " '" +
                                            name + "', which is not registered");
            }
            return -1;
        };
        for (const auto &b : items[i].before) {
            if (long j = resolve(b, "before"); j >= 0) {
                edge(i, static_cast<size_t>(j));
            }
        }
        for (const auto &a : items[i].after) {
            if (long j = resolve(a, "after"); j >= 0) {
                edge(static_cast<size_t>(j), i);
            }
        }
    }
    // Kahn's algorithm; the ready set is ordered by name.
    std::set<std::pair<std::string, size_t>> ready;
    for (size_t i = 0; i < items.size(); i++) {
        if (incoming[i] == 0) {
            ready.emplace(items[i].name, i);
        }
    }
    std::vector<size_t> out;
    while (!ready.empty()) {
        size_t i = ready.begin()->second;
        ready.erase(ready.begin());
        out.push_back(i);
        for (size_t j : edges[i]) {
            if (--incoming[j] == 0) {
                ready.emplace(items[j].name, j);
            }
        }
    }
    if (out.size() != items.size()) {
        std::string names;
        for (size_t i = 0; i < items.size(); i++) {
            if (incoming[i] != 0) {
                names += (names.empty() ? "'" : ", '") + items[i].name + "'";
            }
        }
        throw std::invalid_argument("the order constraints form a cycle among " + names);
    }
    return out;
}

}  // namespace fwd::util
