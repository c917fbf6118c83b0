#include "common/prom_text.hpp"

#include <cmath>
#include <cstdio>

namespace dptun {

void PromText::family(const std::string& name, const char* type, const std::string& help) {
  out_ += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

void PromText::sample(const std::string& name, double value, const std::string& labels) {
  char num[64];
  if (std::floor(value) == value && std::fabs(value) < 1e15)
    snprintf(num, sizeof num, "%.0f", value);
  else
    snprintf(num, sizeof num, "%.6g", value);
  out_ += name + (labels.empty() ? "" : "{" + labels + "}") + " " + num + "\n";
}

std::string prom_label(std::string_view name, std::string_view value) {
  std::string out(name);
  out += "=\"";
  for (char c : value) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out + "\"";
}

}  // namespace dptun
