// libFuzzer target: the state decoders on arbitrary bytes. Besides "no crash, only DecodeError",
// checks that whatever decodes re-encodes to something that decodes to the same encoding.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "persistence/machine_state.hpp"

namespace {

using namespace nvhv::persistence;

#define CHECK(cond)                                                                \
  do {                                                                             \
    if (!(cond)) {                                                                 \
      std::fprintf(stderr, "invariant failed: %s (line %d)\n", #cond, __LINE__); \
      std::abort();                                                                \
    }                                                                              \
  } while (0)

template <typename State, typename Decode>
void check(std::span<const uint8_t> input, Decode decode) {
  State s;
  try {
    s = decode(input);
  } catch (const DecodeError&) {
    return;
  }
  std::vector<uint8_t> once;
  {
    Encoder e(once);
    encode(e, s);
  }
  const State again = decode(once);
  std::vector<uint8_t> twice;
  {
    Encoder e(twice);
    encode(e, again);
  }
  CHECK(once == twice);
}

// A device decoding its own records, the way a Snapshottable's restore() would.
void device_like(std::span<const uint8_t> input) {
  try {
    Decoder d(input, "device fuzz");
    RecordReader r(d);
    if (r.has(1)) {
      Decoder regs = r.one(1, "regs", 2);
      regs.u32("ier");
      regs.boolean("enabled");
      regs.str("name");
      regs.expect_end();
    }
    for (Decoder& q : r.all(2, "queue", 1)) {
      q.blob("ring");
      q.u64("index");
    }
  } catch (const DecodeError&) {
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::span<const uint8_t> input(data, size);
  check<MachineState>(input, [](auto b) { return decode_machine_state(b); });
  check<VcpuState>(input, [](auto b) { return decode_vcpu_state(b); });
  check<VmState>(input, [](auto b) { return decode_vm_state(b); });
  check<DeviceState>(input, [](auto b) { return decode_device_state(b); });
  device_like(input);
  return 0;
}
