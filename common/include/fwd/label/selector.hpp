// Calico's label selector language, one implementation for every user: a pool's nodeSelector
// (IPAM), a policy's selector and namespaceSelector, a rule's source / destination selectors.
//
//   all()  global()  has(k)  !has(k)  k == 'v'  k != 'v'  k in {'a','b'}  k not in {...}
//   k contains 'v'  k starts with 'v'  k ends with 'v'  &&  ||  !  ( )
//
// Strings in single or double quotes (no escapes, as Calico). Keys are 1 to 512 characters of
// [a-zA-Z0-9_./-]. Blanks between tokens are spaces and tabs (Calico's tokenizer knows no
// others). An empty selector is all(). Like Calico, `k != 'v'` and `k not in {...}` hold when k
// is absent; `&&` binds tighter than `||`; `!` binds tightest.
//
// global() names the non-namespaced entities (Calico's GlobalNetworkSets and HostEndpoints); it
// is meaningful only as a rule's namespaceSelector, and matches no label set here: the policy
// layer gives it its meaning (is_global()).
//
// Control code only: parse() allocates and throws.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

namespace fwd::label {

using Labels = std::map<std::string, std::string>;

// A parse error. position() is the byte offset where it was found; what():
// "selector: <why> at position <n>", why() the reason alone.
class SelectorError : public std::runtime_error {
  public:
    SelectorError(size_t pos, const std::string &why);
    size_t position() const { return pos_; }
    const std::string &why() const { return why_; }

  private:
    size_t pos_;
    std::string why_;
};

class Selector {
  public:
    struct Node;
    Selector();  // all()
    // Throws SelectorError.
    static Selector parse(std::string_view text);
    bool matches(const Labels &labels) const;
    // A canonical form of the expression ("all()" for the empty selector).
    std::string str() const;
    bool is_all() const;     // exactly all() (or empty)
    bool is_global() const;  // exactly global()
    // True when global() appears anywhere in it (Calico allows it only alone, and only as a
    // rule's namespaceSelector).
    bool uses_global() const;

  private:
    std::shared_ptr<const Node> root_;
};

}  // namespace fwd::label
