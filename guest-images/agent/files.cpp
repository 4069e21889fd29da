#include "guest-images/agent/files.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#define XXH_INLINE_ALL  // header-only: the agent is linked statically
#include <xxhash.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fmt/core.h>

#include "vmm/base/error.hpp"
#include "vmm/base/unique_fd.hpp"

namespace nvhv::agent {

std::string read_file(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw_errno("open " + path);
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("read " + path);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

static void write_all(int fd, const std::string& data, const std::string& what) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("write " + what);
    }
    off += static_cast<size_t>(n);
  }
}

void fsync_path(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) throw_errno("open " + path);
  if (::fsync(fd.get()) != 0) throw_errno("fsync " + path);
}

void write_file_durable(const std::string& path, const std::string& data) {
  std::string tmp = path + ".tmp";
  {
    UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
    if (!fd) throw_errno("create " + tmp);
    write_all(fd.get(), data, tmp);
    if (::fsync(fd.get()) != 0) throw_errno("fsync " + tmp);
  }
  if (::rename(tmp.c_str(), path.c_str()) != 0) throw_errno("rename " + tmp);
  fsync_path(std::filesystem::path(path).parent_path().string());
}

void make_dir(const std::string& path) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) throw SystemError(ec.value(), "mkdir " + path);
}

void remove_tree(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
  if (ec) throw SystemError(ec.value(), "remove " + path);
}

bool exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

std::vector<std::string> list_dir(const std::string& path) {
  std::vector<std::string> names;
  DIR* d = ::opendir(path.c_str());
  if (!d) return names;
  while (dirent* e = ::readdir(d)) {
    std::string n = e->d_name;
    if (n != "." && n != "..") names.push_back(n);
  }
  ::closedir(d);
  std::sort(names.begin(), names.end());
  return names;
}

void fsync_tree(const std::string& dir) {
  for (const auto& name : list_dir(dir)) {
    std::string p = dir + "/" + name;
    struct stat st;
    if (::lstat(p.c_str(), &st) != 0) throw_errno("stat " + p);
    if (S_ISDIR(st.st_mode)) fsync_tree(p);
    else if (S_ISREG(st.st_mode)) fsync_path(p);
  }
  fsync_path(dir);
}

static void hash_tree(XXH3_state_t* st, const std::string& root, const std::string& rel) {
  std::string dir = rel.empty() ? root : root + "/" + rel;
  for (const auto& name : list_dir(dir)) {
    std::string r = rel.empty() ? name : rel + "/" + name;
    std::string p = root + "/" + r;
    struct stat sb;
    if (::lstat(p.c_str(), &sb) != 0) throw_errno("stat " + p);
    if (S_ISDIR(sb.st_mode)) {
      hash_tree(st, root, r);
      continue;
    }
    std::string header = fmt::format("{}\n{}\n", r, static_cast<long long>(sb.st_size));
    XXH3_64bits_update(st, header.data(), header.size());
    if (S_ISLNK(sb.st_mode)) {
      std::string target = std::filesystem::read_symlink(p).string();
      XXH3_64bits_update(st, target.data(), target.size());
    } else if (S_ISREG(sb.st_mode)) {
      std::string data = read_file(p);
      XXH3_64bits_update(st, data.data(), data.size());
    }
  }
}

std::string checksum_tree(const std::string& dir) {
  XXH3_state_t* st = XXH3_createState();
  XXH3_64bits_reset(st);
  try {
    hash_tree(st, dir, "");
  } catch (...) {
    XXH3_freeState(st);
    throw;
  }
  auto h = XXH3_64bits_digest(st);
  XXH3_freeState(st);
  return fmt::format("{:016x}", static_cast<unsigned long long>(h));
}

std::string tail_lines(const std::string& path, int max_lines) {
  std::string text;
  try {
    text = read_file(path);
  } catch (const std::exception&) {
    return "";
  }
  while (!text.empty() && text.back() == '\n') text.pop_back();
  size_t pos = text.size();
  for (int i = 0; i < max_lines && pos > 0; ++i) {
    size_t nl = text.rfind('\n', pos - 1);
    if (nl == std::string::npos) return text;
    pos = nl;
    if (i + 1 == max_lines) return text.substr(pos + 1);
  }
  return text.substr(pos == 0 ? 0 : pos + 1);
}

std::uint64_t now_ms() {
  using namespace std::chrono;
  return static_cast<std::uint64_t>(duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count());
}

}  // namespace nvhv::agent
