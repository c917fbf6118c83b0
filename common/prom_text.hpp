// Prometheus text exposition format (version 0.0.4): one HELP/TYPE header per family, then samples. Label
// values are escaped (backslash, quote, newline) as the format requires.
#pragma once
#include <string>
#include <string_view>

namespace dptun {

class PromText {
 public:
  void family(const std::string& name, const char* type, const std::string& help);
  void sample(const std::string& name, double value, const std::string& labels = "");
  const std::string& str() const { return out_; }

 private:
  std::string out_;
};

// `name="value"` with the value escaped, for PromText::sample's labels (join several with ',').
std::string prom_label(std::string_view name, std::string_view value);

}  // namespace dptun
