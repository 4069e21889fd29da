#pragma once
// Small file-system helpers for the agent's store. Everything that must survive a crash goes
// through write_file_durable(): tmp + fsync + rename + fsync(dir), so a reader sees either the
// old contents or the new, never a mix.
#include <cstdint>
#include <string>
#include <vector>

namespace nvhv::agent {

// Whole file; throws SystemError naming the path.
std::string read_file(const std::string& path);
// Atomically replaces `path` with `data` and makes the replacement durable.
void write_file_durable(const std::string& path, const std::string& data);
void fsync_path(const std::string& path);  // a file or a directory
void make_dir(const std::string& path);     // mkdir -p
void remove_tree(const std::string& path);  // rm -rf; missing is fine
bool exists(const std::string& path);
// Names in a directory (no "." or ".."), sorted; empty when it does not exist.
std::vector<std::string> list_dir(const std::string& path);
// fsyncs every regular file under `dir` (recursively) and the directories themselves, so images
// written by CRIU (which does not fsync) are durable before the commit record names them.
void fsync_tree(const std::string& dir);
// XXH3-64 over the relative names, sizes and contents of every regular file under `dir`,
// in sorted order; symlinks contribute their target. Hex string.
std::string checksum_tree(const std::string& dir);
// Last `max_lines` lines of a text file ("" when unreadable), for error messages.
std::string tail_lines(const std::string& path, int max_lines);
std::uint64_t now_ms();  // wall clock, ms since the epoch

}  // namespace nvhv::agent
