// Calico's label selector language, as used by a pool's nodeSelector:
//   all()  has(k)  !has(k)  k == 'v'  k != 'v'  k in {'a','b'}  k not in {...}
//   k contains 'v'  k starts with 'v'  k ends with 'v'  &&  ||  !  ( )
// Strings in single or double quotes. An empty selector is all(). Like
// Calico, `k != 'v'` and `k not in {...}` hold when k is absent.
#pragma once

#include <cstddef>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

namespace fwd::ipam {

using Labels = std::map<std::string, std::string>;

// A parse error; what() and position() name the byte offset.
class SelectorError : public std::runtime_error {
  public:
    SelectorError(size_t pos, const std::string &why);
    size_t position() const { return pos_; }

  private:
    size_t pos_;
};

class Selector {
  public:
    struct Node;
    // Throws SelectorError.
    static Selector parse(std::string_view text);
    bool matches(const Labels &labels) const;
    // A canonical form of the expression.
    std::string str() const;

  private:
    std::shared_ptr<const Node> root_;
};

}  // namespace fwd::ipam
