// `kvstack serve`'s access and tenant-label options: client keys, the admin
// key, --public-metrics, the tenant label secret, operator names for tenants
// and the cap on metric labels. Keys are best given in files (a command
// line shows in `ps`); files are read here, at the edge, into ServerOptions.
#pragma once

#include <string>

#include <CLI/CLI.hpp>

#include "kvstack/server.h"
#include "kvstack/status.h"

namespace kvstack::cli {

// The files named on the command line, read by ReadAccessFiles.
struct AccessFiles {
  std::string api_keys;          // --api-keys-file: one key a line
  std::string admin_key;         // --admin-key-file
  std::string tenant_label_key;  // --tenant-label-key-file
  std::string tenant_names;      // --tenant-names
};

// Adds the options to `cmd` (group "Access and tenants"), bound to `o` and `files`.
void AddAccessOptions(CLI::App* cmd, ServerOptions& o, AccessFiles& files);

// Reads the files into `o`. InvalidArgument names the flag and the file (and
// line); no message quotes a key or a hash. A secret file's trailing newline
// and spaces are dropped.
Status ReadAccessFiles(const AccessFiles& files, ServerOptions& o);

}  // namespace kvstack::cli
