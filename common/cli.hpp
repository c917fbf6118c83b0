// Command lines through getopt_long(3): the options a program (or a subcommand) takes, each with what it does.
// Errors say "<program>: <what>" on stderr and end with exit status 2; --help prints the usage on stdout and
// ends with 0. getopt_long's own rules apply: "--name VALUE" or "--name=VALUE", a unique prefix of a name,
// options and other arguments in any order, "--" ends the options.
#pragma once
#include <cstdio>
#include <functional>
#include <optional>
#include <string>
#include <vector>

namespace dptun {

class Cli {
 public:
  // What an option does with its value (nullptr for an option without one): nullopt to go on, or the exit
  // status to end with, after saying why (usage_error(), value_error()).
  using Apply = std::function<std::optional<int>(const char* value)>;

  // `program` begins every message ("dpgw", "dpgw stats"); `usage` is the --help text.
  Cli(std::string program, const char* usage) : program_(std::move(program)), usage_(usage) {}
  Cli(const Cli&) = delete;  // the options' actions may hold on to it
  Cli& operator=(const Cli&) = delete;

  Cli& option(const char* name, bool takes_value, Apply apply, char short_name = 0);
  Cli& flag(const char* name, bool& set);             // --name: `set` becomes true
  Cli& value(const char* name, std::string& target);  // --name VALUE: `target` becomes VALUE
  Cli& help();                                        // --help and -h: the usage on stdout, exit status 0
  Cli& version(const char* version);                  // --version: "<program> <version>", exit status 0

  // Reads argv[1..argc). nullopt: the program goes on; else its exit status. Arguments that are not options go
  // to `positional` when it is given and are a usage error when it is not.
  std::optional<int> parse(int argc, char** argv, std::vector<std::string>* positional = nullptr);

  // "<program>: <what>" and the usage on stderr; 2. For mistakes in the shape of the command line.
  int usage_error(const std::string& what) const;
  // "<program>: <what>" on stderr; 2. For a value that is wrong (the message says how).
  int value_error(const std::string& what) const;

  // Where messages and --help/--version go (stdout and stderr unless a test says otherwise).
  FILE* out = stdout;
  FILE* err = stderr;

 private:
  struct Option {
    std::string name;
    bool takes_value;
    Apply apply;
    char short_name;
  };
  std::string program_;
  const char* usage_;
  std::vector<Option> options_;
};

// What dpgw and dpctld take to start: --config FILE, --check, --log-level LEVEL, --log-format text|json,
// --version, --help. Sets the log level and format as it reads them.
struct DaemonArgs {
  std::string config_path;
  bool check_only = false;
};
// nullopt: start (config_path is set); else the exit status ("--config FILE is required" is a usage error).
std::optional<int> parse_daemon_args(int argc, char** argv, const char* program, const char* usage,
                                     const char* version, DaemonArgs& args);

}  // namespace dptun
