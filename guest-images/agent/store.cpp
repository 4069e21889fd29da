#include "guest-images/agent/store.hpp"

#include <algorithm>
#include <filesystem>
#include <fmt/core.h>

#include "guest-images/agent/files.hpp"

namespace nvhv::agent {

namespace {

const std::string kVersionText = fmt::format("nvhv-agent-store {}\n", Store::kVersion);

bool parse_gen(const std::string& name, std::uint64_t& gen) {
  if (name.empty() || name.size() > 18) return false;
  if (!std::all_of(name.begin(), name.end(), [](char ch) { return ch >= '0' && ch <= '9'; })) return false;
  gen = std::stoull(name);
  return true;
}

bool valid_id(const std::string& id) {
  return !id.empty() && id.size() <= 32 &&
         std::all_of(id.begin(), id.end(), [](char ch) { return std::isalnum(static_cast<unsigned char>(ch)); });
}

}  // namespace

Store::Store(std::string root) : root_(std::filesystem::absolute(root).lexically_normal().string()) {
  // Absolute: CRIU runs with "/" as its working directory and is handed paths inside the store.
  while (root_.size() > 1 && root_.back() == '/') root_.pop_back();
  std::string vpath = root_ + "/VERSION";
  if (!exists(vpath)) {
    // Only an empty (or new) directory becomes a store: refusing anything else keeps a typo in
    // --store from scattering files over an unrelated directory.
    if (!list_dir(root_).empty())
      throw StoreError(fmt::format("store {}: not empty and has no VERSION file; not an nvhv-agent store", root_));
    make_dir(root_ + "/procs");
    write_file_durable(vpath, kVersionText);
    return;
  }
  std::string v = read_file(vpath);
  if (v != kVersionText) {
    std::string shown = v.substr(0, 64);
    while (!shown.empty() && shown.back() == '\n') shown.pop_back();
    throw StoreError(fmt::format("store {}: VERSION is \"{}\" but this agent reads only \"nvhv-agent-store {}\"; "
                                 "refusing to touch it (move it away or use a matching agent)",
                                 root_, shown, kVersion));
  }
  make_dir(root_ + "/procs");
}

std::string Store::gen_dir(const std::string& id, std::uint64_t gen) const {
  return fmt::format("{}/ckpt/{}", proc_dir(id), gen);
}

std::vector<std::string> Store::proc_ids() const {
  std::vector<std::string> ids;
  for (auto& n : list_dir(root_ + "/procs"))
    if (valid_id(n)) ids.push_back(n);
  return ids;
}

std::string Store::add_proc(const ProcMeta& meta) {
  std::uint64_t n = 1;
  for (auto& id : proc_ids()) {
    std::uint64_t k;
    if (id.size() > 1 && id[0] == 'p' && parse_gen(id.substr(1), k)) n = std::max(n, k + 1);
  }
  std::string id = fmt::format("p{}", n);
  make_dir(proc_dir(id) + "/ckpt");
  nlohmann::json j = {{"argv", meta.argv}, {"interval_ms", meta.interval_ms}};
  write_file_durable(proc_dir(id) + "/meta.json", j.dump() + "\n");
  fsync_path(root_ + "/procs");
  return id;
}

ProcMeta Store::read_meta(const std::string& id) const {
  std::string path = proc_dir(id) + "/meta.json";
  try {
    auto j = nlohmann::json::parse(read_file(path));
    ProcMeta m;
    m.argv = j.at("argv").get<std::vector<std::string>>();
    m.interval_ms = j.at("interval_ms").get<std::uint32_t>();
    if (m.argv.empty()) throw StoreError("empty argv");
    return m;
  } catch (const std::exception& e) {
    throw StoreError(fmt::format("{}: unreadable: {}", path, e.what()));
  }
}

void Store::remove_proc(const std::string& id) {
  if (!valid_id(id)) return;
  remove_tree(proc_dir(id));
  fsync_path(root_ + "/procs");
}

nlohmann::json to_json(const Commit& c) {
  return {{"gen", c.gen},         {"chain", c.chain},           {"checksums", c.checksums},
          {"pid", c.pid},         {"started_ms", c.started_ms}, {"finished_ms", c.finished_ms},
          {"stats", c.stats}};
}

Commit commit_from_json(const nlohmann::json& j) {
  try {
    Commit c;
    c.gen = j.at("gen").get<std::uint64_t>();
    c.chain = j.at("chain").get<std::vector<std::uint64_t>>();
    c.checksums = j.at("checksums").get<std::vector<std::string>>();
    c.pid = j.at("pid").get<int>();
    c.started_ms = j.at("started_ms").get<std::uint64_t>();
    c.finished_ms = j.at("finished_ms").get<std::uint64_t>();
    c.stats = j.value("stats", nlohmann::json::object());
    if (c.chain.empty() || c.chain.back() != c.gen || c.checksums.size() != c.chain.size() || c.pid <= 0)
      throw StoreError("inconsistent chain, checksums or pid");
    return c;
  } catch (const StoreError&) {
    throw;
  } catch (const std::exception& e) {
    throw StoreError(e.what());
  }
}

std::optional<Commit> Store::read_commit(const std::string& id) const {
  std::string path = proc_dir(id) + "/COMMITTED";
  if (!exists(path)) return std::nullopt;
  try {
    return commit_from_json(nlohmann::json::parse(read_file(path)));
  } catch (const std::exception& e) {
    throw StoreError(fmt::format("{}: malformed commit record: {}", path, e.what()));
  }
}

std::uint64_t Store::next_gen(const std::string& id) const {
  std::uint64_t next = 1;
  for (auto& n : list_dir(proc_dir(id) + "/ckpt")) {
    std::uint64_t g;
    if (parse_gen(n, g)) next = std::max(next, g + 1);
  }
  if (auto c = read_commit(id)) next = std::max(next, c->gen + 1);
  return next;
}

void Store::commit(const std::string& id, Commit& c) {
  if (c.chain.empty() || c.chain.back() != c.gen) throw StoreError("commit: chain must end with gen");
  std::string dir = gen_dir(id, c.gen);
  // Durable images first, then the record: the record must never name data that could still be
  // lost, and the checksum is taken over exactly what was made durable.
  fsync_tree(dir);
  fsync_path(proc_dir(id) + "/ckpt");
  c.checksums.resize(c.chain.size());
  c.checksums.back() = checksum_tree(dir);
  c.finished_ms = now_ms();
  write_file_durable(proc_dir(id) + "/COMMITTED", to_json(c).dump() + "\n");
  prune(id, c.chain);
}

void Store::discard_uncommitted(const std::string& id) {
  auto c = read_commit(id);
  prune(id, c ? c->chain : std::vector<std::uint64_t>{});
}

void Store::prune(const std::string& id, const std::vector<std::uint64_t>& keep) {
  std::string ck = proc_dir(id) + "/ckpt";
  bool removed = false;
  for (auto& n : list_dir(ck)) {
    std::uint64_t g;
    if (parse_gen(n, g) && std::find(keep.begin(), keep.end(), g) != keep.end()) continue;
    remove_tree(ck + "/" + n);
    removed = true;
  }
  if (removed) fsync_path(ck);
}

void Store::verify(const std::string& id, const Commit& c) const {
  for (size_t i = 0; i < c.chain.size(); ++i) {
    std::string dir = gen_dir(id, c.chain[i]);
    if (!exists(dir)) throw StoreError(fmt::format("{}: generation {} of the committed chain is missing", id, c.chain[i]));
    std::string sum = checksum_tree(dir);
    if (sum != c.checksums[i])
      throw StoreError(fmt::format("{}: generation {} fails its checksum ({} recorded, {} now); not restoring it",
                                   id, c.chain[i], c.checksums[i], sum));
  }
}

}  // namespace nvhv::agent
