#include "common/cli.hpp"

#include <getopt.h>

#include "common/log.hpp"

namespace dptun {

namespace {
constexpr int kLongBase = 256;  // getopt_long's value for options_[i]: above every short option character
}

Cli& Cli::option(const char* name, bool takes_value, Apply apply, char short_name) {
  options_.push_back(Option{name, takes_value, std::move(apply), short_name});
  return *this;
}

Cli& Cli::flag(const char* name, bool& set) {
  return option(name, false, [&set](const char*) -> std::optional<int> {
    set = true;
    return std::nullopt;
  });
}

Cli& Cli::value(const char* name, std::string& target) {
  return option(name, true, [&target](const char* v) -> std::optional<int> {
    target = v;
    return std::nullopt;
  });
}

Cli& Cli::help() {
  return option(
      "help", false,
      [this](const char*) -> std::optional<int> {
        fputs(usage_, out);
        return 0;
      },
      'h');
}

Cli& Cli::version(const char* version) {
  return option("version", false, [this, version](const char*) -> std::optional<int> {
    fprintf(out, "%s %s\n", program_.c_str(), version);
    return 0;
  });
}

int Cli::usage_error(const std::string& what) const {
  fprintf(err, "%s: %s\n%s", program_.c_str(), what.c_str(), usage_);
  return 2;
}

int Cli::value_error(const std::string& what) const {
  fprintf(err, "%s: %s\n", program_.c_str(), what.c_str());
  return 2;
}

std::optional<int> Cli::parse(int argc, char** argv, std::vector<std::string>* positional) {
  std::vector<::option> longs;
  // '+' (no other arguments): stop at the first one, so it is reported before what follows it runs. ':': a
  // missing value is told apart from an unknown option.
  std::string shorts = positional ? ":" : "+:";
  for (size_t i = 0; i < options_.size(); ++i) {
    const Option& o = options_[i];
    longs.push_back({o.name.c_str(), o.takes_value ? required_argument : no_argument, nullptr, kLongBase + int(i)});
    if (o.short_name) shorts += std::string(1, o.short_name) + (o.takes_value ? ":" : "");
  }
  longs.push_back({nullptr, 0, nullptr, 0});
  auto find = [&](int c) -> const Option* {
    if (c >= kLongBase && c < kLongBase + int(options_.size())) return &options_[size_t(c - kLongBase)];
    for (const Option& o : options_)
      if (o.short_name && o.short_name == c) return &o;
    return nullptr;
  };
  opterr = 0;  // the messages are ours
  optind = 0;  // 0: glibc starts afresh, also for a second parse in one process
  for (int c; (c = getopt_long(argc, argv, shorts.c_str(), longs.data(), nullptr)) != -1;) {
    if (c == ':') {
      const Option* o = find(optopt);
      return usage_error("--" + (o ? o->name : std::string(1, char(optopt))) + " needs a value");
    }
    if (c == '?') {
      if (const Option* o = find(optopt); o && optopt >= kLongBase) return usage_error("--" + o->name + " takes no value");
      const std::string arg = optopt ? "-" + std::string(1, char(optopt)) : std::string(argv[optind - 1]);
      return usage_error("unknown argument '" + arg + "'");
    }
    const Option* o = find(c);
    if (!o) return usage_error("unknown argument '" + std::string(argv[optind - 1]) + "'");
    if (auto status = o->apply(optarg)) return status;
  }
  for (int i = optind; i < argc; ++i) {
    if (!positional) return usage_error("unknown argument '" + std::string(argv[i]) + "'");
    positional->push_back(argv[i]);
  }
  return std::nullopt;
}

namespace {

// --log-level and --log-format: a name log.hpp knows (`parse`), applied at once (`set`); another is a usage error.
template <typename Parse, typename Set>
Cli::Apply log_option(const Cli& cli, const char* what, const char* known, Parse parse, Set set) {
  return [&cli, what, known, parse, set](const char* v) -> std::optional<int> {
    const auto parsed = parse(v);
    if (!parsed) return cli.usage_error(std::string("unknown ") + what + " '" + v + "'" + known);
    set(*parsed);
    return std::nullopt;
  };
}

}  // namespace

std::optional<int> parse_daemon_args(int argc, char** argv, const char* program, const char* usage,
                                     const char* version, DaemonArgs& args) {
  Cli cli(program, usage);
  cli.value("config", args.config_path)
      .flag("check", args.check_only)
      .option("log-level", true, log_option(cli, "log level", "", log_parse_level, log_set_level))
      .option("log-format", true, log_option(cli, "log format", " (text or json)", log_parse_format, log_set_format))
      .version(version)
      .help();
  if (auto status = cli.parse(argc, argv)) return status;
  if (args.config_path.empty()) return cli.usage_error("--config FILE is required");
  return std::nullopt;
}

}  // namespace dptun
