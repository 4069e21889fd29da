#include "vmm/loader/pvh.hpp"

#include <stdexcept>

#include "vmm/x86/layout.hpp"

namespace nvhv {

uint64_t write_pvh_start_info(const GuestMemory& memory, const std::string& cmdline,
                              std::optional<InitrdPlacement> initrd, const std::vector<E820Entry>& extra_e820) {
  if (cmdline.size() >= layout::kCmdlineMax) throw std::invalid_argument("kernel command line is too long");
  memory.write(layout::kCmdline, std::span(reinterpret_cast<const uint8_t*>(cmdline.c_str()), cmdline.size() + 1));

  auto e820 = memory.e820();
  e820.insert(e820.end(), extra_e820.begin(), extra_e820.end());
  if (e820.size() > layout::kStartInfoMaxMemmap) throw std::logic_error("memory map too large");
  for (size_t i = 0; i < e820.size(); ++i)
    memory.write_object(layout::kStartInfoMemmap + i * sizeof(HvmMemmapEntry), HvmMemmapEntry{e820[i].addr, e820[i].size, e820[i].type, 0});

  HvmStartInfo info{};
  info.magic = kHvmStartMagic;
  info.version = 1;
  info.cmdline_paddr = layout::kCmdline;
  info.memmap_paddr = layout::kStartInfoMemmap;
  info.memmap_entries = static_cast<uint32_t>(e820.size());
  if (initrd) {
    memory.write_object(layout::kStartInfoModlist, HvmModlistEntry{initrd->paddr, initrd->size, 0, 0});
    info.nr_modules = 1;
    info.modlist_paddr = layout::kStartInfoModlist;
  }
  memory.write_object(layout::kStartInfo, info);
  return layout::kStartInfo;
}

}  // namespace nvhv
