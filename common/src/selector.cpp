// A recursive-descent parser for Calico selectors:
//   expr    := and ('||' and)*
//   and     := unary ('&&' unary)*
//   unary   := '!' unary | primary
//   primary := '(' expr ')' | 'all()' | 'global()' | 'has(' key ')' | key op
//   op      := ('=='|'!=') str | ['not'] 'in' '{' [str (',' str)*] '}'
//            | 'contains' str | 'starts' 'with' str | 'ends' 'with' str
#include "fwd/label/selector.hpp"

#include <algorithm>
#include <vector>

namespace fwd::label {

struct Selector::Node {
    enum class Kind {
        kAll,
        kGlobal,
        kHas,
        kEq,
        kNe,
        kIn,
        kNotIn,
        kContains,
        kStarts,
        kEnds,
        kNot,
        kAnd,
        kOr
    };
    Kind kind = Kind::kAll;
    std::string key;
    std::vector<std::string> values;
    std::shared_ptr<const Node> l, r;
};

SelectorError::SelectorError(size_t pos, const std::string &why)
    : std::runtime_error("selector: " + why + " at position " + std::to_string(pos)),
      pos_(pos),
      why_(why) {}

namespace {

using Node = Selector::Node;
using Kind = Node::Kind;
using NodeP = std::shared_ptr<const Node>;

constexpr size_t kMaxKey = 512;  // Calico's LabelKeyMatcher

bool blank(char c) {
    return c == ' ' || c == '\t';
}

bool key_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-' || c == '.' || c == '/';
}

class Parser {
  public:
    explicit Parser(std::string_view s) : s_(s) {}

    NodeP parse() {
        skip();
        if (i_ == s_.size()) {
            return std::make_shared<Node>();
        }
        NodeP n = expr();
        skip();
        if (i_ != s_.size()) {
            throw SelectorError(i_, "unexpected '" + std::string(1, s_[i_]) + "'");
        }
        return n;
    }

  private:
    void skip() {
        while (i_ < s_.size() && blank(s_[i_])) {
            ++i_;
        }
    }
    bool eat(std::string_view tok) {
        skip();
        if (s_.substr(i_, tok.size()) == tok) {
            // A word must not run on into a key ("income" is not "in").
            if (key_char(tok.back()) && i_ + tok.size() < s_.size() &&
                key_char(s_[i_ + tok.size()])) {
                return false;
            }
            i_ += tok.size();
            return true;
        }
        return false;
    }
    // name immediately followed by '(': consumes both.
    bool call(std::string_view name) {
        if (s_.substr(i_, name.size()) == name && i_ + name.size() < s_.size() &&
            s_[i_ + name.size()] == '(') {
            i_ += name.size() + 1;
            return true;
        }
        return false;
    }
    void expect(std::string_view tok) {
        if (!eat(tok)) {
            throw SelectorError(i_, "expected '" + std::string(tok) + "'");
        }
    }
    NodeP bin(Kind k, NodeP l, NodeP r) {
        auto n = std::make_shared<Node>();
        n->kind = k;
        n->l = std::move(l);
        n->r = std::move(r);
        return n;
    }
    NodeP expr() {
        NodeP n = conj();
        while (eat("||")) {
            n = bin(Kind::kOr, n, conj());
        }
        return n;
    }
    NodeP conj() {
        NodeP n = unary();
        while (eat("&&")) {
            n = bin(Kind::kAnd, n, unary());
        }
        return n;
    }
    NodeP unary() {
        skip();
        if (i_ < s_.size() && s_[i_] == '!' && s_.substr(i_, 2) != "!=") {
            ++i_;
            return bin(Kind::kNot, unary(), nullptr);
        }
        return primary();
    }
    std::string key() {
        skip();
        size_t start = i_;
        while (i_ < s_.size() && key_char(s_[i_])) {
            ++i_;
        }
        if (start == i_) {
            throw SelectorError(
                i_, i_ == s_.size() ? "expected a label key, got the end" : "expected a label key");
        }
        if (i_ - start > kMaxKey) {
            throw SelectorError(start,
                                "label key longer than " + std::to_string(kMaxKey) + " characters");
        }
        return std::string(s_.substr(start, i_ - start));
    }
    std::string str() {
        skip();
        if (i_ >= s_.size() || (s_[i_] != '\'' && s_[i_] != '"')) {
            throw SelectorError(i_, "expected a quoted string");
        }
        char q = s_[i_];
        size_t start = ++i_;
        while (i_ < s_.size() && s_[i_] != q) {
            ++i_;
        }
        if (i_ == s_.size()) {
            throw SelectorError(start - 1, "unterminated string");
        }
        return std::string(s_.substr(start, i_++ - start));
    }
    NodeP primary() {
        skip();
        auto n = std::make_shared<Node>();
        if (eat("(")) {
            NodeP e = expr();
            expect(")");
            return e;
        }
        // As Calico's tokenizer: a function name is one only when '(' follows at once, so
        // "all", "has" and "global" remain usable as label keys.
        if (call("all")) {
            expect(")");
            return n;
        }
        if (call("global")) {
            expect(")");
            n->kind = Kind::kGlobal;
            return n;
        }
        if (call("has")) {
            n->kind = Kind::kHas;
            n->key = key();
            expect(")");
            return n;
        }
        n->key = key();
        if (eat("==")) {
            n->kind = Kind::kEq;
            n->values.push_back(str());
        } else if (eat("!=")) {
            n->kind = Kind::kNe;
            n->values.push_back(str());
        } else if (eat("in")) {
            n->kind = Kind::kIn;
            set(*n);
        } else if (eat("not")) {
            expect("in");
            n->kind = Kind::kNotIn;
            set(*n);
        } else if (eat("contains")) {
            n->kind = Kind::kContains;
            n->values.push_back(str());
        } else if (eat("starts")) {
            expect("with");
            n->kind = Kind::kStarts;
            n->values.push_back(str());
        } else if (eat("ends")) {
            expect("with");
            n->kind = Kind::kEnds;
            n->values.push_back(str());
        } else {
            throw SelectorError(i_, "expected an operator after '" + n->key + "'");
        }
        return n;
    }
    void set(Node &n) {
        expect("{");
        skip();
        if (eat("}")) {
            return;
        }
        do {
            n.values.push_back(str());
        } while (eat(","));
        expect("}");
    }

    std::string_view s_;
    size_t i_ = 0;
};

bool eval(const Node &n, const Labels &labels) {
    auto it = labels.find(n.key);
    bool has = it != labels.end();
    auto in = [&] {
        return has && std::find(n.values.begin(), n.values.end(), it->second) != n.values.end();
    };
    switch (n.kind) {
        case Kind::kAll:
            return true;
        case Kind::kGlobal:
            return false;
        case Kind::kHas:
            return has;
        case Kind::kEq:
            return has && it->second == n.values[0];
        case Kind::kNe:
            return !has || it->second != n.values[0];
        case Kind::kIn:
            return in();
        case Kind::kNotIn:
            return !in();
        case Kind::kContains:
            return has && it->second.find(n.values[0]) != std::string::npos;
        case Kind::kStarts:
            return has && it->second.rfind(n.values[0], 0) == 0;
        case Kind::kEnds:
            return has && it->second.size() >= n.values[0].size() &&
                   it->second.compare(it->second.size() - n.values[0].size(), std::string::npos,
                                      n.values[0]) == 0;
        case Kind::kNot:
            return !eval(*n.l, labels);
        case Kind::kAnd:
            return eval(*n.l, labels) && eval(*n.r, labels);
        case Kind::kOr:
            return eval(*n.l, labels) || eval(*n.r, labels);
    }
    return false;
}

std::string quote(const std::string &v) {
    return v.find('\'') == std::string::npos ? "'" + v + "'" : "\"" + v + "\"";
}

std::string show(const Node &n) {
    auto set = [&] {
        std::string s = "{";
        for (size_t i = 0; i < n.values.size(); ++i) {
            s += (i ? ", " : "") + quote(n.values[i]);
        }
        return s + "}";
    };
    switch (n.kind) {
        case Kind::kAll:
            return "all()";
        case Kind::kGlobal:
            return "global()";
        case Kind::kHas:
            return "has(" + n.key + ")";
        case Kind::kEq:
            return n.key + " == " + quote(n.values[0]);
        case Kind::kNe:
            return n.key + " != " + quote(n.values[0]);
        case Kind::kIn:
            return n.key + " in " + set();
        case Kind::kNotIn:
            return n.key + " not in " + set();
        case Kind::kContains:
            return n.key + " contains " + quote(n.values[0]);
        case Kind::kStarts:
            return n.key + " starts with " + quote(n.values[0]);
        case Kind::kEnds:
            return n.key + " ends with " + quote(n.values[0]);
        case Kind::kNot:
            return "!" + show(*n.l);
        case Kind::kAnd:
            return "(" + show(*n.l) + " && " + show(*n.r) + ")";
        case Kind::kOr:
            return "(" + show(*n.l) + " || " + show(*n.r) + ")";
    }
    return "";
}

bool uses(const Node &n, Kind k) {
    return n.kind == k || (n.l && uses(*n.l, k)) || (n.r && uses(*n.r, k));
}

}  // namespace

// all(): one node shared by every default selector (nodes are immutable), so the selectors a
// rule leaves out (six a rule) allocate nothing: 60,000 allocations in a 10,000-rule policy.
Selector::Selector()
    : root_([] {
          static const std::shared_ptr<const Node> all = std::make_shared<const Node>();
          return all;
      }()) {}

Selector Selector::parse(std::string_view text) {
    Selector s;
    s.root_ = Parser(text).parse();
    return s;
}

bool Selector::matches(const Labels &labels) const {
    return eval(*root_, labels);
}

std::string Selector::str() const {
    return show(*root_);
}

bool Selector::is_all() const {
    return root_->kind == Kind::kAll;
}

bool Selector::is_global() const {
    return root_->kind == Kind::kGlobal;
}

bool Selector::uses_global() const {
    return uses(*root_, Kind::kGlobal);
}

}  // namespace fwd::label
