// The per-repository validator command: the pushed tree is checked out in a temporary folder and a
// program decides (exit 0 accepts). No shell is involved: the command is an argument vector.
#pragma once

#include "fleetconf/gitconf/repo.hpp"

#include <chrono>
#include <string>
#include <vector>

namespace fleetconf::gitconf {

struct ValidatorRun {
    std::vector<std::string> argv;                         // argv[0] an absolute path
    std::chrono::milliseconds timeout{10000};              // then the process group is killed and the push refused
    std::filesystem::path scratch;                         // where the temporary checkout goes (default: the system's temp folder)
    std::vector<std::pair<std::string, std::string>> env;  // added to a minimal environment (PATH, HOME=/nonexistent)
};

// Checks `commit` out into a fresh temporary folder, runs the validator there, removes the folder.
// Returns "" when it exits 0, else a one-line reason: the first line it printed (stdout and stderr, at
// most 200 bytes), "validator exited with status N", or "validator timed out after N s".
std::string run_validator(Repository& repo, const Oid& commit, const ValidatorRun& run);

}  // namespace fleetconf::gitconf
