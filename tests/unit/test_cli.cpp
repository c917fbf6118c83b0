// Command lines (common/cli.hpp, getopt_long underneath) as dpgw, dpgw stats/trace and dpctld read them: values
// and flags in any order and in both spellings, what an unknown, incomplete or stray argument says (and that
// nothing after it runs), --help/--version, an action that ends the program, and a second parse in one process.
#include "tests/unit/cmocka.hpp"

#include <cstdio>
#include <cstdlib>
#include <initializer_list>
#include <string>
#include <vector>

#include "common/cli.hpp"
#include "common/log.hpp"

using namespace dptun;

namespace {

const char* kUsage = "usage: prog [--json] [--socket PATH]\n";

// argv as main gets it: writable strings, argv[0] the program.
struct Argv {
  std::vector<std::string> words;
  std::vector<char*> ptrs;
  explicit Argv(std::initializer_list<const char*> list) : words(list.begin(), list.end()) {
    for (auto& w : words) ptrs.push_back(w.data());
    ptrs.push_back(nullptr);
  }
  int argc() const { return int(words.size()); }
  char** argv() { return ptrs.data(); }
};

// What the program wrote on stdout and stderr.
struct Captured {
  char* out_buf = nullptr;
  char* err_buf = nullptr;
  size_t out_len = 0, err_len = 0;
  FILE* out = open_memstream(&out_buf, &out_len);
  FILE* err = open_memstream(&err_buf, &err_len);
  ~Captured() {
    close();
    free(out_buf);
    free(err_buf);
  }
  void close() {
    if (out) fclose(out);
    if (err) fclose(err);
    out = err = nullptr;
  }
  std::string out_text() {
    close();
    return out_buf ? out_buf : "";
  }
  std::string err_text() {
    close();
    return err_buf ? err_buf : "";
  }
};

struct Prog {
  bool json = false;
  std::string socket = "/run/default.sock";
  int timeouts = 0;
  Captured io;
  Cli cli{"prog", kUsage};
  Prog() {
    cli.out = io.out;
    cli.err = io.err;
    cli.flag("json", json).value("socket", socket).help().version("1.2.3");
    cli.option("timeout", true, [this](const char* v) -> std::optional<int> {
      if (std::string(v) == "never") return cli.value_error("--timeout takes seconds");
      ++timeouts;
      return std::nullopt;
    });
  }
  // Parses `words` (argv[0] "prog" added): the exit status, or -1 when the program would go on.
  int run(std::initializer_list<const char*> words) {
    std::vector<const char*> all{"prog"};
    all.insert(all.end(), words.begin(), words.end());
    std::vector<std::string> copy(all.begin(), all.end());
    std::vector<char*> argv;
    for (auto& w : copy) argv.push_back(w.data());
    argv.push_back(nullptr);
    return cli.parse(int(copy.size()), argv.data()).value_or(-1);
  }
  std::string errors() { return io.err_text(); }
  std::string output() { return io.out_text(); }
};

std::string with_usage(const std::string& line) { return line + "\n" + kUsage; }

}  // namespace

static void values_and_flags_in_any_order_and_both_spellings(void**) {
  Prog p;
  std::vector<std::string> words;
  Argv a{"prog", "5", "--socket", "/tmp/a.sock", "--json", "--timeout=3", "extra"};
  assert_false(p.cli.parse(a.argc(), a.argv(), &words).has_value());
  assert_true(p.json);
  assert_string_equal(p.socket.c_str(), "/tmp/a.sock");
  assert_int_equal(p.timeouts, 1);
  assert_int_equal(words.size(), 2);
  assert_string_equal(words[0].c_str(), "5");
  assert_string_equal(words[1].c_str(), "extra");
  assert_string_equal(p.io.err_text().c_str(), "");
}

static void an_unknown_argument_is_named_with_the_usage(void**) {
  Prog p;
  assert_int_equal(p.run({"--json", "--frobnicate", "--socket", "/x"}), 2);
  assert_string_equal(p.errors().c_str(), with_usage("prog: unknown argument '--frobnicate'").c_str());
  assert_string_equal(p.socket.c_str(), "/run/default.sock");  // nothing after the mistake ran
}

static void a_missing_value_and_a_value_for_a_flag_are_said_so(void**) {
  Prog missing, flag_value, short_unknown;
  assert_int_equal(missing.run({"--socket"}), 2);
  assert_string_equal(missing.errors().c_str(), with_usage("prog: --socket needs a value").c_str());
  assert_int_equal(flag_value.run({"--json=yes"}), 2);
  assert_string_equal(flag_value.errors().c_str(), with_usage("prog: --json takes no value").c_str());
  assert_false(flag_value.json);
  assert_int_equal(short_unknown.run({"-x"}), 2);
  assert_string_equal(short_unknown.errors().c_str(), with_usage("prog: unknown argument '-x'").c_str());
}

// Without a place for them, other arguments are mistakes, and what follows one does not run (--version here).
static void a_stray_argument_stops_before_what_follows(void**) {
  Prog p;
  assert_int_equal(p.run({"--json", "stray", "--version"}), 2);
  assert_true(p.json);
  assert_string_equal(p.output().c_str(), "");
  assert_string_equal(p.errors().c_str(), with_usage("prog: unknown argument 'stray'").c_str());
}

static void help_and_version_end_with_status_0(void**) {
  Prog help, h, version;
  assert_int_equal(help.run({"--json", "--help", "--frobnicate"}), 0);
  assert_int_equal(h.run({"-h"}), 0);
  assert_int_equal(version.run({"--version"}), 0);
  for (Prog* p : {&help, &h}) {
    assert_string_equal(p->output().c_str(), kUsage);
    assert_string_equal(p->errors().c_str(), "");
  }
  assert_string_equal(version.output().c_str(), "prog 1.2.3\n");
}

// An action that finds its value wrong ends the parse with its status; the options after it are not applied.
static void an_action_can_end_the_program(void**) {
  Prog p;
  assert_int_equal(p.run({"--timeout", "never", "--json"}), 2);
  assert_false(p.json);
  assert_string_equal(p.errors().c_str(), "prog: --timeout takes seconds\n");
}

// getopt keeps its place in globals: a second command line in the same process is read from its start.
static void a_second_parse_starts_afresh(void**) {
  Prog first, second;
  assert_int_equal(first.run({"--json", "--socket", "/one"}), -1);
  assert_int_equal(second.run({"--socket", "/two"}), -1);
  assert_string_equal(second.socket.c_str(), "/two");
  assert_false(second.json);
}

// A subcommand reads its own words: argv + 1, as `dpgw stats --json` does.
static void a_subcommand_parses_its_own_words(void**) {
  Prog p;
  Argv a{"dpgw", "stats", "--json"};
  assert_false(p.cli.parse(a.argc() - 1, a.argv() + 1).has_value());
  assert_true(p.json);
}

static void daemon_args(void**) {
  {
    DaemonArgs args;
    Argv a{"dpx", "--log-level", "warn", "--config", "/etc/x.conf", "--check"};
    assert_false(parse_daemon_args(a.argc(), a.argv(), "dpx", kUsage, "0.1", args).has_value());
    assert_string_equal(args.config_path.c_str(), "/etc/x.conf");
    assert_true(args.check_only);
  }
  {
    DaemonArgs args;
    Argv a{"dpx", "--config=/etc/y.conf"};
    assert_false(parse_daemon_args(a.argc(), a.argv(), "dpx", kUsage, "0.1", args).has_value());
    assert_string_equal(args.config_path.c_str(), "/etc/y.conf");
    assert_false(args.check_only);
  }
  DaemonArgs args;
  Argv none{"dpx", "--check"};
  assert_int_equal(parse_daemon_args(none.argc(), none.argv(), "dpx", kUsage, "0.1", args).value_or(-1), 2);
  Argv loud{"dpx", "--config", "/c", "--log-level", "loud"};
  assert_int_equal(parse_daemon_args(loud.argc(), loud.argv(), "dpx", kUsage, "0.1", args).value_or(-1), 2);
  Argv yaml{"dpx", "--config", "/c", "--log-format", "yaml"};
  assert_int_equal(parse_daemon_args(yaml.argc(), yaml.argv(), "dpx", kUsage, "0.1", args).value_or(-1), 2);
  log_set_level(LogLevel::Info);
}

int main() {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(values_and_flags_in_any_order_and_both_spellings),
      cmocka_unit_test(an_unknown_argument_is_named_with_the_usage),
      cmocka_unit_test(a_missing_value_and_a_value_for_a_flag_are_said_so),
      cmocka_unit_test(a_stray_argument_stops_before_what_follows),
      cmocka_unit_test(help_and_version_end_with_status_0),
      cmocka_unit_test(an_action_can_end_the_program),
      cmocka_unit_test(a_second_parse_starts_afresh),
      cmocka_unit_test(a_subcommand_parses_its_own_words),
      cmocka_unit_test(daemon_args),
  };
  return cmocka_run_group_tests(tests, nullptr, nullptr);
}
