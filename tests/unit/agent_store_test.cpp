// The agent's persistence store: commit records, torn generations, version checks, checksums.
#include <gtest/gtest.h>

#include <fstream>

#include "guest-images/agent/criu.hpp"
#include "guest-images/agent/files.hpp"
#include "guest-images/agent/methods.hpp"
#include "guest-images/agent/store.hpp"
#include "tests/support/child_process.hpp"

namespace nvhv::agent {
namespace {

void put(const std::string& path, const std::string& data) {
  std::ofstream(path) << data;
}

// A fake "CRIU image" generation: files with content, as the worker would leave them.
void write_gen(Store& s, const std::string& id, std::uint64_t gen, const std::string& content) {
  make_dir(s.gen_dir(id, gen));
  put(s.gen_dir(id, gen) + "/pages-1.img", content);
  put(s.gen_dir(id, gen) + "/inventory.img", "inv");
}

Commit commit_gen(Store& s, const std::string& id, std::uint64_t gen, const std::optional<Commit>& prev) {
  Commit c;
  c.gen = gen;
  c.pid = 1234;
  c.started_ms = now_ms();
  if (prev) {
    c.chain = prev->chain;
    c.checksums = prev->checksums;
  }
  c.chain.push_back(gen);
  s.commit(id, c);
  return c;
}

TEST(AgentStore, CreatesVersionedLayoutAndRegistersProcesses) {
  test::TempDir t;
  Store s(t.file("store"));
  EXPECT_EQ(read_file(t.file("store/VERSION")), "nvhv-agent-store 1\n");
  auto id = s.add_proc({{"/bin/counter", "-x"}, 100});
  EXPECT_EQ(id, "p1");
  EXPECT_EQ(s.add_proc({{"/bin/true"}, 50}), "p2");
  auto m = s.read_meta(id);
  EXPECT_EQ(m.argv, (std::vector<std::string>{"/bin/counter", "-x"}));
  EXPECT_EQ(m.interval_ms, 100u);
  EXPECT_EQ(s.proc_ids(), (std::vector<std::string>{"p1", "p2"}));
  EXPECT_FALSE(s.read_commit(id));
  s.remove_proc("p2");
  EXPECT_EQ(s.proc_ids(), (std::vector<std::string>{"p1"}));
  Store again(t.file("store"));  // reopening an existing store works
  EXPECT_EQ(again.proc_ids(), (std::vector<std::string>{"p1"}));
}

TEST(AgentStore, VersionMismatchIsRefusedWithAClearMessage) {
  test::TempDir t;
  make_dir(t.file("store"));
  put(t.file("store/VERSION"), "nvhv-agent-store 2\n");
  try {
    Store s(t.file("store"));
    FAIL() << "opened a store of another version";
  } catch (const StoreError& e) {
    EXPECT_NE(std::string(e.what()).find("VERSION is \"nvhv-agent-store 2\""), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("reads only \"nvhv-agent-store 1\""), std::string::npos) << e.what();
  }
}

TEST(AgentStore, RefusesANonEmptyDirectoryWithoutVersion) {
  test::TempDir t;
  make_dir(t.file("store"));
  put(t.file("store/unrelated"), "x");
  EXPECT_THROW(Store s(t.file("store")), StoreError);
}

TEST(AgentStore, CommitNamesTheGenerationAndKeepsTheChain) {
  test::TempDir t;
  Store s(t.file("store"));
  auto id = s.add_proc({{"/bin/x"}, 100});
  EXPECT_EQ(s.next_gen(id), 1u);
  write_gen(s, id, 1, "full");
  auto c1 = commit_gen(s, id, 1, std::nullopt);
  write_gen(s, id, 2, "incr");
  auto c2 = commit_gen(s, id, 2, c1);
  auto rc = s.read_commit(id);
  ASSERT_TRUE(rc);
  EXPECT_EQ(rc->gen, 2u);
  EXPECT_EQ(rc->chain, (std::vector<std::uint64_t>{1, 2}));
  EXPECT_EQ(rc->checksums.size(), 2u);
  EXPECT_EQ(rc->checksums[0], c1.checksums[0]);
  EXPECT_NO_THROW(s.verify(id, *rc));
  EXPECT_TRUE(exists(s.gen_dir(id, 1)));  // needed by gen 2's --prev-images-dir chain
  EXPECT_EQ(s.next_gen(id), 3u);
  // A new full dump starts a new chain: the old one is pruned once it is committed.
  write_gen(s, id, 3, "full again");
  commit_gen(s, id, 3, std::nullopt);
  EXPECT_FALSE(exists(s.gen_dir(id, 1)));
  EXPECT_FALSE(exists(s.gen_dir(id, 2)));
  EXPECT_EQ(s.read_commit(id)->chain, (std::vector<std::uint64_t>{3}));
}

TEST(AgentStore, TornGenerationIsIgnoredAndDiscarded) {
  test::TempDir t;
  Store s(t.file("store"));
  auto id = s.add_proc({{"/bin/x"}, 100});
  write_gen(s, id, 1, "full");
  commit_gen(s, id, 1, std::nullopt);
  // A crash mid-checkpoint: images of gen 2 half written, no commit; a commit record's temp
  // file left behind too.
  write_gen(s, id, 2, "torn");
  put(s.proc_dir(id) + "/COMMITTED.tmp", "{\"gen\": 2, trunc");
  Store reopened(t.file("store"));
  auto c = reopened.read_commit(id);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->gen, 1u);
  EXPECT_EQ(reopened.next_gen(id), 3u);  // never reuses the torn number
  reopened.discard_uncommitted(id);
  EXPECT_FALSE(exists(s.gen_dir(id, 2)));
  EXPECT_TRUE(exists(s.gen_dir(id, 1)));
  EXPECT_NO_THROW(reopened.verify(id, *c));
}

TEST(AgentStore, ChangedImagesFailVerification) {
  test::TempDir t;
  Store s(t.file("store"));
  auto id = s.add_proc({{"/bin/x"}, 100});
  write_gen(s, id, 1, "full");
  auto c = commit_gen(s, id, 1, std::nullopt);
  put(s.gen_dir(id, 1) + "/pages-1.img", "fulL");
  try {
    s.verify(id, c);
    FAIL() << "verified changed images";
  } catch (const StoreError& e) {
    EXPECT_NE(std::string(e.what()).find("generation 1 fails its checksum"), std::string::npos) << e.what();
  }
  remove_tree(s.gen_dir(id, 1));
  EXPECT_THROW(s.verify(id, c), StoreError);
}

TEST(AgentStore, MalformedCommitRecordIsAnError) {
  test::TempDir t;
  Store s(t.file("store"));
  auto id = s.add_proc({{"/bin/x"}, 100});
  put(s.proc_dir(id) + "/COMMITTED", "{\"gen\": 2, \"chain\": [1], \"checksums\": [\"x\"], \"pid\": 5, "
                                      "\"started_ms\": 1, \"finished_ms\": 2}");
  EXPECT_THROW(s.read_commit(id), StoreError);  // chain does not end with gen
}

TEST(AgentCriu, ParsesDisplayStats) {
  auto j = parse_stats(
      "Displaying dump stats:\nFreezing time: 49450 us\nFrozen time: 502370 us\nMemory dump time: 39856 us\n"
      "Memory write time: 8105 us\nIRMAP resolve time: 0 us\nMemory pages scanned: 751 (0x2ef)\n"
      "Memory pages skipped from parent: 20 (0x14)\nMemory pages written: 21 (0x15)\nLazy memory pages: 0 (0x0)\n");
  EXPECT_EQ(j["frozen_us"], 502370);
  EXPECT_EQ(j["freezing_us"], 49450);
  EXPECT_EQ(j["pages_scanned"], 751);
  EXPECT_EQ(j["pages_skipped_parent"], 20);
  EXPECT_EQ(j["pages_written"], 21);
  EXPECT_FALSE(j.contains("IRMAP resolve time"));
}

TEST(AgentParams, ArgvIsCheckedElementByElement) {
  using nlohmann::json;
  EXPECT_EQ(parse_argv(json::array({"a", "b"})), (std::vector<std::string>{"a", "b"}));
  auto msg = [](const json& v) {
    try {
      parse_argv(v);
    } catch (const api::RpcError& e) {
      EXPECT_EQ(e.code(), api::code::invalid_params);
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_EQ(msg(json::array()), "'argv' must be a non-empty array of strings");
  EXPECT_EQ(msg("a"), "'argv' must be a non-empty array of strings");
  EXPECT_EQ(msg(json::array({"a", 3})), "'argv[1]' must be a string, got number");
  EXPECT_EQ(msg(json::array({""})), "'argv[0]' must not be empty");
}

}  // namespace
}  // namespace nvhv::agent
