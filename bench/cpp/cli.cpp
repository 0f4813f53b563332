#include "cli.h"

#include <cstdio>
#include <cstdlib>
#include <sstream>

namespace bench {

Cli::Cli(int argc, char** argv, std::string usage) : usage_(std::move(usage)) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::printf("%s", usage_.c_str());
      std::exit(0);
    }
    if (arg.rfind("--", 0) != 0) fail("unexpected argument '" + arg + "'");
    arg = arg.substr(2);
    std::string val;
    const size_t eq = arg.find('=');
    if (eq != std::string::npos) {
      val = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
    } else if (i + 1 < argc && std::string(argv[i + 1]).rfind("--", 0) != 0) {
      val = argv[++i];
    }
    if (!values_.emplace(arg, val).second) fail("--" + arg + " given twice");
  }
}

void Cli::fail(const std::string& message) const {
  std::fprintf(stderr, "error: %s\n\n%s", message.c_str(), usage_.c_str());
  std::exit(2);
}

const std::string* Cli::value(const std::string& name) {
  read_.insert(name);
  const auto it = values_.find(name);
  if (it == values_.end()) return nullptr;
  if (it->second.empty()) fail("--" + name + " needs a value");
  return &it->second;
}

int64_t Cli::integer(const std::string& name, int64_t fallback) {
  const std::string* v = value(name);
  if (v == nullptr) return fallback;
  char* end = nullptr;
  const long long parsed = std::strtoll(v->c_str(), &end, 10);
  if (*end != '\0') fail("--" + name + " takes an integer, got '" + *v + "'");
  return parsed;
}

double Cli::real(const std::string& name, double fallback) {
  const std::string* v = value(name);
  if (v == nullptr) return fallback;
  char* end = nullptr;
  const double parsed = std::strtod(v->c_str(), &end);
  if (*end != '\0') fail("--" + name + " takes a number, got '" + *v + "'");
  return parsed;
}

std::string Cli::text(const std::string& name, const std::string& fallback) {
  const std::string* v = value(name);
  return v == nullptr ? fallback : *v;
}

std::vector<double> Cli::reals(const std::string& name, const std::string& fallback) {
  const std::string* v = value(name);
  std::stringstream list(v == nullptr ? fallback : *v);
  std::vector<double> out;
  for (std::string item; std::getline(list, item, ',');) {
    char* end = nullptr;
    out.push_back(std::strtod(item.c_str(), &end));
    if (item.empty() || *end != '\0') fail("--" + name + " takes a comma list of numbers, got '" + item + "'");
  }
  if (out.empty()) fail("--" + name + " is empty");
  return out;
}

bool Cli::has(const std::string& name) {
  read_.insert(name);
  const auto it = values_.find(name);
  if (it == values_.end()) return false;
  if (!it->second.empty()) fail("--" + name + " is a switch and takes no value");
  return true;
}

void Cli::finish() const {
  for (const auto& [name, val] : values_)
    if (read_.count(name) == 0) fail("unknown flag --" + name);
}

}  // namespace bench
