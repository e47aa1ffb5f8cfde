// Orders named items by "runs before" / "runs after" constraints, as VPP
// orders the features of an arc and grout its modules: a topological sort,
// ties broken by name so the result never depends on link order.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace fwd::util {

struct OrderItem {
    std::string name;
    std::vector<std::string> before;  // names this item must precede
    std::vector<std::string> after;   // names this item must follow
};

// Indices of items in an order that meets every constraint. A name in
// before / after that no item has is ignored when unknown_ok (an optional
// feature that is not built in), else an error. Throws std::invalid_argument
// for a name given twice, an unknown name (unless unknown_ok) and a cycle,
// naming the items involved.
std::vector<size_t> order_by_constraints(const std::vector<OrderItem> &items, bool unknown_ok);

}  // namespace fwd::util
