#include "vmm/x86/mptable.hpp"

#include <cstring>
#include <stdexcept>
#include <vector>

#include "vmm/x86/layout.hpp"

namespace nvhv::x86 {
namespace {

#pragma pack(push, 1)
struct FloatingPointer {
  char signature[4];
  uint32_t config_table;
  uint8_t length_paragraphs;
  uint8_t spec_revision;
  uint8_t checksum;
  uint8_t features[5];
};
struct ConfigHeader {
  char signature[4];
  uint16_t base_length;
  uint8_t spec_revision;
  uint8_t checksum;
  char oem_id[8];
  char product_id[12];
  uint32_t oem_table;
  uint16_t oem_table_size;
  uint16_t entry_count;
  uint32_t lapic_address;
  uint16_t extended_length;
  uint8_t extended_checksum;
  uint8_t reserved;
};
struct ProcessorEntry {
  uint8_t type;  // 0
  uint8_t apic_id;
  uint8_t apic_version;
  uint8_t flags;  // 1 enabled, 2 bootstrap processor
  uint32_t signature;
  uint32_t feature_flags;
  uint32_t reserved[2];
};
struct BusEntry {
  uint8_t type;  // 1
  uint8_t bus_id;
  char bus_type[6];
};
struct IoapicEntry {
  uint8_t type;  // 2
  uint8_t apic_id;
  uint8_t version;
  uint8_t flags;
  uint32_t address;
};
struct InterruptEntry {
  uint8_t type;  // 3 I/O interrupt, 4 local interrupt
  uint8_t interrupt_type;  // 0 INT, 1 NMI, 3 ExtINT
  uint16_t flags;
  uint8_t source_bus;
  uint8_t source_irq;
  uint8_t dest_apic;
  uint8_t dest_pin;
};
#pragma pack(pop)
static_assert(sizeof(FloatingPointer) == 16 && sizeof(ConfigHeader) == 44 && sizeof(ProcessorEntry) == 20);

uint8_t checksum(const uint8_t* p, size_t n) {
  uint8_t sum = 0;
  for (size_t i = 0; i < n; ++i) sum = static_cast<uint8_t>(sum + p[i]);
  return static_cast<uint8_t>(-sum);
}

template <typename T>
void append(std::vector<uint8_t>& out, const T& v) {
  auto p = reinterpret_cast<const uint8_t*>(&v);
  out.insert(out.end(), p, p + sizeof v);
}

}  // namespace

uint64_t write_mptable(const GuestMemory& memory, uint32_t vcpu_count, const std::vector<MpPciInterrupt>& pci_interrupts) {
  if (vcpu_count == 0 || vcpu_count > 254) throw std::invalid_argument("MP table: vCPU count must be 1..254");
  const uint8_t ioapic_id = static_cast<uint8_t>(vcpu_count);
  std::vector<uint8_t> entries;
  uint16_t count = 0;
  for (uint32_t i = 0; i < vcpu_count; ++i, ++count)
    append(entries, ProcessorEntry{0, static_cast<uint8_t>(i), 0x14, static_cast<uint8_t>(i == 0 ? 3 : 1), 0x600, 0x201, {0, 0}});
  // Linux matches the PCI bus by its id; ISA gets the next one.
  constexpr uint8_t kPciBus = 0, kIsaBus = 1;
  append(entries, BusEntry{1, kPciBus, {'P', 'C', 'I', ' ', ' ', ' '}});
  append(entries, BusEntry{1, kIsaBus, {'I', 'S', 'A', ' ', ' ', ' '}});
  count += 2;
  append(entries, IoapicEntry{2, ioapic_id, 0x11, 1, static_cast<uint32_t>(layout::kIoapicBase)});
  ++count;
  // ISA IRQs 0-15 go to the IOAPIC pin of the same number: that is KVM's default GSI routing,
  // which nvhv keeps (no pin-2 override for the PIT as on PC chipsets).
  for (uint8_t irq = 0; irq < 16; ++irq, ++count)
    append(entries, InterruptEntry{3, 0, 0, kIsaBus, irq, ioapic_id, irq});
  // PCI INTx: level-triggered, active high (flags: polarity 01, trigger 11), source IRQ
  // encoded as (device << 2) | (pin - 1).
  for (const auto& p : pci_interrupts) {
    if (p.pin < 1 || p.pin > 4 || p.slot > 31 || p.gsi > 23) throw std::invalid_argument("MP table: bad PCI interrupt route");
    append(entries, InterruptEntry{3, 0, 0x000d, kPciBus, static_cast<uint8_t>((p.slot << 2) | (p.pin - 1)), ioapic_id, static_cast<uint8_t>(p.gsi)});
    ++count;
  }
  append(entries, InterruptEntry{4, 3, 0, 0, 0, 0xff, 0});  // LINT0: ExtINT from the PIC
  append(entries, InterruptEntry{4, 1, 0, 0, 0, 0xff, 1});  // LINT1: NMI
  count += 2;

  ConfigHeader header{};
  std::memcpy(header.signature, "PCMP", 4);
  header.base_length = static_cast<uint16_t>(sizeof header + entries.size());
  header.spec_revision = 4;
  std::memcpy(header.oem_id, "NVHV    ", 8);
  std::memcpy(header.product_id, "NVHV-X86-64 ", 12);
  header.entry_count = count;
  header.lapic_address = static_cast<uint32_t>(layout::kLapicBase);
  std::vector<uint8_t> table;
  append(table, header);
  table.insert(table.end(), entries.begin(), entries.end());
  table[7] = checksum(table.data(), table.size());

  FloatingPointer fp{};
  std::memcpy(fp.signature, "_MP_", 4);
  fp.config_table = static_cast<uint32_t>(layout::kMpTable + sizeof fp);
  fp.length_paragraphs = 1;
  fp.spec_revision = 4;
  fp.checksum = checksum(reinterpret_cast<uint8_t*>(&fp), sizeof fp);

  memory.write_object(layout::kMpTable, fp);
  memory.write(layout::kMpTable + sizeof fp, table);
  return sizeof fp + table.size();
}

}  // namespace nvhv::x86
