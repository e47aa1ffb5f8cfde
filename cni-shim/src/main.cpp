// dpdk-fwd-cni: the CNI plugin kubelet's runtime executes. Environment and stdin in, the
// result or the error JSON on stdout (fwd/cni/plugin.hpp); the work is the daemon's.
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <iterator>
#include <string>

#include "daemon_handler.hpp"
#include "fwd/cni/plugin.hpp"

int main(int, char **, char **envp) {
    std::string in;
    // VERSION may come without stdin; a terminal is not a runtime.
    if (!isatty(STDIN_FILENO)) {
        in.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
    }
    fwd::cni::DaemonHandler handler;
    fwd::cni::Reply r = fwd::cni::run(fwd::cni::env_from(envp), in, handler);
    std::fputs(r.out.c_str(), stdout);
    std::fputs(r.err.c_str(), stderr);
    return std::fflush(stdout) == 0 ? r.exit_code : 1;
}
