// The CNI plugin's input as kubelet's runtime gives it: environment variables and the network
// configuration on stdin. The input is "NAME=value" lines, then a NUL byte, then stdin. The
// plugin runs the whole verb with a handler standing in for the daemon (it reads every field a
// request carries, then says the daemon is away, as dpdk-fwd-cni does when it is down). Every
// reply must be a JSON document on stdout or nothing, with an exit code.
#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "fuzz_common.hpp"
#include "fwd/cni/plugin.hpp"

namespace {

using namespace fwd::cni;

class Away final : public Handler {
  public:
    Result add(const Request &r) override {
        touch(r);
        throw Error(ErrorCode::kTryAgainLater, "fuzz: the daemon is away");
    }
    void del(const Request &r) override { touch(r); }
    void check(const Request &r) override { touch(r); }
    void status(const Request &r) override { touch(r); }
    void gc(const Request &r) override { touch(r); }

  private:
    static void touch(const Request &r) {
        (void)r.handle();
        (void)r.wants_vhost_user();
        (void)r.requested_mac();
        (void)r.requested_ips();
    }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const std::string_view in(reinterpret_cast<const char *>(data), size);
    const size_t nul = in.find('\0');
    const std::string_view env_text = in.substr(0, nul);
    const std::string_view stdin_text = nul == std::string_view::npos ? "" : in.substr(nul + 1);
    Env env;
    for (size_t at = 0; at <= env_text.size();) {
        size_t nl = env_text.find('\n', at);
        if (nl == std::string_view::npos) {
            nl = env_text.size();
        }
        const std::string_view line = env_text.substr(at, nl - at);
        if (const size_t eq = line.find('='); eq != std::string_view::npos) {
            env[std::string(line.substr(0, eq))] = std::string(line.substr(eq + 1));
        }
        at = nl + 1;
    }
    Away away;
    Reply reply;
    fwd::fuzz::accepted([&] { reply = run(env, stdin_text, away); });
    if (!reply.out.empty() && !nlohmann::json::accept(reply.out)) {
        std::abort();  // stdout must be one JSON document
    }
    fwd::fuzz::accepted([&] { (void)error_version(stdin_text); });
    return 0;
}
