#include "vmm/loader/elf_loader.hpp"

#include <elf.h>
#include <fmt/core.h>

#include <cstring>
#include <fstream>
#include <stdexcept>

#include "vmm/x86/layout.hpp"

namespace nvhv {
namespace {

constexpr uint32_t kXenElfnotePhys32Entry = 18;

[[noreturn]] void bad(const std::string& what) { throw std::runtime_error("ELF image: " + what); }

// True when [off, off+len) lies inside a buffer of `size` bytes, without overflow.
bool within(uint64_t off, uint64_t len, uint64_t size) { return off <= size && len <= size - off; }

template <typename T>
T read_at(std::span<const uint8_t> image, uint64_t off, const char* what) {
  if (!within(off, sizeof(T), image.size())) bad(fmt::format("{} at offset {:#x} is past the end of the file", what, off));
  T v;
  std::memcpy(&v, image.data() + off, sizeof v);
  return v;
}

std::optional<uint32_t> find_pvh_entry(std::span<const uint8_t> image, const Elf64_Phdr& ph) {
  if (!within(ph.p_offset, ph.p_filesz, image.size())) bad("PT_NOTE segment is past the end of the file");
  uint64_t off = ph.p_offset, end = ph.p_offset + ph.p_filesz;
  while (end - off >= sizeof(Elf64_Nhdr)) {
    auto nh = read_at<Elf64_Nhdr>(image, off, "note header");
    uint64_t name_off = off + sizeof nh;
    uint64_t desc_off = name_off + ((static_cast<uint64_t>(nh.n_namesz) + 3) & ~3ull);
    uint64_t next = desc_off + ((static_cast<uint64_t>(nh.n_descsz) + 3) & ~3ull);
    if (next > end) bad("note runs past its segment");
    if (nh.n_type == kXenElfnotePhys32Entry && nh.n_namesz == 4 && std::memcmp(image.data() + name_off, "Xen", 4) == 0 &&
        nh.n_descsz >= 4)
      return read_at<uint32_t>(image, desc_off, "PVH entry note");
    off = next;
  }
  return std::nullopt;
}

}  // namespace

bool looks_like_elf(std::span<const uint8_t> image) {
  return image.size() >= SELFMAG && std::memcmp(image.data(), ELFMAG, SELFMAG) == 0;
}

LoadedElf load_elf(std::span<const uint8_t> image, const GuestMemory& memory) {
  auto eh = read_at<Elf64_Ehdr>(image, 0, "ELF header");
  if (!looks_like_elf(image)) bad("no ELF magic");
  if (eh.e_ident[EI_CLASS] != ELFCLASS64) bad("not a 64-bit ELF file");
  if (eh.e_ident[EI_DATA] != ELFDATA2LSB) bad("not little-endian");
  if (eh.e_machine != EM_X86_64) bad(fmt::format("machine {} is not x86-64", eh.e_machine));
  if (eh.e_type != ET_EXEC) bad("not an executable (ET_EXEC)");
  if (eh.e_phentsize != sizeof(Elf64_Phdr)) bad("unexpected program header size");
  if (eh.e_phnum == 0 || eh.e_phnum > 64) bad(fmt::format("{} program headers (1..64 supported)", eh.e_phnum));

  LoadedElf out{eh.e_entry, std::nullopt, UINT64_MAX, 0};
  for (uint16_t i = 0; i < eh.e_phnum; ++i) {
    auto ph = read_at<Elf64_Phdr>(image, eh.e_phoff + uint64_t{i} * sizeof(Elf64_Phdr), "program header");
    if (ph.p_type == PT_NOTE && !out.pvh_entry32) out.pvh_entry32 = find_pvh_entry(image, ph);
    if (ph.p_type != PT_LOAD || ph.p_memsz == 0) continue;
    if (ph.p_filesz > ph.p_memsz) bad(fmt::format("segment {} has filesz > memsz", i));
    if (!within(ph.p_offset, ph.p_filesz, image.size())) bad(fmt::format("segment {} is past the end of the file", i));
    uint8_t* dst = memory.host_range(ph.p_paddr, ph.p_memsz);
    if (!dst) bad(fmt::format("segment {} at {:#x}+{:#x} does not fit in guest RAM", i, ph.p_paddr, ph.p_memsz));
    if (ph.p_paddr < layout::kHighMemory) bad(fmt::format("segment {} at {:#x} overlaps the low boot area", i, ph.p_paddr));
    std::memcpy(dst, image.data() + ph.p_offset, ph.p_filesz);
    std::memset(dst + ph.p_filesz, 0, ph.p_memsz - ph.p_filesz);
    out.lowest = std::min(out.lowest, ph.p_paddr);
    out.highest = std::max(out.highest, ph.p_paddr + ph.p_memsz);
  }
  if (out.highest == 0) bad("no loadable segment");
  if (!memory.host_range(out.entry64, 1)) bad(fmt::format("entry point {:#x} is outside guest RAM", out.entry64));
  return out;
}

std::vector<uint8_t> read_file(const std::filesystem::path& path, uint64_t max_bytes) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(fmt::format("{}: cannot open: {}", path.string(), std::strerror(errno)));
  in.seekg(0, std::ios::end);
  auto size = static_cast<uint64_t>(in.tellg());
  if (size > max_bytes) throw std::runtime_error(fmt::format("{}: {} bytes is larger than guest RAM allows", path.string(), size));
  in.seekg(0);
  std::vector<uint8_t> data(size);
  if (!in.read(reinterpret_cast<char*>(data.data()), static_cast<std::streamsize>(size)))
    throw std::runtime_error(fmt::format("{}: read failed", path.string()));
  return data;
}

LoadedElf load_elf_file(const std::filesystem::path& path, const GuestMemory& memory) {
  auto image = read_file(path, memory.size());
  try {
    return load_elf(image, memory);
  } catch (const std::runtime_error& e) {
    throw std::runtime_error(path.string() + ": " + e.what());
  }
}

}  // namespace nvhv
