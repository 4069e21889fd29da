# libFuzzer target over the virtqueue walker and the virtio PCI transport (see NvhvFuzz.cmake).
nvhv_add_fuzzer(NAME virtio_chain
  SOURCES tests/fuzz/virtio_chain_fuzz.cpp
    devices/virtio/chain.cpp devices/virtio/queue.cpp devices/virtio/msix.cpp devices/virtio/virtio_pci.cpp
    devices/virtio/virtio_pci_state.cpp devices/virtio/console.cpp devices/pci/config_space.cpp
    vmm/memory/guest_memory.cpp persistence/codec.cpp vmm/base/log.cpp
  LIBS -lfmt
  SECONDS 20)
