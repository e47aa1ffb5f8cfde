#include <gtest/gtest.h>

#include "fwd/label/selector.hpp"

namespace fwd::label {
namespace {

bool m(const char *sel, const Labels &l) {
    return Selector::parse(sel).matches(l);
}

const Labels kNode{{"zone", "a"}, {"kubernetes.io/os", "linux"}, {"rack", "r1"}};

TEST(Selector, AllAndEmpty) {
    EXPECT_TRUE(m("all()", {}));
    EXPECT_TRUE(m("", kNode));
    EXPECT_TRUE(m("  all( )  ", kNode));
}

TEST(Selector, Has) {
    EXPECT_TRUE(m("has(zone)", kNode));
    EXPECT_FALSE(m("has(gpu)", kNode));
    EXPECT_TRUE(m("!has(gpu)", kNode));
    EXPECT_TRUE(m("has(kubernetes.io/os)", kNode));
}

TEST(Selector, EqualityBothQuotes) {
    EXPECT_TRUE(m("zone == 'a'", kNode));
    EXPECT_TRUE(m("zone == \"a\"", kNode));
    EXPECT_FALSE(m("zone == 'b'", kNode));
    EXPECT_TRUE(m("zone != 'b'", kNode));
    EXPECT_FALSE(m("zone != 'a'", kNode));
    // Calico: != holds for an absent label.
    EXPECT_TRUE(m("gpu != 'yes'", kNode));
    EXPECT_FALSE(m("gpu == 'yes'", kNode));
}

TEST(Selector, InNotIn) {
    EXPECT_TRUE(m("zone in {'a', 'b'}", kNode));
    EXPECT_FALSE(m("zone in {'c'}", kNode));
    EXPECT_FALSE(m("zone in {}", kNode));
    EXPECT_TRUE(m("zone not in {'c', \"d\"}", kNode));
    EXPECT_FALSE(m("zone not in {'a'}", kNode));
    EXPECT_TRUE(m("gpu not in {'a'}", kNode));
    EXPECT_FALSE(m("gpu in {'a'}", kNode));
}

TEST(Selector, StringOps) {
    EXPECT_TRUE(m("rack contains '1'", kNode));
    EXPECT_TRUE(m("rack starts with 'r'", kNode));
    EXPECT_TRUE(m("rack ends with 'r1'", kNode));
    EXPECT_FALSE(m("rack ends with 'x'", kNode));
}

TEST(Selector, BooleanPrecedenceAndParens) {
    EXPECT_TRUE(m("zone == 'a' && rack == 'r1'", kNode));
    EXPECT_FALSE(m("zone == 'a' && rack == 'r2'", kNode));
    EXPECT_TRUE(m("zone == 'b' || rack == 'r1'", kNode));
    // && binds tighter than ||.
    EXPECT_TRUE(m("zone == 'a' || zone == 'b' && rack == 'x'", kNode));
    EXPECT_FALSE(m("(zone == 'a' || zone == 'b') && rack == 'x'", kNode));
    EXPECT_TRUE(m("!(zone == 'b')", kNode));
    EXPECT_FALSE(m("!!has(gpu)", kNode));
    EXPECT_TRUE(m("!has(gpu) && (zone in {'a'} || has(x))", kNode));
}

TEST(Selector, KeyThatStartsWithAKeyword) {
    EXPECT_TRUE(m("income == 'x' || hash == 'y' || zone == 'a'", kNode));
    Labels l{{"income", "x"}};
    EXPECT_TRUE(m("income == 'x'", l));
}

TEST(Selector, CanonicalForm) {
    EXPECT_EQ(Selector::parse("a=='1'&&!has(b)").str(), "(a == '1' && !has(b))");
    EXPECT_EQ(Selector::parse("k not in {'x',\"y\"}").str(), "k not in {'x', 'y'}");
}

TEST(Selector, ErrorsNamePosition) {
    auto pos = [](const char *s) -> long {
        try {
            Selector::parse(s);
        } catch (const SelectorError &e) {
            EXPECT_NE(std::string(e.what()).find("position"), std::string::npos);
            return static_cast<long>(e.position());
        }
        return -1;
    };
    EXPECT_EQ(pos("zone == a"), 8);
    EXPECT_EQ(pos("zone = 'a'"), 5);
    EXPECT_EQ(pos("zone == 'a"), 8);
    EXPECT_EQ(pos("has(zone"), 8);
    EXPECT_EQ(pos("zone == 'a' &&"), 14);
    EXPECT_EQ(pos("zone in {'a' 'b'}"), 13);
    EXPECT_EQ(pos("(zone == 'a'"), 12);
    EXPECT_EQ(pos("zone == 'a' )"), 12);
    EXPECT_EQ(pos("zone not {'a'}"), 9);
}

TEST(Selector, GlobalIsItsOwnPrimary) {
    const auto g = Selector::parse("global()");
    EXPECT_TRUE(g.is_global());
    EXPECT_TRUE(g.uses_global());
    EXPECT_FALSE(g.is_all());
    // No label set is a non-namespaced entity: the policy layer decides what global() selects.
    EXPECT_FALSE(g.matches(kNode));
    EXPECT_EQ(g.str(), "global()");
    EXPECT_TRUE(Selector::parse("global() || has(zone)").uses_global());
    EXPECT_FALSE(Selector::parse("global() || has(zone)").is_global());
    EXPECT_FALSE(Selector::parse("has(zone)").uses_global());
}

TEST(Selector, AllAndDefault) {
    EXPECT_TRUE(Selector().is_all());
    EXPECT_TRUE(Selector::parse("").is_all());
    EXPECT_TRUE(Selector::parse(" all() ").is_all());
    EXPECT_FALSE(Selector::parse("!all()").is_all());
    EXPECT_EQ(Selector().str(), "all()");
}

TEST(Selector, FunctionNamesAreKeysWithoutParenthesis) {
    // As Calico's tokenizer: "all", "has" and "global" are functions only when '(' follows.
    Labels l{{"all", "x"}, {"has", "y"}, {"global", "z"}};
    EXPECT_TRUE(m("all == 'x' && has == 'y' && global == 'z'", l));
    EXPECT_TRUE(m("has(has)", l));
}

TEST(Selector, BlanksAreSpacesAndTabs) {
    EXPECT_TRUE(m("\tzone == 'a'\t&&\thas(rack) ", kNode));
    // Calico's tokenizer knows no other blank: a newline is an unexpected character.
    EXPECT_THROW(Selector::parse("zone == 'a'\n&& has(rack)"), SelectorError);
}

TEST(Selector, KeysUpTo512Characters) {
    const std::string k512(512, 'k');
    EXPECT_TRUE(m(("has(" + k512 + ")").c_str(), {{k512, ""}}));
    try {
        Selector::parse("has(" + k512 + "k)");
        FAIL() << "a 513-character key parsed";
    } catch (const SelectorError &e) {
        EXPECT_EQ(e.position(), 4u);
        EXPECT_EQ(e.why(), "label key longer than 512 characters");
    }
}

TEST(Selector, ErrorsSayWhyApartFromWhere) {
    try {
        Selector::parse("app == 'a' &&");
        FAIL();
    } catch (const SelectorError &e) {
        EXPECT_EQ(e.why(), "expected a label key, got the end");
        EXPECT_EQ(e.position(), 13u);
        EXPECT_STREQ(e.what(), "selector: expected a label key, got the end at position 13");
    }
}

}  // namespace
}  // namespace fwd::label
