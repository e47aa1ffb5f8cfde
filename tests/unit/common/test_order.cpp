// order_by_constraints (fwd/util/order.hpp): every constraint met, ties by
// name whatever the input order, unknown names ignored or refused, and the
// errors (a name twice, an unknown name, a cycle) naming what is wrong.
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "fwd/util/order.hpp"

namespace fwd::util {
namespace {

// The names in the order order_by_constraints gives.
std::vector<std::string> names(const std::vector<OrderItem> &items, bool unknown_ok = true) {
    std::vector<std::string> out;
    for (size_t i : order_by_constraints(items, unknown_ok)) {
        out.push_back(items.at(i).name);
    }
    return out;
}

// The std::invalid_argument's message; "" (and a failure) when it is accepted.
std::string error(const std::vector<OrderItem> &items, bool unknown_ok) {
    try {
        order_by_constraints(items, unknown_ok);
    } catch (const std::invalid_argument &e) {
        return e.what();
    }
    ADD_FAILURE() << "accepted";
    return "";
}

bool names_it(const std::string &msg, const std::string &name) {
    return msg.find("'" + name + "'") != std::string::npos;
}

using Names = std::vector<std::string>;

TEST(Order, EmptyIsEmpty) {
    EXPECT_TRUE(order_by_constraints({}, false).empty());
}

TEST(Order, WithoutConstraintsByName) {
    EXPECT_EQ(names({{"c", {}, {}}, {"a", {}, {}}, {"b", {}, {}}}), (Names{"a", "b", "c"}));
}

TEST(Order, ConstraintsBeforeNames) {
    // By name a, b, c, d; the constraints ask for d first and b after c.
    std::vector<OrderItem> items = {
        {"a", {}, {"d"}},
        {"b", {}, {"c"}},
        {"c", {}, {}},
        {"d", {"a"}, {}},
    };
    EXPECT_EQ(names(items), (Names{"c", "b", "d", "a"}));
}

TEST(Order, TiesGoByNameAtEveryStep) {
    // z first; then of a, b, y (all free once z is out) by name.
    std::vector<OrderItem> items = {
        {"y", {}, {"z"}},
        {"b", {}, {"z"}},
        {"z", {"a"}, {}},
        {"a", {}, {}},
    };
    EXPECT_EQ(names(items), (Names{"z", "a", "b", "y"}));
}

TEST(Order, TheSameConstraintSaidByBothSides) {
    std::vector<OrderItem> items = {{"a", {"b"}, {}}, {"b", {}, {"a"}}};
    EXPECT_EQ(names(items, false), (Names{"a", "b"}));
    items = {{"a", {}, {"b"}}, {"b", {"a"}, {}}, {"c", {}, {}}};
    EXPECT_EQ(names(items, false), (Names{"b", "a", "c"}));
}

TEST(Order, UnknownNamesIgnoredOrRefused) {
    std::vector<OrderItem> items = {{"b", {"ghost"}, {}}, {"a", {}, {"b", "phantom"}}};
    EXPECT_EQ(names(items, true), (Names{"b", "a"}));
    std::string e = error(items, false);
    EXPECT_TRUE(names_it(e, "ghost") || names_it(e, "phantom")) << e;
    EXPECT_NE(e.find("not registered"), std::string::npos) << e;

    e = error({{"x", {"ghost"}, {}}}, false);
    EXPECT_EQ(e, "'x' must run before 'ghost', which is not registered");
    e = error({{"x", {}, {"ghost"}}}, false);
    EXPECT_EQ(e, "'x' must run after 'ghost', which is not registered");
}

TEST(Order, NameTwiceIsRefused) {
    for (bool unknown_ok : {true, false}) {
        std::string e = error({{"a", {}, {}}, {"b", {}, {}}, {"a", {}, {}}}, unknown_ok);
        EXPECT_TRUE(names_it(e, "a")) << e;
        EXPECT_FALSE(names_it(e, "b")) << e;
    }
}

TEST(Order, CycleIsRefusedNamingItsMembers) {
    // x -> y -> z -> x, with free standing beside them.
    std::vector<OrderItem> items = {
        {"x", {"y"}, {}},
        {"y", {}, {}},
        {"z", {"x"}, {"y"}},
        {"free", {}, {}},
    };
    for (bool unknown_ok : {true, false}) {
        std::string e = error(items, unknown_ok);
        EXPECT_NE(e.find("cycle"), std::string::npos) << e;
        for (const char *n : {"x", "y", "z"}) {
            EXPECT_TRUE(names_it(e, n)) << n << ": " << e;
        }
        EXPECT_FALSE(names_it(e, "free")) << e;
    }
}

TEST(Order, ItemBeforeItselfIsACycle) {
    std::string e = error({{"a", {"a"}, {}}, {"b", {}, {}}}, true);
    EXPECT_NE(e.find("cycle"), std::string::npos) << e;
    EXPECT_TRUE(names_it(e, "a")) << e;
    EXPECT_FALSE(names_it(e, "b")) << e;
}

// Random acyclic constraints (each pointing along a hidden order): the result
// meets them all, holds every item once, and is the same for any input order.
TEST(Order, RandomAcyclicConstraintsAreMet) {
    std::mt19937 rng(12345);
    for (int round = 0; round < 200; round++) {
        SCOPED_TRACE(round);
        size_t n = 1 + rng() % 12;
        std::vector<std::string> hidden;
        for (size_t i = 0; i < n; i++) {
            hidden.push_back("s" + std::to_string(rng() % 1000) + "_" + std::to_string(i));
        }
        std::shuffle(hidden.begin(), hidden.end(), rng);
        std::vector<OrderItem> items;
        std::vector<std::pair<std::string, std::string>> must;  // first runs before second
        for (size_t i = 0; i < n; i++) {
            OrderItem it{hidden[i], {}, {}};
            for (size_t j = 0; j < n; j++) {
                if (j == i || rng() % 4 != 0) {
                    continue;
                }
                if (j > i) {
                    it.before.push_back(hidden[j]);
                    must.emplace_back(hidden[i], hidden[j]);
                } else {
                    it.after.push_back(hidden[j]);
                    must.emplace_back(hidden[j], hidden[i]);
                }
            }
            if (rng() % 3 == 0) {
                it.before.push_back("absent");
            }
            items.push_back(std::move(it));
        }
        Names got = names(items);
        ASSERT_EQ(got.size(), n);
        std::map<std::string, size_t> pos;
        for (size_t i = 0; i < got.size(); i++) {
            pos[got[i]] = i;
        }
        ASSERT_EQ(pos.size(), n) << "an item twice";
        for (const auto &[a, b] : must) {
            EXPECT_LT(pos.at(a), pos.at(b)) << a << " before " << b;
        }
        std::shuffle(items.begin(), items.end(), rng);
        EXPECT_EQ(names(items), got) << "depends on the input order";
    }
}

}  // namespace
}  // namespace fwd::util
