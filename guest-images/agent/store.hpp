#pragma once
// The persistence store: a directory (meant to be on a DAX-mounted file system on the guest's
// /dev/pmem0) that outlives the guest's RAM. Layout (docs/agent.md):
//
//   STORE/VERSION                     "nvhv-agent-store 1"
//   STORE/procs/<id>/meta.json        argv and interval_ms, written once at registration
//   STORE/procs/<id>/ckpt/<gen>/      CRIU images of one checkpoint (incremental ones have a
//                                     "parent" symlink to the previous generation)
//   STORE/procs/<id>/COMMITTED        JSON naming the last complete generation, the chain of
//                                     generations it needs and a checksum of each
//   STORE/procs/<id>/instance.json    pid and boot of the running instance (not a commit)
//
// COMMITTED is only ever replaced atomically, after the generation's images were fsync'd, so a
// checkpoint torn by a crash is a generation newer than COMMITTED names, which is ignored and
// deleted. A restore re-checks the checksums and refuses images that changed since.
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace nvhv::agent {

class StoreError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct ProcMeta {
  std::vector<std::string> argv;
  std::uint32_t interval_ms = 0;
};

struct Commit {
  std::uint64_t gen = 0;
  std::vector<std::uint64_t> chain;     // oldest (a full dump) first; ends with gen
  std::vector<std::string> checksums;   // one per chain entry
  int pid = 0;                          // the root pid the images hold (CRIU restores it as is)
  std::uint64_t started_ms = 0;         // when the dump began (the process froze right after)
  std::uint64_t finished_ms = 0;        // when the commit record was written
  nlohmann::json stats = nlohmann::json::object();  // CRIU's figures for this dump
};

class Store {
 public:
  static constexpr int kVersion = 1;
  // Opens (creating when `root` is missing or empty) and checks VERSION; StoreError otherwise.
  explicit Store(std::string root);

  const std::string& root() const { return root_; }
  std::string proc_dir(const std::string& id) const { return root_ + "/procs/" + id; }
  std::string gen_dir(const std::string& id, std::uint64_t gen) const;

  std::vector<std::string> proc_ids() const;
  // Registers a new process: picks a fresh id ("p1", "p2", ...) and writes meta.json durably.
  std::string add_proc(const ProcMeta& meta);
  ProcMeta read_meta(const std::string& id) const;
  void remove_proc(const std::string& id);

  // The commit record, or nullopt before the first commit. StoreError when unreadable.
  std::optional<Commit> read_commit(const std::string& id) const;
  // A fresh generation number: above every existing directory and the committed one.
  std::uint64_t next_gen(const std::string& id) const;
  // Makes generation `c.gen` durable, writes COMMITTED naming it, then prunes every generation
  // not in `c.chain` (older chains and torn leftovers). Fills c.checksums[last] itself.
  void commit(const std::string& id, Commit& c);
  // Deletes generations not in the committed chain (torn checkpoints of a crashed agent).
  void discard_uncommitted(const std::string& id);
  // Recomputes the chain's checksums; StoreError naming the first generation that differs.
  void verify(const std::string& id, const Commit& c) const;

 private:
  void prune(const std::string& id, const std::vector<std::uint64_t>& keep);
  std::string root_;
};

nlohmann::json to_json(const Commit& c);
Commit commit_from_json(const nlohmann::json& j);  // StoreError on a malformed record

}  // namespace nvhv::agent
