// fwdctl capture PORT | capture list | capture stop ID: packet capture to a pcap file, written by
// the daemon (the capture.* ops, control/src/capture.cpp).
//
//   fwdctl capture uplink -w /tmp/up.pcap -c 100     100 frames, then a summary
//   fwdctl capture pod-a --seconds 5                 5 seconds to ./dpdk-fwd-pod-a-<time>.pcap
//   fwdctl capture 0 --background                    runs on; capture list / stop ID
// In the foreground it runs until its count or time is reached, or Ctrl-C.
#include <signal.h>
#include <time.h>

#include <csignal>
#include <filesystem>
#include <iostream>
#include <memory>

#include "fwdctl.hpp"

namespace fwd::control::fwdctl {

namespace {

volatile std::sig_atomic_t g_interrupted = 0;

void on_interrupt(int) {
    g_interrupted = 1;
}

struct CaptureOptions {
    std::string port;
    std::string file;
    long long count = -1;
    long long seconds = -1;
    long long rate = -1;
    long long snaplen = -1;
    std::string direction;
    bool background = false;
    long long id = 0;
};

void print_capture(const json &c, std::ostream &out) {
    out << "capture " << cell(c, "id") << " on " << cell(c, "port") << " (port "
        << cell(c, "port_id") << ", " << cell(c, "port_name") << ", " << cell(c, "direction")
        << "): " << cell(c, "packets") << " packets, " << cell(c, "bytes") << " bytes to "
        << cell(c, "file") << '\n';
    uint64_t over = count_of(c, "over_rate"), ring = count_of(c, "ring_full"),
             nombuf = count_of(c, "no_mbuf");
    if (over + ring + nombuf != 0) {
        out << "not captured: " << over << " over the rate limit, " << ring
            << " while the daemon's ring was full, " << nombuf << " without a buffer\n";
    }
}

void print_list(const json &result, std::ostream &out) {
    Table table({{"ID", true},
                 {"STATE"},
                 {"PORT"},
                 {"PORT-ID", true},
                 {"DIR"},
                 {"PACKETS", true},
                 {"OVER-RATE", true},
                 {"FILE"}});
    for (const auto &c : array_field(result, "captures")) {
        table.add_row({cell(c, "id"), cell(c, "state"), cell(c, "port"), cell(c, "port_id"),
                       cell(c, "direction"), cell(c, "packets"), cell(c, "over_rate"),
                       cell(c, "file")});
    }
    table.print(out);
}

// The request's args: only what was given (the daemon holds the defaults).
json start_args(const CaptureOptions &o) {
    json a{{"port", o.port}};
    std::string file = o.file;
    if (file.empty()) {
        char stamp[32];
        time_t now = time(nullptr);
        strftime(stamp, sizeof(stamp), "%Y%m%d-%H%M%S", localtime(&now));
        file = "dpdk-fwd-" + o.port + "-" + stamp + ".pcap";
    }
    // The daemon writes the file: a path relative to here means nothing to it.
    a["file"] = std::filesystem::absolute(file).string();
    for (auto [key, v] : {std::pair{"count", o.count}, std::pair{"seconds", o.seconds},
                          std::pair{"rate_pps", o.rate}, std::pair{"snaplen", o.snaplen}}) {
        if (v >= 0) {
            a[key] = v;
        }
    }
    if (!o.direction.empty()) {
        a["direction"] = o.direction;
    }
    return a;
}

int run_capture(ApiClient &client, const CaptureOptions &o, bool as_json) {
    json c = client.call("capture.start", start_args(o));
    if (o.background) {
        if (as_json) {
            std::cout << c.dump(2) << '\n';
        } else {
            std::cout << "capture " << cell(c, "id") << " started on " << cell(c, "port") << " to "
                      << cell(c, "file") << " (fwdctl capture stop " << cell(c, "id") << ")\n";
        }
        return kExitOk;
    }
    struct sigaction sa {};
    sa.sa_handler = on_interrupt;
    sigaction(SIGINT, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    if (o.count <= 0 && o.seconds <= 0) {
        std::cerr << "capturing on " << cell(c, "port") << " to " << cell(c, "file")
                  << "; Ctrl-C stops\n";
    }
    const json id{{"id", c["id"]}};
    while (!g_interrupted && cell(c, "state") == "running") {
        timespec ts{0, 100 * 1000 * 1000};
        nanosleep(&ts, nullptr);
        if (!g_interrupted) {
            c = client.call("capture.get", id);
        }
    }
    c = client.call("capture.stop", id);
    if (as_json) {
        std::cout << c.dump(2) << '\n';
    } else {
        print_capture(c, std::cout);
    }
    return kExitOk;
}

void add_capture_commands(CLI::App &app, Command &command) {
    CLI::App *cap = app.add_subcommand(
        "capture", "capture a port's frames to a pcap file (written by the daemon)");
    auto o = std::make_shared<CaptureOptions>();
    cap->add_option("port", o->port,
                    "uplink, an endpoint id (its frames only), a port id or an ethdev name");
    cap->add_option("-w,--write", o->file,
                    "pcap file (default ./dpdk-fwd-PORT-TIME.pcap); the daemon writes it");
    cap->add_option("-c,--count", o->count, "stop after this many frames");
    cap->add_option("--seconds", o->seconds, "stop after this long");
    cap->add_option("--rate", o->rate, "frames a second at most (daemon default 10000)");
    cap->add_option("--snaplen", o->snaplen, "bytes kept of each frame (default 65535)");
    cap->add_option("--direction", o->direction, "rx, tx or both (default)")
        ->check(CLI::IsMember({"rx", "tx", "both"}));
    cap->add_flag("--background", o->background,
                  "start it and return (fwdctl capture list / stop ID)");
    cap->callback([cap, o, &app, &command] {
        if (!cap->get_subcommands().empty()) {
            return;  // capture list / stop
        }
        if (o->port.empty()) {
            throw CLI::RequiredError("port");
        }
        const bool as_json = app.get_option("--json")->as<bool>();
        command.dialogue = [o, as_json](ApiClient &client) {
            return run_capture(client, *o, as_json);
        };
    });

    add_request_command(*cap, "list", "list the captures and their counts", "capture.list", command,
                        print_list);
    CLI::App *stop = cap->add_subcommand("stop", "stop a capture; its file is complete then");
    stop->add_option("id", o->id, "capture id")->required();
    stop->callback([o, &command] {
        command.request = Request{"capture.stop", json{{"id", o->id}}, print_capture};
    });
}

}  // namespace

FWD_ON_LOAD(register_group("capture", 35, add_capture_commands));

}  // namespace fwd::control::fwdctl
