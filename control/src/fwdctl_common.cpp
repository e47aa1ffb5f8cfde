// fwdctl's shared parts (fwdctl.hpp): the group registry, the output helpers and the options
// that map onto request args.
#include <algorithm>
#include <cstdio>
#include <utility>

#include "fwdctl.hpp"

namespace fwd::control::fwdctl {

namespace {

// Function-local: groups register before main(), in whatever order their files load.
std::vector<Group> &registry() {
    static std::vector<Group> groups;
    return groups;
}

// Likewise for the kinds of `apply -f`.
std::vector<FileKinds> &file_kinds() {
    static std::vector<FileKinds> kinds;
    return kinds;
}

}  // namespace

void register_file_kinds(FileKinds k) {
    file_kinds().push_back(std::move(k));
}

std::vector<FileKinds> registered_file_kinds() {
    auto v = file_kinds();
    std::stable_sort(v.begin(), v.end(),
                     [](const FileKinds &a, const FileKinds &b) { return a.order < b.order; });
    return v;
}

void register_group(std::string name, int order, GroupFn fn) {
    registry().push_back(Group{std::move(name), order, fn});
}

std::vector<Group> registered_groups() {
    std::vector<Group> groups = registry();
    std::sort(groups.begin(), groups.end(), [](const Group &a, const Group &b) {
        return a.order != b.order ? a.order < b.order : a.name < b.name;
    });
    return groups;
}

// ---------------------------------------------------------------------------------------------
// Output helpers

void Table::add_row(std::vector<std::string> cells) {
    cells.resize(columns_.size());
    rows_.push_back(std::move(cells));
}

void Table::print(std::ostream &out, bool header) const {
    std::vector<size_t> width(columns_.size(), 0);
    for (size_t i = 0; i < columns_.size(); i++) {
        width[i] = header ? columns_[i].title.size() : 0;
        for (const auto &row : rows_) {
            width[i] = std::max(width[i], row[i].size());
        }
    }
    const auto print_row = [&](const std::vector<std::string> &cells) {
        std::string line;
        for (size_t i = 0; i < cells.size(); i++) {
            const std::string pad(width[i] - cells[i].size(), ' ');
            if (i > 0) {
                line += "  ";
            }
            line += columns_[i].right ? pad + cells[i] : cells[i] + pad;
        }
        line.erase(line.find_last_not_of(' ') + 1);
        out << line << '\n';
    };
    if (header) {
        std::vector<std::string> titles;
        for (const auto &c : columns_) {
            titles.push_back(c.title);
        }
        print_row(titles);
    }
    for (const auto &row : rows_) {
        print_row(row);
    }
}

std::string cell(const json &obj, const char *key) {
    if (!obj.is_object()) {
        return "-";
    }
    const auto it = obj.find(key);
    if (it == obj.end() || it->is_null()) {
        return "-";
    }
    if (it->is_string()) {
        return it->get<std::string>();
    }
    return it->dump(-1, ' ', false, json::error_handler_t::replace);
}

const json &array_field(const json &obj, const char *key) {
    static const json kEmpty = json::array();
    if (!obj.is_object()) {
        return kEmpty;
    }
    const auto it = obj.find(key);
    return it != obj.end() && it->is_array() ? *it : kEmpty;
}

void print_fields(const json &obj, const std::vector<const char *> &keys, std::ostream &out) {
    Table table({{"FIELD"}, {"VALUE"}});
    for (const char *key : keys) {
        table.add_row({key, cell(obj, key)});
    }
    table.print(out, false);
}

uint64_t count_of(const json &obj, const char *key) {
    if (!obj.is_object()) {
        return 0;
    }
    const auto it = obj.find(key);
    return it != obj.end() && it->is_number_unsigned() ? it->get<uint64_t>() : 0;
}

std::string ratio(double num, uint64_t den, const char *unit) {
    if (den == 0) {
        return "-";
    }
    char buf[32];
    std::snprintf(buf, sizeof(buf), "%.1f%s", num / static_cast<double>(den), unit);
    return buf;
}

// ---------------------------------------------------------------------------------------------
// Request args from options

CLI::Option *ArgOptions::text(CLI::App *cmd, const std::string &flag, std::string key,
                              const std::string &help) {
    auto &arg = add(std::move(key), false);
    arg.option = cmd->add_option(flag, arg.text, help);
    return arg.option;
}

CLI::Option *ArgOptions::integer(CLI::App *cmd, const std::string &flag, std::string key,
                                 const std::string &help) {
    auto &arg = add(std::move(key), true);
    arg.option = cmd->add_option(flag, arg.number, help);
    return arg.option;
}

json ArgOptions::args() const {
    json out = json::object();
    for (const auto &arg : args_) {
        if (arg->option->count() > 0) {
            out[arg->key] = arg->is_integer ? json(arg->number) : json(arg->text);
        }
    }
    return out;
}

ArgOptions::Arg &ArgOptions::add(std::string key, bool is_integer) {
    args_.push_back(std::make_unique<Arg>());
    args_.back()->key = std::move(key);
    args_.back()->is_integer = is_integer;
    return *args_.back();
}

void print_neighbors(const json &result, std::ostream &out) {
    Table table({{"IP"}, {"MAC"}, {"STATE"}, {"REFS", true}, {"QUEUED", true}, {"AGE-MS", true}});
    for (const auto &n : array_field(result, "neighbors")) {
        table.add_row({cell(n, "ip"), cell(n, "mac"), cell(n, "state"), cell(n, "refs"),
                       cell(n, "queued"), cell(n, "age_ms")});
    }
    table.print(out);
}

CLI::App *add_request_command(CLI::App &parent, const std::string &name, const std::string &help,
                              const std::string &op, Command &command,
                              std::function<void(const json &, std::ostream &)> print,
                              const std::function<void(CLI::App *, ArgOptions &)> &setup) {
    CLI::App *cmd = parent.add_subcommand(name, help);
    auto options = std::make_shared<ArgOptions>();
    if (setup) {
        setup(cmd, *options);
    }
    cmd->callback([&command, op, options, print = std::move(print)] {
        command.request = Request{op, options->args(), print};
    });
    return cmd;
}

}  // namespace fwd::control::fwdctl
