#include <gtest/gtest.h>

#include "fwd/ipam/mem_store.hpp"

namespace fwd::ipam {
namespace {

using Op = Operation;

TEST(MemStore, RevisionsAndCompareAndSwap) {
    MemStore s;
    EXPECT_FALSE(s.get("a"));
    ASSERT_TRUE(s.txn({{"a", 0}}, {{Op::Kind::kPut, "a", "1"}}));
    auto a = s.get("a");
    ASSERT_TRUE(a);
    EXPECT_EQ(a->value, "1");
    EXPECT_EQ(a->mod_revision, 1);
    // Create-if-absent fails now; nothing is applied.
    EXPECT_FALSE(s.txn({{"a", 0}}, {{Op::Kind::kPut, "a", "2"}, {Op::Kind::kPut, "b", "x"}}));
    EXPECT_FALSE(s.get("b"));
    EXPECT_EQ(s.revision(), 1);
    // One transaction is one revision for all its keys.
    ASSERT_TRUE(
        s.txn({{"a", 1}, {"b", 0}}, {{Op::Kind::kPut, "a", "2"}, {Op::Kind::kPut, "b", "x"}}));
    EXPECT_EQ(s.get("a")->mod_revision, 2);
    EXPECT_EQ(s.get("b")->mod_revision, 2);
    EXPECT_FALSE(s.txn({{"a", 1}}, {{Op::Kind::kDelete, "a", ""}}));
    ASSERT_TRUE(s.txn({{"a", 2}}, {{Op::Kind::kDelete, "a", ""}}));
    EXPECT_FALSE(s.get("a"));
    EXPECT_EQ(s.revision(), 3);
}

TEST(MemStore, ListIsPrefixAndOrdered) {
    MemStore s;
    for (const char *k : {"p/b", "p/a", "q/a", "p", "p/c/d"}) {
        ASSERT_TRUE(s.txn({}, {{Op::Kind::kPut, k, k}}));
    }
    auto l = s.list("p/");
    ASSERT_EQ(l.size(), 3u);
    EXPECT_EQ(l[0].key, "p/a");
    EXPECT_EQ(l[1].key, "p/b");
    EXPECT_EQ(l[2].key, "p/c/d");
    EXPECT_EQ(s.list("").size(), 5u);
    EXPECT_TRUE(s.list("z").empty());
}

}  // namespace
}  // namespace fwd::ipam
