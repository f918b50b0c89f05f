// kvstack: one command, with a subcommand for each job.
#include <cstdio>
#include <map>
#include <string>

#include <CLI/CLI.hpp>

#include "cli/commands.h"

int main(int argc, char** argv) {
  CLI::App app{
      "kvstack: the LLM inference KV cache as a first-class, managed resource.\n"
      "Run `kvstack <command> --help` for the options of each command."};
  app.require_subcommand(1);
  app.set_version_flag("--version", std::string("kvstack 0.1.0"));

  std::map<const CLI::App*, kvstack::cli::CommandRunner> runners;
  auto add = [&](kvstack::cli::CommandRunner runner) {
    runners.emplace(app.get_subcommands({}).back(), std::move(runner));
  };
  add(kvstack::cli::AddServeCommand(app));
  add(kvstack::cli::AddGenerateCommand(app));
  add(kvstack::cli::AddBenchCommand(app));
  add(kvstack::cli::AddGenModelCommand(app));
  add(kvstack::cli::AddSizeCommand(app));
  add(kvstack::cli::AddSimCommand(app));
  add(kvstack::cli::AddPlanCommand(app));
  add(kvstack::cli::AddRouterCommand(app));
  add(kvstack::cli::AddFleetCommand(app));

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    // --help and --version exit 0; every other parse error (an unknown
    // option, a value out of range or not in its set) is bad input, exit 2
    // as every command's help says, not CLI11's own codes (105, 109, ...).
    return app.exit(e) == 0 ? 0 : 2;
  }
  for (const CLI::App* sub : app.get_subcommands()) {
    auto it = runners.find(sub);
    if (it != runners.end()) return it->second();
  }
  std::fprintf(stderr, "kvstack: no command given; see kvstack --help\n");
  return 2;
}
