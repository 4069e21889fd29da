// Test driver for the swap engine's command-line entry points, until `nvhv` has the swap-out
// subcommand and `run --swap-in` (it calls the very same functions):
//   nvhv_swap_driver swap-out <guest.json> <file> [--force]
//   nvhv_swap_driver swap-in <guest.json> <file> [--force]
//   nvhv_swap_driver status <guest.json> <file>     one line: image=<...> swap=<...>
#include <cstring>
#include <iostream>
#include <string>

#include "persistence/image.hpp"
#include "persistence/swap.hpp"
#include "vmm/config.hpp"
#include "vmm/swap_commands.hpp"

namespace {

// What the backing and the swap file hold, read without changing either.
std::string status(const nvhv::GuestConfig& cfg, const std::string& file) {
  using namespace nvhv::persistence;
  std::string image = "absent";
  const std::string path = cfg.memory.backing->string();
  try {
    Backing b = Backing::open(path, 0, false);
    const ImageProbe p = probe_image(b.data(), b.size());
    static const char* kinds[] = {"blank", "unfinished", "image", "foreign"};
    static const char* states[] = {"in_use", "outgoing", "released", "incoming"};
    image = std::string(kinds[p.kind]) + "/" + (p.swap.state < 4 ? states[p.swap.state] : "unknown");
    if (p.kind == ImageProbe::image) {
      try {
        Image img = Image::open(b, cfg.identity(), cfg.memory_bytes(), cfg.vcpus, Image::Options{false, true});
        image += img.status() == ImageStatus::resumable ? "/resumable" : "/no_checkpoint";
      } catch (const std::exception&) {
        image += "/unreadable";
      }
    }
  } catch (const std::exception& e) {
    if (std::strstr(e.what(), "No such file") == nullptr) image = "unopenable";
  }
  std::string swap;
  try {
    SwapFile f = SwapFile::open(file, SwapFile::Mode::read);
    swap = f.consumed().at_ns ? "valid/consumed" : "valid/live";
  } catch (const SwapError& e) {
    swap = std::strstr(e.what(), "does not exist") ? "absent" : "invalid";
  }
  return "image=" + image + " swap=" + swap;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::cerr << "usage: " << argv[0] << " swap-out|swap-in|status <guest.json> <file> [--force]\n";
    return 2;
  }
  const std::string cmd = argv[1];
  nvhv::SwapCommandOptions options;
  options.show_progress = false;
  for (int i = 4; i < argc; ++i)
    if (std::strcmp(argv[i], "--force") == 0) options.force = true;
  try {
    const nvhv::GuestConfig cfg = nvhv::load_config(argv[2], 254);
    if (cmd == "swap-out") return nvhv::swap_out_offline(cfg, argv[3], options);
    if (cmd == "swap-in") return nvhv::swap_in(cfg, argv[3], options);
    if (cmd == "status") {
      std::cout << status(cfg, argv[3]) << std::endl;
      return 0;
    }
  } catch (const std::exception& e) {
    std::cerr << e.what() << "\n";
    return 2;
  }
  std::cerr << "unknown command " << cmd << "\n";
  return 2;
}
