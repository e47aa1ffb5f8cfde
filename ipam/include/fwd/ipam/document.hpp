// Resource files as `fwdctl apply -f` reads them, before any kind is decoded: YAML (several
// documents separated by `---`) or JSON, each document one resource, a list kind (`List`,
// `IPPoolList`, `ServiceList`, ...) with `items`, or a top-level sequence of resources. Every
// resource comes out as a JSON value with its origin (file, document, list item, line, kind,
// name), so the decoders of every kind (IPAM's resource.cpp, services in policy/) share one
// reader and one way of naming where a bad field is.
//
// YAML scalars are typed the way Go's YAML decoder (behind kubectl and calicoctl) types them;
// a duplicate key is an error in both syntaxes. Pure functions: no I/O.
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "fwd/ipam/resource.hpp"

namespace fwd::ipam {

// One resource of a file, not decoded yet. origin.kind is the kind written (or lent by a
// typed list), origin.name metadata.name when it is a string; both may be empty.
struct RawResource {
    nlohmann::json value;  // a mapping, or whatever the document held instead
    ResourceOrigin origin;
};

// Every resource of `text` in order. A typed list (kind `<Kind>List`) lends its kind and
// apiVersion to items without them; a generic `List` must say apiVersion v1 (kubectl),
// projectcalico.org/v3 or crd.projectcalico.org/v1. Empty documents are skipped. Throws
// ResourceError for bad YAML or JSON, a duplicate key or a malformed list; an empty text (no
// resource) is an error too.
std::vector<RawResource> split_resources(std::string_view text, const std::string &source_name);

}  // namespace fwd::ipam
