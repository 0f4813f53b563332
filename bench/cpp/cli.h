// Command-line flags: `--name value`, `--name=value`, or a bare `--name` (a switch).
// Each flag is read once through a typed getter with its default; finish() then rejects any
// flag nobody asked for, so a typo fails loudly instead of silently running the default.
#pragma once
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace bench {

class Cli {
 public:
  // `usage` is printed for --help and after any flag error.
  Cli(int argc, char** argv, std::string usage);

  int64_t integer(const std::string& name, int64_t fallback);
  double real(const std::string& name, double fallback);
  std::string text(const std::string& name, const std::string& fallback);
  std::vector<double> reals(const std::string& name, const std::string& fallback);  // comma list
  bool has(const std::string& name);                                                // a switch

  void finish() const;

 private:
  [[noreturn]] void fail(const std::string& message) const;
  const std::string* value(const std::string& name);

  std::string usage_;
  std::map<std::string, std::string> values_;
  std::set<std::string> read_;
};

}  // namespace bench
