// Helpers for config-file tests: files in a temporary directory, the line a marker is on, and the check that a
// text fails to load with a ConfigError naming the file, that line and the key path.
// Include it before cmocka.hpp: <fstream>/<iostream> declare basic_ios::fail(), which cmocka's fail() would rewrite.
#pragma once
#include <fstream>
#include <iostream>

#include "tests/unit/cmocka.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <string>

#include "common/config_file.hpp"

namespace dptun::test {

class ConfigFixture {
 public:
  // Creates the directory; the group teardown calls remove().
  bool create(const char* prefix) {
    std::string tmpl = std::string("/tmp/") + prefix + "-XXXXXX";
    if (!mkdtemp(tmpl.data())) return false;
    dir = tmpl;
    return true;
  }
  bool remove() { return std::system(("rm -rf '" + dir + "'").c_str()) == 0; }

  std::string write_file(const std::string& name, const std::string& text) {
    std::string path = dir + "/" + name;
    std::ofstream out(path);
    out << text;
    out.close();
    assert_true(bool(out));
    return path;
  }
  std::string write_config(const std::string& text) { return write_file("c" + std::to_string(++files_) + ".conf", text); }

  // Loads `text` with `load`, which must throw a ConfigError naming the file and `line`, the exact key path `key`
  // (unless empty: syntax errors have none) and containing `what` (when given).
  template <typename Load>
  void expect_error(Load load, const std::string& text, int line, const std::string& key, const std::string& what = "") {
    std::string path = write_config(text);
    std::string msg;
    try {
      (void)load(path);
    } catch (const ConfigError& e) {
      msg = e.what();
    } catch (const std::exception& e) {
      fail_msg("%s: expected a ConfigError, got another exception: %s", path.c_str(), e.what());
    }
    bool ok = !msg.empty() && msg.find(path + ":" + std::to_string(line) + ":") != std::string::npos &&
              (key.empty() || msg.find("key '" + key + "':") != std::string::npos) &&
              (what.empty() || msg.find(what) != std::string::npos);
    if (!ok)
      std::cerr << "expected error at " << path << ":" << line << " about " << key << " (" << what << "), got: '" << msg
                << "'\n";
    assert_true(ok);
  }

  std::string dir;

 private:
  int files_ = 0;
};

// 1-based number of the line holding `marker` (which must occur exactly once).
inline int line_of(const std::string& text, const std::string& marker) {
  size_t pos = text.find(marker);
  assert_true(pos != std::string::npos);
  assert_true(text.find(marker, pos + 1) == std::string::npos);
  return int(std::count(text.begin(), text.begin() + long(pos), '\n')) + 1;
}

// Replaces the single occurrence of `from` with `to`.
inline std::string replace(std::string text, const std::string& from, const std::string& to) {
  size_t pos = text.find(from);
  assert_true(pos != std::string::npos);
  assert_true(text.find(from, pos + 1) == std::string::npos);
  return text.replace(pos, from.size(), to);
}

}  // namespace dptun::test
