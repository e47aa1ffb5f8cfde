// Self-registration: a feature adds itself to a registry from its own file,
// at load time, instead of being listed in a shared place.
//
//   FWD_ON_LOAD(fwd::dp::PipelineRegistry::global().add_stage({...}));
//
// runs the statement once, before main(), in the translation unit that holds
// it. Registries are function-local statics (constructed on first use), so
// the order in which translation units load does not matter.
//
// A static library only contributes the objects something refers to: a file
// that does nothing but register would be left out. Libraries whose files
// register are therefore linked whole (meson: link_whole), see the
// meson.build of dpdk-fwd/ and control/.
#pragma once

#define FWD_CAT_INNER(a, b) a##b
#define FWD_CAT(a, b) FWD_CAT_INNER(a, b)

#define FWD_ON_LOAD(...)                                                       \
    namespace {                                                                \
    [[maybe_unused]] const bool FWD_CAT(fwd_on_load_, __COUNTER__) = [] {      \
        __VA_ARGS__;                                                           \
        return true;                                                           \
    }();                                                                       \
    }
